//! Merging "the change from `base` to `changed`" into a text `current` that may have moved on
//! since `base` (the master on the server, the user's text on the client).
//!
//! Strategies, chosen per document ([`MergeStrategy`]):
//! - **Three-way** (default): the base is known exactly, so both sides are diffed against it
//!   and combined region by region. Rule, applied per base char and per gap between chars:
//!   a base char survives unless either side deleted it; insertions at the same gap are all
//!   kept, `current`'s first, then `changed`'s, and an insertion identical to the other side's
//!   at the same gap is kept once (the same edit reaching the text twice, as after a reset).
//!   So no base text is duplicated, no inserted text is lost, and nothing that neither side
//!   deleted disappears.
//! - **Fuzzy patch** (Fraser, MobWrite): patches with context placed by Bitap matching; a
//!   patch that cannot be placed is dropped and counted.
//! - **Overwrite**: `changed` wins outright. Unsafe (it loses concurrent edits); kept only as
//!   the baseline the simulator must catch losing edits.

use crate::delta::{diff_hunk_pairs, Hunk, HunkPair};
use crate::dmp::{self, FuzzySettings};

/// How a change is merged into text that moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeStrategy {
    /// Exact three-way merge against the known base (the default).
    #[default]
    ThreeWay,
    /// Fraser's fuzzy patch: context + Bitap location search.
    FuzzyPatch,
    /// Last writer wins. Loses concurrent edits: a baseline for the simulator only.
    Overwrite,
}

impl MergeStrategy {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            MergeStrategy::ThreeWay => "three_way",
            MergeStrategy::FuzzyPatch => "fuzzy_patch",
            MergeStrategy::Overwrite => "overwrite",
        }
    }
}

/// The result of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The merged text.
    pub text: String,
    /// Patches that could not be placed (fuzzy patch only).
    pub patches_dropped: u32,
}

/// Merge the change `base → changed` into `current`.
pub fn merge(
    strategy: MergeStrategy,
    fuzzy: &FuzzySettings,
    base: &str,
    changed: &str,
    current: &str,
) -> MergeOutcome {
    let plain = |text: &str| MergeOutcome {
        text: text.to_string(),
        patches_dropped: 0,
    };
    // Nothing moved on, or nothing to merge: every strategy agrees.
    if current == base {
        return plain(changed);
    }
    if changed == base {
        return plain(current);
    }
    match strategy {
        MergeStrategy::Overwrite => plain(changed),
        MergeStrategy::ThreeWay => plain(&three_way(base, changed, current)),
        MergeStrategy::FuzzyPatch => {
            let b: Vec<char> = base.chars().collect();
            let c: Vec<char> = changed.chars().collect();
            let t: Vec<char> = current.chars().collect();
            let patches = dmp::patch_make(&b, &c, fuzzy);
            let (out, applied) = dmp::patch_apply(&patches, &t, fuzzy);
            MergeOutcome {
                text: out.into_iter().collect(),
                patches_dropped: applied.iter().filter(|&&ok| !ok).count() as u32,
            }
        }
    }
}

/// How insertions at the same gap are collapsed in a three-way merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameGap {
    /// Keep both unless identical (ordinary merges).
    KeepUnlessIdentical,
    /// Also collapse when one side's insertion already holds the other's at its start: used
    /// only when re-merging local typing after a reset, where the server may already hold a
    /// prefix of that typing (its acknowledgement was lost before the server forgot the
    /// session).
    CollapseContained,
}

/// Three-way merge by the rule in the module docs.
pub fn three_way(base: &str, changed: &str, current: &str) -> String {
    three_way_with(base, changed, current, SameGap::KeepUnlessIdentical)
}

