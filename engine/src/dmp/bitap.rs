//! The reference Bitap matcher: where a patch's context is in a text that moved on.

use super::*;

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

pub(super) fn match_bitap(
    text: &[char],
    pattern: &[char],
    loc: usize,
    s: &FuzzySettings,
) -> Option<usize> {
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
