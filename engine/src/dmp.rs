//! Fraser's fuzzy patch: a careful port of the reference `diff-match-patch` (Python, PyPI
//! 20241021) pieces that the fuzzy merge strategy needs — diff, semantic and efficiency cleanup,
//! Bitap matching, `patch_make` and `patch_apply`.
//!
//! Why a port and not a crate: every Rust port measured when this was written panicked in
//! `patch_apply` on some valid inputs (`diff_match_patch` 0.3.1: 5–8 of 20,000 random valid
//! inputs; `diff-match-patch-rs` 0.5: 37–39; `dmp` 0.2: 4–6, and ~30 wrong errors), and their
//! diffs read the wall clock for a deadline. This port:
//! - works on `char`s (Unicode scalar values), exactly as Python 3's `str` does, so it never
//!   splits a UTF-8 sequence or a surrogate pair;
//! - has no deadline (as the reference with `Diff_Timeout = 0`), so it is deterministic;
//! - never uses line mode (the reference's `checklines=False`); fixtures are generated the same
//!   way (`engine/tests/fixtures/gen_dmp.py`) and compared patch text for patch text;
//! - uses only checked arithmetic on indices: no input makes it panic (property-tested).
//!
//! Python quirks that change results are kept on purpose (the `for x in range(len(patches))`
//! loop of `patch_splitMax`, for one), so the fixture corpus matches exactly.

use std::collections::BTreeMap;

/// Settings of the fuzzy matcher and patcher, with the reference's names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuzzySettings {
    /// How bad a match may be (0.0 = exact only, 1.0 = anything). The reference default is 0.5;
    /// `docs/protocol.md` pitfall 12 recommends 0.3–0.4 so that drifted patches drop instead of
    /// landing in the wrong place. We default to 0.4.
    pub match_threshold: f64,
    /// How far from the expected location a match may be (in chars) before it scores 1.0.
    pub match_distance: usize,
    /// When deleting a large block, how closely the deleted text must match (0.0–1.0).
    pub patch_delete_threshold: f64,
    /// Chars of context around each patch. Must stay below `MATCH_MAX_BITS / 2` (pitfall 13).
    pub patch_margin: usize,
    /// Cost of an empty edit in chars, for efficiency cleanup (pitfall 14: 4, never 0).
    pub diff_edit_cost: usize,
    /// Where a patch's context matched only approximately, apply it only if every character it
    /// deletes is exactly the one it meant to delete; else drop the patch. The reference
    /// deletes whatever lands at the mapped place, which can delete a neighbour and, with the
    /// insertion beside it, duplicate text (swarm seed 593: "foxvl" became "gfoxvyvi"). On by
    /// default; off in [`FuzzySettings::reference`], which the fixture corpus checks.
    pub exact_deletions: bool,
    /// Where a patch's context matched only approximately, map each of its changes exactly
    /// (through the diff between the patch's context and the text found) and leave out an
    /// insertion the text already holds in the same gap. The same change can reach a text by two paths (after a
    /// dropped deletion, the server's reply re-inserts the text in one client and a merge
    /// re-inserts it in another); applying it again duplicated it (swarm seed 28799: "quick"
    /// became "quicck"). The three-way merge keeps an identical insertion in one gap once;
    /// this is the same rule for patches. Deletions are exact as with `exact_deletions`. On by
    /// default; off in [`FuzzySettings::reference`], which maps as the reference does.
    pub skip_applied: bool,
}

/// The Bitap bit width: patterns longer than this are matched by their two ends.
pub const MATCH_MAX_BITS: usize = 32;

impl Default for FuzzySettings {
    fn default() -> Self {
        FuzzySettings {
            match_threshold: 0.4,
            match_distance: 1000,
            patch_delete_threshold: 0.5,
            patch_margin: 4,
            diff_edit_cost: 4,
            exact_deletions: true,
            skip_applied: true,
        }
    }
}

impl FuzzySettings {
    /// The reference library's defaults (threshold 0.5), used by the fixture tests.
    pub fn reference() -> Self {
        FuzzySettings {
            match_threshold: 0.5,
            exact_deletions: false,
            skip_applied: false,
            ..FuzzySettings::default()
        }
    }

