//! Patches: `patch_make` (context, padding, splitting) and `patch_apply` with this port's
//! departures (exact mapping, already-applied insertions left out).

use super::*;

/// Apply one patch's changes at `start_loc`, where the text found (`diffs`: the patch's
/// context `text1` → that text) differs from the context: each change is mapped exactly
/// through `diffs`, an insertion the text already holds is left out (see
/// [`FuzzySettings::skip_applied`]), and a deletion of anything but the exact text it meant to
/// delete drops the whole patch (false; `text` unchanged).
pub(super) fn apply_mapped(
    text: &mut Vec<char>,
    start_loc: usize,
    patch: &[Diff],
    diffs: &[Diff],
) -> bool {
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
pub(super) fn inserted_at(diffs: &[Diff], p1: usize) -> Vec<char> {
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

pub(super) fn diff_x_index(diffs: &[Diff], loc: usize) -> usize {
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

pub(super) fn add_context(patch: &mut Patch, text: &[char], s: &FuzzySettings) {
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

pub(super) fn patch_make_from_diffs(
    text1: &[char],
    diffs: &[Diff],
    s: &FuzzySettings,
) -> Vec<Patch> {
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

pub(super) fn add_padding(patches: &mut [Patch], s: &FuzzySettings) -> Vec<char> {
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

pub(super) fn split_max(patches: &mut Vec<Patch>, s: &FuzzySettings) {
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
            out.push_str(&crate::text::encode_uri(&s));
            out.push('\n');
        }
    }
    out
}