/// Three-way merge with an explicit same-gap rule.
pub fn three_way_with(base: &str, changed: &str, current: &str, same_gap: SameGap) -> String {
    let (ours, theirs) = resolve_detail(diff_hunk_pairs(base, current), diff_hunk_pairs(base, changed));

    // Deleted base ranges of both sides, merged into a sorted union.
    let mut deleted: Vec<std::ops::Range<usize>> = ours
        .iter()
        .chain(theirs.iter())
        .filter(|h| !h.old.is_empty())
        .map(|h| h.old.clone())
        .collect();
    deleted.sort_by_key(|r| (r.start, r.end));
    let mut union: Vec<std::ops::Range<usize>> = Vec::with_capacity(deleted.len());
    for r in deleted {
        match union.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => union.push(r),
        }
    }

    // Insertions anchored at the gap before each hunk's deleted range.
    let inserts = |hunks: &[Hunk], text: &str, side: u8| -> Vec<(usize, u8, String)> {
        hunks
            .iter()
            .filter(|h| !h.new.is_empty())
            .map(|h| (h.old.start, side, text[h.new.clone()].to_string()))
            .collect()
    };
    let mut ins = inserts(&ours, current, 0);
    ins.extend(inserts(&theirs, changed, 1));
    // Stable sort: at one gap, `current`'s insertion (side 0) comes first.
    ins.sort_by_key(|(gap, side, _)| (*gap, *side));

    let mut out = String::with_capacity(current.len().max(changed.len()));
    let mut pos = 0;
    let mut k = 0;
    let mut i = 0;
    while i < ins.len() {
        let gap = ins[i].0;
        copy_surviving(base, pos, gap, &union, &mut k, &mut out);
        pos = pos.max(gap);
        let ours_here = (ins[i].1 == 0).then(|| ins[i].2.as_str());
        out.push_str(&ins[i].2);
        i += 1;
        if let (Some(o), Some(next)) = (ours_here, ins.get(i)) {
            if next.0 == gap && next.1 == 1 {
                let t = next.2.as_str();
                match same_gap {
                    _ if t == o => {}
                    SameGap::CollapseContained if t.starts_with(o) => out.push_str(&t[o.len()..]),
                    SameGap::CollapseContained if o.starts_with(t) => {}
                    _ => out.push_str(t),
                }
                i += 1;
            }
        }
    }
    copy_surviving(base, pos, base.len(), &union, &mut k, &mut out);
    out
}

/// Do two changes touch the same base text? Two insertions never do (they are ordered at their
/// gap); an insertion does when it falls strictly inside the other's range.
fn conflicting(a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> bool {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => false,
        (true, false) => b.start < a.start && a.start < b.end,
        (false, true) => a.start < b.start && b.start < a.end,
        (false, false) => a.start < b.end && b.start < a.end,
    }
}