    /// Clamp settings that would make the algorithm loop or misbehave (pitfall 13).
    fn sane(mut self) -> Self {
        let max_margin = MATCH_MAX_BITS / 2 - 1;
        if self.patch_margin > max_margin {
            self.patch_margin = max_margin;
        }
        if !(0.0..=1.0).contains(&self.match_threshold) {
            self.match_threshold = 0.5;
        }
        self
    }
}

/// One diff operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Text only in the old string.
    Delete,
    /// Text in both.
    Equal,
    /// Text only in the new string.
    Insert,
}

/// A diff: an operation and its chars.
pub type Diff = (Op, Vec<char>);

/// One patch, as the reference's `patch_obj`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patch {
    /// The diffs, with context as `Equal` at both ends.
    pub diffs: Vec<Diff>,
    /// Start in the old text (chars).
    pub start1: usize,
    /// Start in the new text (chars).
    pub start2: usize,
    /// Length in the old text (chars).
    pub length1: usize,
    /// Length in the new text (chars).
    pub length2: usize,
}

fn find(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    if needle.is_empty() {
        return Some(from);
    }
    if needle.len() > hay.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

/// Python's `str.rfind(sub, start)`: last index >= start where `sub` occurs.
fn rfind_from(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
    if needle.len() > hay.len() || from > hay.len() {
        return None;
    }
    let last = hay.len() - needle.len();
    if from > last {
        return None;
    }
    (from..=last)
        .rev()
        .find(|&i| hay[i..i + needle.len()] == *needle)
}

fn rfind(hay: &[char], needle: &[char]) -> Option<usize> {
    rfind_from(hay, needle, 0)
}

/// Length of the common prefix, in chars.
pub fn common_prefix(a: &[char], b: &[char]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Length of the common suffix, in chars.
pub fn common_suffix(a: &[char], b: &[char]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

fn common_overlap(text1: &[char], text2: &[char]) -> usize {
    let (l1, l2) = (text1.len(), text2.len());
    if l1 == 0 || l2 == 0 {
        return 0;
    }
    let t1 = if l1 > l2 { &text1[l1 - l2..] } else { text1 };
    let t2 = if l1 < l2 { &text2[..l1] } else { text2 };
    let len = l1.min(l2);
    if t1 == t2 {
        return len;
    }
    let mut best = 0;
    let mut length = 1;
    loop {
        if length > t1.len() {
            return best;
        }
        let pattern = &t1[t1.len() - length..];
        let Some(found) = find(t2, pattern, 0) else {
            return best;
        };
        length += found;
        if length > t1.len() || length > t2.len() {
            return best;
        }
        if found == 0 || t1[t1.len() - length..] == t2[..length] {
            best = length;
            length += 1;
        }
    }
}

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

fn diff_compute(text1: &[char], text2: &[char]) -> Vec<Diff> {
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

fn diff_bisect(text1: &[char], text2: &[char]) -> Vec<Diff> {
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

fn bisect_split(text1: &[char], text2: &[char], x: usize, y: usize) -> Vec<Diff> {
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
fn semantic_score(one: &[char], two: &[char]) -> u8 {
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
fn blank_line_end(s: &[char]) -> bool {
    let ends = |t: &[char]| t.ends_with(&['\n', '\n']) || t.ends_with(&['\n', '\r', '\n']);
    ends(s) || (s.last() == Some(&'\n') && ends(&s[..s.len() - 1]))
}

/// `^\r?\n\r?\n`.
fn blank_line_start(s: &[char]) -> bool {
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

fn diff_levenshtein(diffs: &[Diff]) -> usize {
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

/// Apply one patch's changes at `start_loc`, where the text found (`diffs`: the patch's
/// context `text1` → that text) differs from the context: each change is mapped exactly
/// through `diffs`, an insertion the text already holds is left out (see
/// [`FuzzySettings::skip_applied`]), and a deletion of anything but the exact text it meant to
/// delete drops the whole patch (false; `text` unchanged).
fn apply_mapped(text: &mut Vec<char>, start_loc: usize, patch: &[Diff], diffs: &[Diff]) -> bool {
    let before = text.clone();
    // `p1`: position in the patch's context text; `shift`: what this patch inserted minus what
    // it deleted so far (all before the current position).
    let (mut p1, mut shift) = (0usize, 0isize);
    let at = |p: usize, shift: isize, len: usize| -> usize {
        ((start_loc + diff_x_index(diffs, p)) as isize + shift).clamp(0, len as isize) as usize
    };
    for (op, data) in patch {
        match op {
            Op::Equal => p1 += data.len(),
            Op::Insert => {
                if inserted_at(diffs, p1) != data[..] {
                    let i = at(p1, shift, text.len());
                    text.splice(i..i, data.iter().copied());
                    shift += data.len() as isize;
                }
            }
            Op::Delete => {
                let a = at(p1, shift, text.len());
                let b = at(p1 + data.len(), shift, text.len()).max(a);
                // Exact or nothing. Text that seems deleted already may only lie past the end
                // of the text found, which is as long as the context, not as the match.
                if text[a..b] != data[..] {
                    *text = before;
                    return false;
                }
                text.drain(a..b);
                shift -= data.len() as isize;
                p1 += data.len();
            }
        }
    }
    true
}

/// What `diffs` inserts in the gap at `p1` of its old text.
fn inserted_at(diffs: &[Diff], p1: usize) -> Vec<char> {
    let (mut x, mut out) = (0usize, Vec::new());
    for (op, data) in diffs {
        if *op == Op::Insert {
            if x == p1 {
                out.extend_from_slice(data);
            }
        } else {
            x += data.len();
            if x > p1 {
                break;
            }
        }
    }
    out
}

fn diff_x_index(diffs: &[Diff], loc: usize) -> usize {
    let (mut c1, mut c2, mut last1, mut last2) = (0, 0, 0, 0);
    let mut hit: Option<usize> = None;
    for (x, (op, text)) in diffs.iter().enumerate() {
        if *op != Op::Insert {
            c1 += text.len();
        }
        if *op != Op::Delete {
            c2 += text.len();
        }
        if c1 > loc {
            hit = Some(x);
            break;
        }
        last1 = c1;
        last2 = c2;
    }
    // Python reads `diffs[x]` after the loop even when it did not break (x = last index).
    let x = hit.unwrap_or(diffs.len().saturating_sub(1));
    if diffs.get(x).is_some_and(|d| d.0 == Op::Delete) {
        return last2;
    }
    last2 + (loc - last1)
}

/// The reference `match_main`: best location of `pattern` in `text` near `loc`.
pub fn match_main(text: &[char], pattern: &[char], loc: usize, s: &FuzzySettings) -> Option<usize> {
    let loc = loc.min(text.len());
    if text == pattern {
        return Some(0);
    }
    if text.is_empty() {
        return None;
    }
    if loc + pattern.len() <= text.len() && text[loc..loc + pattern.len()] == *pattern {
        return Some(loc);
    }
    if pattern.is_empty() {
        // Python's slice comparison makes an empty pattern match at `loc` above; unreachable.
        return Some(loc);
    }
    match_bitap(text, pattern, loc, s)
}

fn match_bitap(text: &[char], pattern: &[char], loc: usize, s: &FuzzySettings) -> Option<usize> {
    if pattern.len() > MATCH_MAX_BITS {
        // The reference raises here; callers never pass longer patterns.
        return None;
    }
    let mut alphabet: BTreeMap<char, u64> = BTreeMap::new();
    for (i, &c) in pattern.iter().enumerate() {
        *alphabet.entry(c).or_insert(0) |= 1u64 << (pattern.len() - i - 1);
    }
    let plen = pattern.len() as f64;
    let loc_i = loc as isize;
    let score = |e: usize, x: isize| -> f64 {
        let accuracy = e as f64 / plen;
        let proximity = (loc_i - x).unsigned_abs();
        if s.match_distance == 0 {
            return if proximity != 0 { 1.0 } else { accuracy };
        }
        accuracy + proximity as f64 / s.match_distance as f64
    };
    let mut threshold = s.match_threshold;
    if let Some(b) = find(text, pattern, loc) {
        threshold = threshold.min(score(0, b as isize));
        if let Some(b) = rfind_from(text, pattern, loc + pattern.len()) {
            threshold = threshold.min(score(0, b as isize));
        }
    }
    let matchmask = 1u64 << (pattern.len() - 1);
    let mut best_loc: Option<usize> = None;
    let mut bin_max = (pattern.len() + text.len()) as isize;
    let mut last_rd: Vec<u64> = Vec::new();
    for d in 0..pattern.len() {
        let (mut bin_min, mut bin_mid) = (0isize, bin_max);
        while bin_min < bin_mid {
            if score(d, loc_i + bin_mid) <= threshold {
                bin_min = bin_mid;
            } else {
                bin_max = bin_mid;
            }
            bin_mid = (bin_max - bin_min) / 2 + bin_min;
        }
        bin_max = bin_mid;
        let mut start = 1isize.max(loc_i - bin_mid + 1);
        let finish = (loc_i + bin_mid).min(text.len() as isize) + pattern.len() as isize;
        let mut rd = vec![0u64; (finish + 2) as usize];
        rd[(finish + 1) as usize] = (1u64 << d) - 1;
        let mut j = finish;
        while j >= start {
            let ju = j as usize;
            let char_match = if text.len() < ju {
                0
            } else {
                alphabet.get(&text[ju - 1]).copied().unwrap_or(0)
            };
            rd[ju] = if d == 0 {
                ((rd[ju + 1] << 1) | 1) & char_match
            } else {
                let lr1 = last_rd.get(ju + 1).copied().unwrap_or(0);
                let lr0 = last_rd.get(ju).copied().unwrap_or(0);
                (((rd[ju + 1] << 1) | 1) & char_match) | (((lr1 | lr0) << 1) | 1) | lr1
            };
            if rd[ju] & matchmask != 0 {
                let sc = score(d, j - 1);
                if sc <= threshold {
                    threshold = sc;
                    best_loc = Some(ju - 1);
                    if ju - 1 > loc {
                        start = 1isize.max(2 * loc_i - (j - 1));
                    } else {
                        break;
                    }
                }
            }
            j -= 1;
        }
        if score(d + 1, loc_i) > threshold {
            break;
        }
        last_rd = rd;
    }
    best_loc
}

fn add_context(patch: &mut Patch, text: &[char], s: &FuzzySettings) {
    if text.is_empty() {
        return;
    }
    let slice =
        |a: usize, b: usize| &text[a.min(text.len())..b.min(text.len()).max(a.min(text.len()))];
    let mut pattern = slice(patch.start2, patch.start2 + patch.length1);
    let mut padding = 0;
    while find(text, pattern, 0) != rfind(text, pattern)
        && pattern.len() < MATCH_MAX_BITS - s.patch_margin - s.patch_margin
    {
        padding += s.patch_margin;
        pattern = slice(
            patch.start2.saturating_sub(padding),
            patch.start2 + patch.length1 + padding,
        );
    }
    padding += s.patch_margin;
    let prefix = slice(patch.start2.saturating_sub(padding), patch.start2).to_vec();
    if !prefix.is_empty() {
        patch.diffs.insert(0, (Op::Equal, prefix.clone()));
    }
    let suffix = slice(
        patch.start2 + patch.length1,
        patch.start2 + patch.length1 + padding,
    )
    .to_vec();
    if !suffix.is_empty() {
        patch.diffs.push((Op::Equal, suffix.clone()));
    }
    patch.start1 -= prefix.len();
    patch.start2 -= prefix.len();
    patch.length1 += prefix.len() + suffix.len();
    patch.length2 += prefix.len() + suffix.len();
}

/// The reference `patch_make(a, b)` with `checklines=False`: diff, semantic and efficiency
/// cleanup (pitfall 14), then patches with context.
pub fn patch_make(text1: &[char], text2: &[char], s: &FuzzySettings) -> Vec<Patch> {
    let s = s.sane();
    let mut diffs = diff_main(text1, text2);
    if diffs.len() > 2 {
        cleanup_semantic(&mut diffs);
        cleanup_efficiency(&mut diffs, s.diff_edit_cost);
    }
    patch_make_from_diffs(text1, &diffs, &s)
}

fn patch_make_from_diffs(text1: &[char], diffs: &[Diff], s: &FuzzySettings) -> Vec<Patch> {
    let mut patches = Vec::new();
    if diffs.is_empty() {
        return patches;
    }
    let mut patch = Patch::default();
    let (mut cc1, mut cc2) = (0usize, 0usize);
    let mut prepatch = text1.to_vec();
    let mut postpatch = text1.to_vec();
    for (x, (op, text)) in diffs.iter().enumerate() {
        if patch.diffs.is_empty() && *op != Op::Equal {
            patch.start1 = cc1;
            patch.start2 = cc2;
        }
        match op {
            Op::Insert => {
                patch.diffs.push((*op, text.clone()));
                patch.length2 += text.len();
                postpatch.splice(cc2..cc2, text.iter().copied());
            }
            Op::Delete => {
                patch.length1 += text.len();
                patch.diffs.push((*op, text.clone()));
                postpatch.drain(cc2..cc2 + text.len());
            }
            Op::Equal => {
                if text.len() <= 2 * s.patch_margin
                    && !patch.diffs.is_empty()
                    && diffs.len() != x + 1
                {
                    patch.diffs.push((*op, text.clone()));
                    patch.length1 += text.len();
                    patch.length2 += text.len();
                }
            }
        }
        if *op == Op::Equal && text.len() >= 2 * s.patch_margin && !patch.diffs.is_empty() {
            add_context(&mut patch, &prepatch, s);
            patches.push(std::mem::take(&mut patch));
            prepatch = postpatch.clone();
            cc1 = cc2;
        }
        if *op != Op::Insert {
            cc1 += text.len();
        }
        if *op != Op::Delete {
            cc2 += text.len();
        }
    }
    if !patch.diffs.is_empty() {
        add_context(&mut patch, &prepatch, s);
        patches.push(patch);
    }
    patches
}

fn add_padding(patches: &mut [Patch], s: &FuzzySettings) -> Vec<char> {
    let pad_len = s.patch_margin;
    let null_padding: Vec<char> = (1..=pad_len as u32).filter_map(char::from_u32).collect();
    for p in patches.iter_mut() {
        p.start1 += pad_len;
        p.start2 += pad_len;
    }
    let Some(first) = patches.first_mut() else {
        return null_padding;
    };
    if first.diffs.first().is_none_or(|d| d.0 != Op::Equal) {
        first.diffs.insert(0, (Op::Equal, null_padding.clone()));
        first.start1 -= pad_len;
        first.start2 -= pad_len;
        first.length1 += pad_len;
        first.length2 += pad_len;
    } else if pad_len > first.diffs[0].1.len() {
        let extra = pad_len - first.diffs[0].1.len();
        let mut t = null_padding[first.diffs[0].1.len()..].to_vec();
        t.extend_from_slice(&first.diffs[0].1);
        first.diffs[0].1 = t;
        first.start1 -= extra;
        first.start2 -= extra;
        first.length1 += extra;
        first.length2 += extra;
    }
    let last = patches.last_mut().expect("non-empty: first exists");
    if last.diffs.last().is_none_or(|d| d.0 != Op::Equal) {
        last.diffs.push((Op::Equal, null_padding.clone()));
        last.length1 += pad_len;
        last.length2 += pad_len;
    } else if pad_len > last.diffs.last().map_or(0, |d| d.1.len()) {
        let ld = last.diffs.last_mut().expect("checked non-empty");
        let extra = pad_len - ld.1.len();
        ld.1.extend_from_slice(&null_padding[..extra]);
        last.length1 += extra;
        last.length2 += extra;
    }
    null_padding
}

fn split_max(patches: &mut Vec<Patch>, s: &FuzzySettings) {
    let size = MATCH_MAX_BITS;
    let margin = s.patch_margin;
    // Python: `for x in range(len(patches))` — the range is fixed at the start and the
    // reassignments of `x` inside the body only steer where pieces are inserted.
    for x0 in 0..patches.len() {
        if patches[x0].length1 <= size {
            continue;
        }
        let mut big = patches.remove(x0);
        let mut x = x0 as isize - 1;
        let (mut start1, mut start2) = (big.start1, big.start2);
        let mut precontext: Vec<char> = Vec::new();
        let mut big_diffs: std::collections::VecDeque<Diff> = std::mem::take(&mut big.diffs).into();
        while !big_diffs.is_empty() {
            let mut patch = Patch::default();
            let mut empty = true;
            patch.start1 = start1 - precontext.len();
            patch.start2 = start2 - precontext.len();
            if !precontext.is_empty() {
                patch.length1 = precontext.len();
                patch.length2 = precontext.len();
                patch.diffs.push((Op::Equal, precontext.clone()));
            }
            while !big_diffs.is_empty() && patch.length1 < size - margin {
                let (op, text) = big_diffs[0].clone();
                if op == Op::Insert {
                    patch.length2 += text.len();
                    start2 += text.len();
                    patch.diffs.push(big_diffs.pop_front().expect("non-empty"));
                    empty = false;
                } else if op == Op::Delete
                    && patch.diffs.len() == 1
                    && patch.diffs[0].0 == Op::Equal
                    && text.len() > 2 * size
                {
                    patch.length1 += text.len();
                    start1 += text.len();
                    empty = false;
                    patch.diffs.push((op, text));
                    big_diffs.pop_front();
                } else {
                    let take = (size - patch.length1 - margin).min(text.len());
                    let piece = text[..take].to_vec();
                    patch.length1 += piece.len();
                    start1 += piece.len();
                    if op == Op::Equal {
                        patch.length2 += piece.len();
                        start2 += piece.len();
                    } else {
                        empty = false;
                    }
                    if piece == text {
                        big_diffs.pop_front();
                    } else {
                        big_diffs[0].1 = text[take..].to_vec();
                    }
                    patch.diffs.push((op, piece));
                }
            }
            let t2 = diff_text2(&patch.diffs);
            precontext = t2[t2.len().saturating_sub(margin)..].to_vec();
            let rest: Vec<Diff> = big_diffs.iter().cloned().collect();
            let t1 = diff_text1(&rest);
            let postcontext = t1[..margin.min(t1.len())].to_vec();
            if !postcontext.is_empty() {
                patch.length1 += postcontext.len();
                patch.length2 += postcontext.len();
                match patch.diffs.last_mut() {
                    Some(d) if d.0 == Op::Equal => d.1.extend_from_slice(&postcontext),
                    _ => patch.diffs.push((Op::Equal, postcontext)),
                }
            }
            if !empty {
                x += 1;
                patches.insert(x as usize, patch);
            }
        }
    }
}

/// The reference `patch_apply`: apply `patches` to `text`, returning the new text and, per
/// patch (after splitting long ones), whether it applied.
pub fn patch_apply(patches: &[Patch], text: &[char], s: &FuzzySettings) -> (Vec<char>, Vec<bool>) {
    let s = s.sane();
    if patches.is_empty() {
        return (text.to_vec(), Vec::new());
    }
    let mut patches = patches.to_vec();
    let null_padding = add_padding(&mut patches, &s);
    let mut text: Vec<char> = null_padding
        .iter()
        .chain(text.iter())
        .chain(null_padding.iter())
        .copied()
        .collect();
    split_max(&mut patches, &s);
    let mut delta: isize = 0;
    let mut results = Vec::with_capacity(patches.len());
    for patch in &patches {
        // Python keeps `expected_loc` signed; `match_main` clamps it, `delta` does not.
        let expected_i = patch.start2 as isize + delta;
        let clamp = |v: isize| v.max(0) as usize;
        let text1 = diff_text1(&patch.diffs);
        let mut end_loc: Option<usize> = None;
        let start_loc = if text1.len() > MATCH_MAX_BITS {
            let start = match_main(&text, &text1[..MATCH_MAX_BITS], clamp(expected_i), &s);
            match start {
                Some(st) => {
                    end_loc = match_main(
                        &text,
                        &text1[text1.len() - MATCH_MAX_BITS..],
                        clamp(expected_i + text1.len() as isize - MATCH_MAX_BITS as isize),
                        &s,
                    );
                    match end_loc {
                        Some(e) if st < e => Some(st),
                        _ => None,
                    }
                }
                None => None,
            }
        } else {
            match_main(&text, &text1, clamp(expected_i), &s)
        };
        let Some(start_loc) = start_loc else {
            results.push(false);
            delta -= patch.length2 as isize - patch.length1 as isize;
            continue;
        };
        results.push(true);
        delta = start_loc as isize - expected_i;
        let end = match end_loc {
            None => start_loc + text1.len(),
            Some(e) => e + MATCH_MAX_BITS,
        }
        .min(text.len());
        let text2 = text[start_loc.min(end)..end].to_vec();
        if text1 == text2 {
            let new = diff_text2(&patch.diffs);
            let stop = (start_loc + text1.len()).min(text.len());
            text.splice(start_loc..stop, new);
        } else {
            let mut diffs = diff_main(&text1, &text2);
            if text1.len() > MATCH_MAX_BITS
                && diff_levenshtein(&diffs) as f64 / text1.len() as f64 > s.patch_delete_threshold
            {
                *results.last_mut().expect("pushed above") = false;
            } else {
                cleanup_semantic_lossless(&mut diffs);
                if s.skip_applied {
                    if !apply_mapped(&mut text, start_loc, &patch.diffs, &diffs) {
                        *results.last_mut().expect("pushed above") = false;
                    }
                    continue;
                }
                // Kept to undo this patch if a deletion would take the wrong characters.
                let undo = s.exact_deletions.then(|| text.clone());
                let mut wrong_deletion = false;
                let mut index1 = 0usize;
                for (op, data) in &patch.diffs {
                    let index2 = if *op != Op::Equal {
                        diff_x_index(&diffs, index1)
                    } else {
                        0
                    };
                    match op {
                        Op::Insert => {
                            let at = (start_loc + index2).min(text.len());
                            text.splice(at..at, data.iter().copied());
                        }
                        Op::Delete => {
                            let a = (start_loc + index2).min(text.len());
                            let b = (start_loc + diff_x_index(&diffs, index1 + data.len()))
                                .min(text.len())
                                .max(a);
                            if s.exact_deletions && text[a..b] != data[..] {
                                wrong_deletion = true;
                                break;
                            }
                            text.drain(a..b);
                        }
                        Op::Equal => {}
                    }
                    if *op != Op::Delete {
                        index1 += data.len();
                    }
                }
                if let (true, Some(before)) = (wrong_deletion, undo) {
                    text = before;
                    *results.last_mut().expect("pushed above") = false;
                }
            }
        }
    }
    let pl = null_padding.len();
    let inner = if text.len() >= 2 * pl {
        text[pl..text.len() - pl].to_vec()
    } else {
        Vec::new()
    };
    (inner, results)
}

/// The reference `patch_toText`: GNU-diff-like text with `%xx` escapes, for fixture checks.
pub fn patch_to_text(patches: &[Patch]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let coords = |start: usize, len: usize| match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{}", start + 1, len),
    };
    for p in patches {
        let _ = writeln!(
            out,
            "@@ -{} +{} @@",
            coords(p.start1, p.length1),
            coords(p.start2, p.length2)
        );
        for (op, data) in &p.diffs {
            out.push(match op {
                Op::Insert => '+',
                Op::Delete => '-',
                Op::Equal => ' ',
            });
            let s: String = data.iter().collect();
            out.push_str(&crate::delta::encode_uri(&s));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn diff_main_matches_reference_examples() {
        let d = diff_main(&c("abc"), &c("ab123c"));
        assert_eq!(
            d,
            vec![
                (Op::Equal, c("ab")),
                (Op::Insert, c("123")),
                (Op::Equal, c("c"))
            ]
        );
        let d = diff_main(&c("cat"), &c("map"));
        assert_eq!(diff_text1(&d), c("cat"));
        assert_eq!(diff_text2(&d), c("map"));
    }

    #[test]
    fn semantic_cleanup_fixes_cat_hag() {
        // Fraser's example (pitfall 14): without cleanup the patch turns "hat" into "hug".
        let base = c("The cat");
        let new = c("The hag");
        let patches = patch_make(&base, &new, &FuzzySettings::reference());
        let (out, ok) = patch_apply(&patches, &c("The hat"), &FuzzySettings::reference());
        assert!(ok.iter().all(|&b| b));
        assert_eq!(out.iter().collect::<String>(), "The hag");
    }

    #[test]
    fn patch_margin_is_clamped_so_bitap_terminates() {
        let s = FuzzySettings {
            patch_margin: 16,
            ..FuzzySettings::reference()
        };
        let base = c(&"abcdefghij".repeat(10));
        let mut new = base.clone();
        new.insert(50, 'X');
        let patches = patch_make(&base, &new, &s);
        let mut target = base.clone();
        target.insert(3, 'Y');
        let (out, _) = patch_apply(&patches, &target, &s);
        assert!(out.contains(&'X'));
    }
}
