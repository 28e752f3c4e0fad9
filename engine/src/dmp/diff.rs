//! The reference diff (`diff_main` without deadline or line mode) and its cleanups.

use super::*;

/// The reference `diff_main(text1, text2, checklines=False)` with no deadline.
pub fn diff_main(text1: &[char], text2: &[char]) -> Vec<Diff> {
    if text1 == text2 {
        if text1.is_empty() {
            return Vec::new();
        }
        return vec![(Op::Equal, text1.to_vec())];
    }
    let p = common_prefix(text1, text2);
    let (prefix, t1, t2) = (&text1[..p], &text1[p..], &text2[p..]);
    let s = common_suffix(t1, t2);
    let suffix = &t1[t1.len() - s..];
    let (t1, t2) = (&t1[..t1.len() - s], &t2[..t2.len() - s]);
    let mut diffs = diff_compute(t1, t2);
    if !prefix.is_empty() {
        diffs.insert(0, (Op::Equal, prefix.to_vec()));
    }
    if !suffix.is_empty() {
        diffs.push((Op::Equal, suffix.to_vec()));
    }
    cleanup_merge(&mut diffs);
    diffs
}

pub(super) fn diff_compute(text1: &[char], text2: &[char]) -> Vec<Diff> {
    if text1.is_empty() {
        return vec![(Op::Insert, text2.to_vec())];
    }
    if text2.is_empty() {
        return vec![(Op::Delete, text1.to_vec())];
    }
    let (long, short) = if text1.len() > text2.len() {
        (text1, text2)
    } else {
        (text2, text1)
    };
    if let Some(i) = find(long, short, 0) {
        let op = if text1.len() > text2.len() {
            Op::Delete
        } else {
            Op::Insert
        };
        return vec![
            (op, long[..i].to_vec()),
            (Op::Equal, short.to_vec()),
            (op, long[i + short.len()..].to_vec()),
        ];
    }
    if short.len() == 1 {
        return vec![(Op::Delete, text1.to_vec()), (Op::Insert, text2.to_vec())];
    }
    // Half-match is skipped: the reference skips it too when there is no timeout.
    diff_bisect(text1, text2)
}

pub(super) fn diff_bisect(text1: &[char], text2: &[char]) -> Vec<Diff> {
    let (l1, l2) = (text1.len() as isize, text2.len() as isize);
    let max_d = (l1 + l2 + 1) / 2;
    let v_offset = max_d;
    let v_length = 2 * max_d;
    let mut v1 = vec![-1isize; v_length as usize];
    let mut v2 = vec![-1isize; v_length as usize];
    v1[(v_offset + 1) as usize] = 0;
    v2[(v_offset + 1) as usize] = 0;
    let delta = l1 - l2;
    let front = delta % 2 != 0;
    let (mut k1start, mut k1end, mut k2start, mut k2end) = (0isize, 0isize, 0isize, 0isize);
    for d in 0..max_d {
        let mut k1 = -d + k1start;
        while k1 < d + 1 - k1end {
            let k1_offset = v_offset + k1;
            let mut x1 = if k1 == -d
                || (k1 != d && v1[(k1_offset - 1) as usize] < v1[(k1_offset + 1) as usize])
            {
                v1[(k1_offset + 1) as usize]
            } else {
                v1[(k1_offset - 1) as usize] + 1
            };
            let mut y1 = x1 - k1;
            while x1 < l1 && y1 < l2 && text1[x1 as usize] == text2[y1 as usize] {
                x1 += 1;
                y1 += 1;
            }
            v1[k1_offset as usize] = x1;
            if x1 > l1 {
                k1end += 2;
            } else if y1 > l2 {
                k1start += 2;
            } else if front {
                let k2_offset = v_offset + delta - k1;
                if k2_offset >= 0 && k2_offset < v_length && v2[k2_offset as usize] != -1 {
                    let x2 = l1 - v2[k2_offset as usize];
                    if x1 >= x2 {
                        return bisect_split(text1, text2, x1 as usize, y1 as usize);
                    }
                }
            }
            k1 += 2;
        }
        let mut k2 = -d + k2start;
        while k2 < d + 1 - k2end {
            let k2_offset = v_offset + k2;
            let mut x2 = if k2 == -d
                || (k2 != d && v2[(k2_offset - 1) as usize] < v2[(k2_offset + 1) as usize])
            {
                v2[(k2_offset + 1) as usize]
            } else {
                v2[(k2_offset - 1) as usize] + 1
            };
            let mut y2 = x2 - k2;
            while x2 < l1
                && y2 < l2
                && text1[(l1 - x2 - 1) as usize] == text2[(l2 - y2 - 1) as usize]
            {
                x2 += 1;
                y2 += 1;
            }
            v2[k2_offset as usize] = x2;
            if x2 > l1 {
                k2end += 2;
            } else if y2 > l2 {
                k2start += 2;
            } else if !front {
                let k1_offset = v_offset + delta - k2;
                if k1_offset >= 0 && k1_offset < v_length && v1[k1_offset as usize] != -1 {
                    let x1 = v1[k1_offset as usize];
                    let y1 = v_offset + x1 - k1_offset;
                    let x2 = l1 - x2;
                    if x1 >= x2 {
                        return bisect_split(text1, text2, x1 as usize, y1 as usize);
                    }
                }
            }
            k2 += 2;
        }
    }
    vec![(Op::Delete, text1.to_vec()), (Op::Insert, text2.to_vec())]
}

