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

pub(super) fn find(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
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
pub(super) fn rfind_from(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
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

pub(super) fn rfind(hay: &[char], needle: &[char]) -> Option<usize> {
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

pub(super) fn common_overlap(text1: &[char], text2: &[char]) -> usize {
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

mod bitap;
mod diff;
mod patch;

pub use self::bitap::*;
pub use self::diff::*;
pub use self::patch::*;

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
