//! Diffs of two texts as byte-offset hunks: common prefix and suffix trimmed, the middle diffed
//! by `similar` (Myers, no deadline), chance equalities folded, insertions and deletions aligned
//! by one rule. Used by operations (`op.rs`), the delta codec and the merges.
//!
//! Invariant: a diff never reads a clock and never splits a `char`.

use std::ops::Range;

/// One changed region between two texts, in byte offsets: `old` in the old text is replaced
/// by `new` in the new text. Regions are sorted and separated by unchanged text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// Bytes of the old text that are replaced.
    pub old: Range<usize>,
    /// Bytes of the new text that replace them.
    pub new: Range<usize>,
}

/// Length in bytes of the common prefix of `a` and `b`, backed off to a char boundary.
pub fn common_prefix_len(a: &str, b: &str) -> usize {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let n = ab.len().min(bb.len());
    // Compare eight bytes at a time: this scan is most of the cost of a one-char edit.
    let mut i = 0;
    while i + 8 <= n && ab[i..i + 8] == bb[i..i + 8] {
        i += 8;
    }
    while i < n && ab[i] == bb[i] {
        i += 1;
    }
    while !a.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Length in bytes of the common suffix of `a` and `b` (at most `max`), at a char boundary.
pub fn common_suffix_len(a: &str, b: &str, max: usize) -> usize {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let n = ab.len().min(bb.len()).min(max);
    let mut i = 0;
    while i + 8 <= n && ab[ab.len() - i - 8..ab.len() - i] == bb[bb.len() - i - 8..bb.len() - i] {
        i += 8;
    }
    while i < n && ab[ab.len() - 1 - i] == bb[bb.len() - 1 - i] {
        i += 1;
    }
    while !a.is_char_boundary(a.len() - i) {
        i -= 1;
    }
    i
}

/// The changed regions from `old` to `new`.
///
/// 1. The common prefix and suffix are trimmed by a byte scan; the middle is diffed char by
///    char with `similar` (Myers, no deadline).
/// 2. Chance equalities are folded: an unchanged stretch between two changes, no longer than
///    either and holding no line break or control char, joins them (diff-match-patch's
///    semantic cleanup). Why: replacing `⟨0:3⟩` by `⟨1:4⟩` "keeps" the `:`, and a merge
///    would treat that `:` as shared text.
/// 3. Pure insertions and deletions slide to their best-scoring equivalent place
///    ([`align_hunks`]), so two diffs of one base place nearby changes by one rule.
pub fn diff_hunks(old: &str, new: &str) -> Vec<Hunk> {
    if old == new {
        return Vec::new();
    }
    let p = common_prefix_len(old, new);
    let s = common_suffix_len(old, new, old.len().min(new.len()) - p);
    let (om, nm) = (&old[p..old.len() - s], &new[p..new.len() - s]);
    let mut hunks: Vec<Hunk> = Vec::new();
    if om.is_empty() || nm.is_empty() {
        hunks.push(Hunk {
            old: p..p + om.len(),
            new: p..p + nm.len(),
        });
    } else {
        // Byte offsets of each char, plus the end, so char indices map back to bytes.
        let offsets = |s: &str| -> (Vec<char>, Vec<usize>) {
            let mut chars = Vec::with_capacity(s.len());
            let mut offs = Vec::with_capacity(s.len() + 1);
            for (i, c) in s.char_indices() {
                chars.push(c);
                offs.push(i);
            }
            offs.push(s.len());
            (chars, offs)
        };
        let (oc, oo) = offsets(om);
        let (nc, no) = offsets(nm);
        // Bounded work: a diff whose shortest script is not found within the budget (two long
        // texts with little in common, or an adversarial one) is the exact, if coarse, single
        // replacement of the middle. Counted in steps, never in time, so it is deterministic.
        if !myers_fits(&oc, &nc, DIFF_BUDGET) {
            hunks.push(Hunk {
                old: p..p + om.len(),
                new: p..p + nm.len(),
            });
            align_hunks(old, new, &mut hunks);
            return hunks;
        }
        for op in similar::capture_diff_slices(similar::Algorithm::Myers, &oc, &nc) {
            if matches!(op, similar::DiffOp::Equal { .. }) {
                continue;
            }
            let (_, old_r, new_r) = op.as_tag_tuple();
            let o = p + oo[old_r.start]..p + oo[old_r.end];
            let n = p + no[new_r.start]..p + no[new_r.end];
            match hunks.last_mut() {
                Some(h) if h.old.end == o.start && h.new.end == n.start => {
                    h.old.end = o.end;
                    h.new.end = n.end;
                }
                _ => hunks.push(Hunk { old: o, new: n }),
            }
        }
        fold_chance_equalities(old, new, &mut hunks);
    }
    align_hunks(old, new, &mut hunks);
    hunks
}

/// Steps (diagonals visited plus characters matched) a diff may take to find its shortest
/// script before it settles for one replacement: about 0.1 s of work.
pub const DIFF_BUDGET: u64 = 32 << 20;

/// Whether the greedy forward pass of Myers' algorithm finds the shortest edit script of `a`
/// and `b` within `budget` steps. Its cost bounds what the full diff (`similar`'s Myers, the
/// same algorithm in linear space) then takes.
fn myers_fits(a: &[char], b: &[char], budget: u64) -> bool {
    let (n, m) = (a.len() as i64, b.len() as i64);
    // A script of d edits visits at least (d+1)(d+2)/2 diagonals: d stays below this.
    let dmax = ((2.0 * budget as f64).sqrt() as i64 + 1).min(n + m);
    let off = dmax + 1;
    let mut v = vec![0i64; (2 * dmax + 3) as usize];
    let mut steps = 0u64;
    for d in 0..=dmax {
        let mut k = -d;
        while k <= d {
            let i = (k + off) as usize;
            let mut x = if k == -d || (k != d && v[i - 1] < v[i + 1]) {
                v[i + 1]
            } else {
                v[i - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && y >= 0 && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
                steps += 1;
            }
            steps += 1;
            v[i] = x;
            if x >= n && y >= m {
                return true;
            }
            if steps > budget {
                return false;
            }
            k += 2;
        }
    }
    false
}

/// Fold chance equalities: an unchanged stretch between two changes, no longer than either and
/// holding no line break or control char, joins them, until none is left. One pass with a
/// stack (a fold only grows hunks, so the result is the same whatever the order), and sizes
/// kept as counts: linear in the hunks, where folding in place was quadratic.
fn fold_chance_equalities(old: &str, new: &str, hunks: &mut Vec<Hunk>) {
    let chars = |s: &str, r: Range<usize>| s[r].chars().count();
    // Each hunk with its size in chars on the old and the new side.
    let mut out: Vec<(Hunk, usize, usize)> = Vec::with_capacity(hunks.len());
    for h in hunks.drain(..) {
        let (mut oc, mut nc) = (chars(old, h.old.clone()), chars(new, h.new.clone()));
        let mut cur = h;
        while let Some((prev, poc, pnc)) = out.last() {
            let gap = &old[prev.old.end..cur.old.start];
            let n = gap.chars().count();
            let hard = gap.chars().any(|c| c == '\n' || c.is_control());
            if hard || n > (*poc).max(*pnc) || n > oc.max(nc) {
                break;
            }
            oc += poc + n;
            nc += pnc + n;
            cur = Hunk {
                old: prev.old.start..cur.old.end,
                new: prev.new.start..cur.new.end,
            };
            out.pop();
        }
        out.push((cur, oc, nc));
    }
    hunks.extend(out.into_iter().map(|(h, _, _)| h));
}

fn is_closing(c: char) -> bool {
    matches!(
        c,
        ')' | ']' | '}' | '>' | '⟩' | '»' | '"' | '\'' | '’' | '”'
    )
}

fn is_opening(c: char) -> bool {
    matches!(c, '(' | '[' | '{' | '<' | '⟨' | '«' | '‘' | '“')
}

/// How good a place the boundary between `a` and `b` is for an edit to start or end (higher is
/// better): text edges, line breaks, bracket edges, whitespace, punctuation, then mid-word.
/// In the spirit of diff-match-patch's `diff_cleanupSemanticScore`, with brackets added.
fn boundary_score(a: Option<char>, b: Option<char>) -> u8 {
    let (Some(a), Some(b)) = (a, b) else { return 7 };
    if a == '\n' || b == '\n' || a.is_control() || b.is_control() {
        return 5;
    }
    if is_closing(a) && is_opening(b) {
        return 4;
    }
    if is_closing(a)
        || is_opening(b)
        || (!a.is_alphanumeric() && !a.is_whitespace() && b.is_whitespace())
    {
        return 3;
    }
    if a.is_whitespace() || b.is_whitespace() {
        return 2;
    }
    if !a.is_alphanumeric() || !b.is_alphanumeric() {
        return 1;
    }
    0
}

fn char_before(s: &str, at: usize) -> Option<char> {
    s[..at].chars().next_back()
}

fn char_at(s: &str, at: usize) -> Option<char> {
    s[at..].chars().next()
}

/// Slide every pure insertion and pure deletion to its best-scoring equivalent position.
///
/// Why: an insertion or deletion next to repeated text can be placed several ways (inserting
/// `⟨b⟩` before `⟨a⟩` is also `b⟩⟨` after the first `⟨`). Three-way merges compare positions
/// from two diffs, so two clients' edits near each other must be placed by the same rule, and
/// the rule should keep edits whole: a deletion of `⟨a⟩` next to a deletion of `⟨b⟩` must not
/// become `a⟩⟨` plus `⟨b⟩`, which overlap and leave a stray `⟨` behind.
fn align_hunks(old: &str, new: &str, hunks: &mut [Hunk]) {
    for k in 0..hunks.len() {
        let lo_old = if k == 0 { 0 } else { hunks[k - 1].old.end };
        let hi_old = hunks.get(k + 1).map_or(old.len(), |h| h.old.start);
        let h = hunks[k].clone();
        if h.old.is_empty() == h.new.is_empty() {
            continue; // replacements (and empty hunks) stay where the diff put them
        }
        // A pure edit is a window of `text` (old for deletions, new for insertions) that moves
        // together with its position in the other text.
        let deletion = h.new.is_empty();
        let (text, mut win) = if deletion {
            (old, h.old.clone())
        } else {
            (new, h.new.clone())
        };
        let mut other = if deletion { h.new.start } else { h.old.start };
        let score = |w: &std::ops::Range<usize>, o: usize| -> u8 {
            if deletion {
                boundary_score(char_before(old, w.start), char_at(old, w.start))
                    + boundary_score(char_before(old, w.end), char_at(old, w.end))
            } else {
                boundary_score(char_before(old, o), char_at(new, w.start))
                    + boundary_score(char_before(new, w.end), char_at(old, o))
            }
        };
        // Move to the leftmost equivalent position first.
        loop {
            let here = if deletion { win.start } else { other };
            if here <= lo_old {
                break;
            }
            let (Some(before), Some(last)) =
                (char_before(text, win.start), char_before(text, win.end))
            else {
                break;
            };
            if before != last {
                break;
            }
            let l = before.len_utf8();
            win = win.start - l..win.end - l;
            other -= l;
        }
        let mut best = (score(&win, other), win.clone(), other);
        // Then walk right, keeping the first best score.
        loop {
            let end_old = if deletion { win.end } else { other };
            if end_old >= hi_old {
                break;
            }
            let (Some(first), Some(next)) = (char_at(text, win.start), char_at(text, win.end))
            else {
                break;
            };
            if first != next {
                break;
            }
            let l = first.len_utf8();
            win = win.start + l..win.end + l;
            other += l;
            let sc = score(&win, other);
            if sc > best.0 {
                best = (sc, win.clone(), other);
            }
        }
        let (_, w, o) = best;
        hunks[k] = if deletion {
            Hunk { old: w, new: o..o }
        } else {
            Hunk { old: o..o, new: w }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_past_its_budget_is_one_exact_replacement() {
        // Two long texts with nothing in common but their ends: far past the budget.
        let old: String = (0..200_000)
            .map(|i| if i % 3 == 0 { 'a' } else { 'b' })
            .collect();
        let new: String = (0..200_000)
            .map(|i| if i % 5 == 0 { 'a' } else { 'c' })
            .collect();
        let (old, new) = (format!("<{old}>"), format!("<{new}>"));
        let hunks = diff_hunks(&old, &new);
        // (Both start with "<a" and end with ">": the middle between is the one hunk.)
        assert_eq!(
            hunks,
            [Hunk {
                old: 2..old.len() - 1,
                new: 2..new.len() - 1
            }]
        );
        // A few changes in a long text stay a few small hunks.
        let long = "lorem ipsum dolor sit amet\n".repeat(20_000);
        let edited = long
            .replacen("dolor", "DOLOR", 1)
            .replacen("amet\nlorem", "amet\nLOREM", 3);
        let hunks = diff_hunks(&long, &edited);
        assert!(
            hunks.len() >= 2 && hunks.iter().all(|h| h.old.len() <= 6),
            "{hunks:?}"
        );
        assert!(myers_fits(&['a'; 10], &['a'; 10], 0));
        assert!(!myers_fits(&['a'; 1000], &['b'; 1000], 10_000));
    }

    #[test]
    fn prefix_suffix_back_off_to_char_boundaries() {
        // "é" and "è" share their first UTF-8 byte; the trim must not split it.
        assert_eq!(common_prefix_len("aé", "aè"), 1);
        assert_eq!(common_suffix_len("éa", "èa", 3), 1);
    }
}