pub(super) fn bisect_split(text1: &[char], text2: &[char], x: usize, y: usize) -> Vec<Diff> {
    let mut diffs = diff_main(&text1[..x], &text2[..y]);
    diffs.extend(diff_main(&text1[x..], &text2[y..]));
    diffs
}

/// The reference `diff_cleanupMerge`: merge like runs, factor out common affixes, shift edits.
pub fn cleanup_merge(diffs: &mut Vec<Diff>) {
    diffs.push((Op::Equal, Vec::new()));
    let mut pointer = 0usize;
    let (mut count_delete, mut count_insert) = (0usize, 0usize);
    let (mut text_delete, mut text_insert): (Vec<char>, Vec<char>) = (Vec::new(), Vec::new());
    while pointer < diffs.len() {
        match diffs[pointer].0 {
            Op::Insert => {
                count_insert += 1;
                text_insert.extend_from_slice(&diffs[pointer].1);
                pointer += 1;
            }
            Op::Delete => {
                count_delete += 1;
                text_delete.extend_from_slice(&diffs[pointer].1);
                pointer += 1;
            }
            Op::Equal => {
                if count_delete + count_insert > 1 {
                    if count_delete != 0 && count_insert != 0 {
                        let cl = common_prefix(&text_insert, &text_delete);
                        if cl != 0 {
                            let x = pointer as isize - (count_delete + count_insert) as isize - 1;
                            if x >= 0 && diffs[x as usize].0 == Op::Equal {
                                diffs[x as usize].1.extend_from_slice(&text_insert[..cl]);
                            } else {
                                diffs.insert(0, (Op::Equal, text_insert[..cl].to_vec()));
                                pointer += 1;
                            }
                            text_insert.drain(..cl);
                            text_delete.drain(..cl);
                        }
                        let cl = common_suffix(&text_insert, &text_delete);
                        if cl != 0 {
                            let mut merged = text_insert[text_insert.len() - cl..].to_vec();
                            merged.extend_from_slice(&diffs[pointer].1);
                            diffs[pointer].1 = merged;
                            text_insert.truncate(text_insert.len() - cl);
                            text_delete.truncate(text_delete.len() - cl);
                        }
                    }
                    let mut new_ops = Vec::new();
                    if !text_delete.is_empty() {
                        new_ops.push((Op::Delete, std::mem::take(&mut text_delete)));
                    }
                    if !text_insert.is_empty() {
                        new_ops.push((Op::Insert, std::mem::take(&mut text_insert)));
                    }
                    pointer -= count_delete + count_insert;
                    let n = new_ops.len();
                    diffs.splice(pointer..pointer + count_delete + count_insert, new_ops);
                    pointer += n + 1;
                } else if pointer != 0 && diffs[pointer - 1].0 == Op::Equal {
                    let cur = diffs.remove(pointer);
                    diffs[pointer - 1].1.extend_from_slice(&cur.1);
                } else {
                    pointer += 1;
                }
                count_insert = 0;
                count_delete = 0;
                text_delete.clear();
                text_insert.clear();
            }
        }
    }
    if diffs.last().is_some_and(|d| d.1.is_empty()) {
        diffs.pop();
    }
    let mut changes = false;
    let mut pointer = 1usize;
    while pointer + 1 < diffs.len() {
        if diffs[pointer - 1].0 == Op::Equal && diffs[pointer + 1].0 == Op::Equal {
            let prev = diffs[pointer - 1].1.clone();
            let next = diffs[pointer + 1].1.clone();
            if diffs[pointer].1.ends_with(&prev) {
                if !prev.is_empty() {
                    let cur = &diffs[pointer].1;
                    let mut moved = prev.clone();
                    moved.extend_from_slice(&cur[..cur.len() - prev.len()]);
                    diffs[pointer].1 = moved;
                    let mut n2 = prev.clone();
                    n2.extend_from_slice(&next);
                    diffs[pointer + 1].1 = n2;
                }
                diffs.remove(pointer - 1);
                changes = true;
            } else if diffs[pointer].1.starts_with(&next) {
                diffs[pointer - 1].1.extend_from_slice(&next);
                let cur = &diffs[pointer].1;
                let mut moved = cur[next.len()..].to_vec();
                moved.extend_from_slice(&next);
                diffs[pointer].1 = moved;
                diffs.remove(pointer + 1);
                changes = true;
            }
        }
        pointer += 1;
    }
    if changes {
        cleanup_merge(diffs);
    }
}