/// Precise changes, except where the sides' changes collide inside a segment; there, whole
/// segments.
///
/// Why: inside one segment a precise change can be a coincidence of the diff (replacing
/// `⟨0:3⟩` by `⟨1:3⟩` looks like changing one digit). When the other side removed that whole
/// segment, merging the precise piece would leave a fragment (`1`); merging the whole segment
/// gives the replacement. The rules, applied until nothing changes, for two colliding changes:
/// - one side's change covers the other's whole segment: the other goes whole;
/// - both replace text (delete and insert) in the same place: both go whole (both versions
///   are kept, in order, rather than interleaved char by char);
/// - otherwise (deletions overlapping, an insertion inside a deletion) the precise merge is
///   already right: deleted chars go once, inserted text stays.
fn resolve_detail(ours: Vec<HunkPair>, theirs: Vec<HunkPair>) -> (Vec<Hunk>, Vec<Hunk>) {
    let mut whole_o = vec![false; ours.len()];
    let mut whole_t = vec![false; theirs.len()];
    let level = |p: &HunkPair, whole: bool| if whole { p.coarse.clone() } else { p.fine.clone() };
    let covers = |a: &Hunk, b: &Hunk| a.old.start <= b.old.start && b.old.end <= a.old.end && !a.old.is_empty();
    let replaces = |h: &Hunk| !h.old.is_empty() && !h.new.is_empty();
    loop {
        let mut changed = false;
        for (i, o) in ours.iter().enumerate() {
            for (j, t) in theirs.iter().enumerate() {
                // Hunks are sorted; pairs that cannot meet even whole are skipped.
                if t.coarse.old.start > o.coarse.old.end || o.coarse.old.start > t.coarse.old.end {
                    continue;
                }
                let (ho, ht) = (level(o, whole_o[i]), level(t, whole_t[j]));
                if !conflicting(&ho.old, &ht.old) {
                    continue;
                }
                if !whole_t[j] && covers(&ho, &t.coarse) && t.coarse != t.fine {
                    whole_t[j] = true;
                    changed = true;
                }
                if !whole_o[i] && covers(&ht, &o.coarse) && o.coarse != o.fine {
                    whole_o[i] = true;
                    changed = true;
                }
                if replaces(&ho) && replaces(&ht) && (!whole_o[i] || !whole_t[j]) {
                    whole_o[i] = true;
                    whole_t[j] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let take = |v: Vec<HunkPair>, w: &[bool]| -> Vec<Hunk> {
        v.into_iter().zip(w).map(|(p, &w)| if w { p.coarse } else { p.fine }).collect()
    };
    (take(ours, &whole_o), take(theirs, &whole_t))
}

/// Append `base[from..to]` minus the deleted ranges; `k` is a cursor into `deleted`.
fn copy_surviving(
    base: &str,
    mut from: usize,
    to: usize,
    deleted: &[std::ops::Range<usize>],
    k: &mut usize,
    out: &mut String,
) {
    while from < to {
        while *k < deleted.len() && deleted[*k].end <= from {
            *k += 1;
        }
        match deleted.get(*k) {
            Some(d) if d.start <= from => from = d.end.min(to),
            Some(d) => {
                let stop = d.start.min(to);
                out.push_str(&base[from..stop]);
                from = stop;
            }
            None => {
                out.push_str(&base[from..to]);
                from = to;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tw(base: &str, changed: &str, current: &str) -> String {
        merge(
            MergeStrategy::ThreeWay,
            &FuzzySettings::default(),
            base,
            changed,
            current,
        )
        .text
    }

    #[test]
    fn disjoint_edits_both_apply() {
        assert_eq!(
            tw("hello world", "hello brave world", "hello world!"),
            "hello brave world!"
        );
    }

    #[test]
    fn same_gap_inserts_keep_both_current_first() {
        assert_eq!(tw("ab", "aYb", "aXb"), "aXYb");
    }

    #[test]
    fn identical_same_gap_insert_kept_once() {
        assert_eq!(tw("ab", "aXb", "aXb"), "aXb");
    }

    #[test]
    fn overlapping_deletes_do_not_duplicate_or_lose() {
        // current deletes "bc", changed deletes "cd": the union "bcd" goes, "a" and "e" stay.
        assert_eq!(tw("abcde", "abe", "ade"), "ae");
    }

    #[test]
    fn insert_inside_deleted_range_survives() {
        assert_eq!(tw("abcdef", "abcXdef", "af"), "aXf");
    }

    #[test]
    fn overwrite_loses_concurrent_edit() {
        let o = merge(
            MergeStrategy::Overwrite,
            &FuzzySettings::default(),
            "ab",
            "abY",
            "Xab",
        );
        assert_eq!(o.text, "abY");
    }

    #[test]
    fn fuzzy_places_patch_in_moved_text() {
        let o = merge(
            MergeStrategy::FuzzyPatch,
            &FuzzySettings::default(),
            "The quick brown fox jumps over the lazy dog.",
            "The quick red fox jumps over the lazy dog.",
            "Well, the quick brown fox jumps over the lazy dog.",
        );
        assert_eq!(o.text, "Well, the quick red fox jumps over the lazy dog.");
        assert_eq!(o.patches_dropped, 0);
    }
}