/// The reference `diff_cleanupSemantic`: eliminate semantically trivial equalities.
pub fn cleanup_semantic(diffs: &mut Vec<Diff>) {
    let mut changes = false;
    let mut equalities: Vec<usize> = Vec::new();
    let mut last_equality: Option<Vec<char>> = None;
    let mut pointer: isize = 0;
    let (mut ins1, mut del1, mut ins2, mut del2) = (0usize, 0usize, 0usize, 0usize);
    while (pointer as usize) < diffs.len() {
        let p = pointer as usize;
        if diffs[p].0 == Op::Equal {
            equalities.push(p);
            ins1 = ins2;
            del1 = del2;
            ins2 = 0;
            del2 = 0;
            last_equality = Some(diffs[p].1.clone());
        } else {
            if diffs[p].0 == Op::Insert {
                ins2 += diffs[p].1.len();
            } else {
                del2 += diffs[p].1.len();
            }
            if let Some(le) = &last_equality {
                if !le.is_empty() && le.len() <= ins1.max(del1) && le.len() <= ins2.max(del2) {
                    // `equalities` is non-empty whenever `last_equality` is set.
                    let e = *equalities
                        .last()
                        .expect("last_equality implies an equality");
                    diffs.insert(e, (Op::Delete, le.clone()));
                    diffs[e + 1].0 = Op::Insert;
                    equalities.pop();
                    equalities.pop();
                    pointer = match equalities.last() {
                        Some(&e) => e as isize,
                        None => -1,
                    };
                    ins1 = 0;
                    del1 = 0;
                    ins2 = 0;
                    del2 = 0;
                    last_equality = None;
                    changes = true;
                }
            }
        }
        pointer += 1;
    }
    if changes {
        cleanup_merge(diffs);
    }
    cleanup_semantic_lossless(diffs);

    let mut pointer = 1usize;
    while pointer < diffs.len() {
        if diffs[pointer - 1].0 == Op::Delete && diffs[pointer].0 == Op::Insert {
            let deletion = diffs[pointer - 1].1.clone();
            let insertion = diffs[pointer].1.clone();
            let o1 = common_overlap(&deletion, &insertion);
            let o2 = common_overlap(&insertion, &deletion);
            if o1 >= o2 {
                if o1 as f64 >= deletion.len() as f64 / 2.0
                    || o1 as f64 >= insertion.len() as f64 / 2.0
                {
                    diffs.insert(pointer, (Op::Equal, insertion[..o1].to_vec()));
                    diffs[pointer - 1] = (Op::Delete, deletion[..deletion.len() - o1].to_vec());
                    diffs[pointer + 1] = (Op::Insert, insertion[o1..].to_vec());
                    pointer += 1;
                }
            } else if o2 as f64 >= deletion.len() as f64 / 2.0
                || o2 as f64 >= insertion.len() as f64 / 2.0
            {
                diffs.insert(pointer, (Op::Equal, deletion[..o2].to_vec()));
                diffs[pointer - 1] = (Op::Insert, insertion[..insertion.len() - o2].to_vec());
                diffs[pointer + 1] = (Op::Delete, deletion[o2..].to_vec());
                pointer += 1;
            }
            pointer += 1;
        }
        pointer += 1;
    }
}

/// Python's `str.isalnum()` and `str.isspace()` agree with Rust's `char` methods on the
/// characters that matter here; the fixture corpus checks it on mixed scripts.
pub(super) fn semantic_score(one: &[char], two: &[char]) -> u8 {
    let (Some(&c1), Some(&c2)) = (one.last(), two.first()) else {
        return 6;
    };
    let non_alnum1 = !c1.is_alphanumeric();
    let non_alnum2 = !c2.is_alphanumeric();
    let ws1 = non_alnum1 && c1.is_whitespace();
    let ws2 = non_alnum2 && c2.is_whitespace();
    let lb1 = ws1 && (c1 == '\r' || c1 == '\n');
    let lb2 = ws2 && (c2 == '\r' || c2 == '\n');
    let blank1 = lb1 && blank_line_end(one);
    let blank2 = lb2 && blank_line_start(two);
    if blank1 || blank2 {
        5
    } else if lb1 || lb2 {
        4
    } else if non_alnum1 && !ws1 && ws2 {
        3
    } else if ws1 || ws2 {
        2
    } else if non_alnum1 || non_alnum2 {
        1
    } else {
        0
    }
}

/// `\n\r?\n$` (Python's `$` also matches before one trailing `\n`).
pub(super) fn blank_line_end(s: &[char]) -> bool {
    let ends = |t: &[char]| t.ends_with(&['\n', '\n']) || t.ends_with(&['\n', '\r', '\n']);
    ends(s) || (s.last() == Some(&'\n') && ends(&s[..s.len() - 1]))
}

/// `^\r?\n\r?\n`.
pub(super) fn blank_line_start(s: &[char]) -> bool {
    let rest = s.strip_prefix(&['\r']).unwrap_or(s);
    let Some(rest) = rest.strip_prefix(&['\n']) else {
        return false;
    };
    let rest = rest.strip_prefix(&['\r']).unwrap_or(rest);
    rest.first() == Some(&'\n')
}

/// The reference `diff_cleanupSemanticLossless`: slide single edits to word boundaries.
pub fn cleanup_semantic_lossless(diffs: &mut Vec<Diff>) {
    // Python indexes with a signed pointer that can reach -1 (meaning the last element) after
    // two deletions; `at` reproduces that so results stay identical to the reference.
    fn at(len: usize, i: isize) -> usize {
        if i < 0 {
            (len as isize + i) as usize
        } else {
            i as usize
        }
    }
    let mut pointer: isize = 1;
    while pointer < diffs.len() as isize - 1 {
        let (pm, p, pn) = (
            at(diffs.len(), pointer - 1),
            at(diffs.len(), pointer),
            at(diffs.len(), pointer + 1),
        );
        if diffs[pm].0 == Op::Equal && diffs[pn].0 == Op::Equal {
            let mut eq1 = diffs[pm].1.clone();
            let mut edit = diffs[p].1.clone();
            let mut eq2 = diffs[pn].1.clone();
            let off = common_suffix(&eq1, &edit);
            if off > 0 {
                let common = edit[edit.len() - off..].to_vec();
                eq1.truncate(eq1.len() - off);
                let mut e = common.clone();
                e.extend_from_slice(&edit[..edit.len() - off]);
                edit = e;
                let mut e2 = common;
                e2.extend_from_slice(&eq2);
                eq2 = e2;
            }
            let (mut best1, mut best_edit, mut best2) = (eq1.clone(), edit.clone(), eq2.clone());
            let mut best_score = semantic_score(&eq1, &edit) + semantic_score(&edit, &eq2);
            while !edit.is_empty() && !eq2.is_empty() && edit[0] == eq2[0] {
                eq1.push(edit[0]);
                edit.remove(0);
                edit.push(eq2[0]);
                eq2.remove(0);
                let score = semantic_score(&eq1, &edit) + semantic_score(&edit, &eq2);
                if score >= best_score {
                    best_score = score;
                    best1 = eq1.clone();
                    best_edit = edit.clone();
                    best2 = eq2.clone();
                }
            }
            if diffs[pm].1 != best1 {
                if !best1.is_empty() {
                    diffs[pm].1 = best1;
                } else {
                    diffs.remove(pm);
                    pointer -= 1;
                }
                let p = at(diffs.len(), pointer);
                diffs[p].1 = best_edit;
                let pn = at(diffs.len(), pointer + 1);
                if !best2.is_empty() {
                    diffs[pn].1 = best2;
                } else {
                    diffs.remove(pn);
                    pointer -= 1;
                }
            }
        }
        pointer += 1;
    }
}

/// The reference `diff_cleanupEfficiency`: fold short equalities between edits.
pub fn cleanup_efficiency(diffs: &mut Vec<Diff>, edit_cost: usize) {
    let mut changes = false;
    let mut equalities: Vec<usize> = Vec::new();
    let mut last_equality: Option<Vec<char>> = None;
    let mut pointer: isize = 0;
    let (mut pre_ins, mut pre_del, mut post_ins, mut post_del) = (false, false, false, false);
    while (pointer as usize) < diffs.len() {
        let p = pointer as usize;
        if diffs[p].0 == Op::Equal {
            if diffs[p].1.len() < edit_cost && (post_ins || post_del) {
                equalities.push(p);
                pre_ins = post_ins;
                pre_del = post_del;
                last_equality = Some(diffs[p].1.clone());
            } else {
                equalities.clear();
                last_equality = None;
            }
            post_ins = false;
            post_del = false;
        } else {
            if diffs[p].0 == Op::Delete {
                post_del = true;
            } else {
                post_ins = true;
            }
            if let Some(le) = &last_equality {
                let count = pre_ins as u8 + pre_del as u8 + post_ins as u8 + post_del as u8;
                if !le.is_empty()
                    && ((pre_ins && pre_del && post_ins && post_del)
                        || ((le.len() as f64) < edit_cost as f64 / 2.0 && count == 3))
                {
                    let e = *equalities
                        .last()
                        .expect("last_equality implies an equality");
                    diffs.insert(e, (Op::Delete, le.clone()));
                    diffs[e + 1].0 = Op::Insert;
                    equalities.pop();
                    last_equality = None;
                    if pre_ins && pre_del {
                        post_ins = true;
                        post_del = true;
                        equalities.clear();
                    } else {
                        equalities.pop();
                        pointer = match equalities.last() {
                            Some(&e) => e as isize,
                            None => -1,
                        };
                        post_ins = false;
                        post_del = false;
                    }
                    changes = true;
                }
            }
        }
        pointer += 1;
    }
    if changes {
        cleanup_merge(diffs);
    }
}

/// Old text of a diff.
pub fn diff_text1(diffs: &[Diff]) -> Vec<char> {
    diffs
        .iter()
        .filter(|d| d.0 != Op::Insert)
        .flat_map(|d| d.1.iter().copied())
        .collect()
}

/// New text of a diff.
pub fn diff_text2(diffs: &[Diff]) -> Vec<char> {
    diffs
        .iter()
        .filter(|d| d.0 != Op::Delete)
        .flat_map(|d| d.1.iter().copied())
        .collect()
}

pub(super) fn diff_levenshtein(diffs: &[Diff]) -> usize {
    let (mut lev, mut ins, mut del) = (0, 0, 0);
    for (op, data) in diffs {
        match op {
            Op::Insert => ins += data.len(),
            Op::Delete => del += data.len(),
            Op::Equal => {
                lev += ins.max(del);
                ins = 0;
                del = 0;
            }
        }
    }
    lev + ins.max(del)
}
