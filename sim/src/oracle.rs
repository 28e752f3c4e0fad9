//! Oracles that see wrong text, not only disagreement: a character ledger that every final text
//! must account for, and the order in which users placed their tokens; and one that sees a
//! client stuck while faults go on elsewhere ([`Progress`]).
//!
//! The ledger counts, per character, what users' edits put into and took out of their own
//! texts. Whatever the merges did, the final text holds each character
//! - at most as often as it was there at the start plus every insertion of it (nothing is
//!   duplicated or invented: the contract of every merge strategy, fuzzy patch included), and
//! - at least as often as that minus every deletion of it (nothing typed is lost: three-way
//!   merging keeps every insertion; only fuzzy patch may drop a patch, and only a crash may
//!   undo typing that was not yet acknowledged).
//!
//! Concurrent deletions of one character count twice, so the lower bound has slack there and
//! only there.

use std::collections::BTreeMap;

/// Per-character counts.
pub type Counts = BTreeMap<char, u64>;

fn count_into(map: &mut Counts, text: &str) {
    for c in text.chars() {
        *map.entry(c).or_insert(0) += 1;
    }
}

/// Bytes `before` and `after` share at the start, in whole chars.
pub fn common_prefix(before: &str, after: &str) -> usize {
    before
        .chars()
        .zip(after.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum()
}

/// The span where `before` and `after` differ, as (removed, inserted) text.
pub fn changed_span<'a>(before: &'a str, after: &'a str) -> (&'a str, &'a str) {
    let prefix = common_prefix(before, after);
    let (b, a) = (&before[prefix..], &after[prefix..]);
    let suffix: usize = b
        .chars()
        .rev()
        .zip(a.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum();
    (&b[..b.len() - suffix], &a[..a.len() - suffix])
}

/// What users' edits did, character by character.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    initial: Counts,
    inserted: Counts,
    deleted: Counts,
    /// Insertions a crash may have undone: typed since the crashed client was last settled.
    unsure: Counts,
    /// Per client: insertions since it was last settled (all acknowledged, so durable).
    since_settled: Vec<Counts>,
}

impl Ledger {
    /// A ledger for `clients` clients over `initial` text.
    pub fn new(initial: &str, clients: usize) -> Ledger {
        let mut l = Ledger {
            since_settled: vec![Counts::new(); clients],
            ..Ledger::default()
        };
        count_into(&mut l.initial, initial);
        l
    }

    /// Client `i`'s edit turned its text `before` into `after`.
    pub fn edit(&mut self, i: usize, before: &str, after: &str) {
        let (removed, inserted) = changed_span(before, after);
        count_into(&mut self.deleted, removed);
        count_into(&mut self.inserted, inserted);
        if let Some(s) = self.since_settled.get_mut(i) {
            count_into(s, inserted);
        }
    }

    /// True when client `i` has typed something since it was last settled.
    pub fn has_unsettled(&self, i: usize) -> bool {
        self.since_settled.get(i).is_some_and(|s| !s.is_empty())
    }

    /// Client `i` is settled: everything it typed is acknowledged, hence durable.
    pub fn settled(&mut self, i: usize) {
        if let Some(s) = self.since_settled.get_mut(i) {
            s.clear();
        }
    }

    /// Client `i` crashed: what it typed since it was last settled may be gone.
    pub fn crashed(&mut self, i: usize) {
        if let Some(s) = self.since_settled.get_mut(i) {
            for (c, n) in std::mem::take(s) {
                *self.unsure.entry(c).or_insert(0) += n;
            }
        }
    }

    /// Check `text` against the ledger. `may_drop`: the merge strategy may drop insertions
    /// (fuzzy patch), so only the upper bound holds. Ok: a line for the trace.
    pub fn check(&self, text: &str, may_drop: bool) -> Result<String, String> {
        let mut have = Counts::new();
        count_into(&mut have, text);
        let get = |m: &Counts, c: char| m.get(&c).copied().unwrap_or(0);
        let mut chars: Vec<char> = have.keys().copied().collect();
        chars.extend(self.inserted.keys());
        chars.extend(self.initial.keys());
        chars.sort_unstable();
        chars.dedup();
        for c in chars {
            let (n, ini, ins, del) = (
                get(&have, c),
                get(&self.initial, c),
                get(&self.inserted, c),
                get(&self.deleted, c),
            );
            if n > ini + ins {
                return Err(format!(
                    "text duplicated or invented: {c:?} is there {n} times, but only {} were ever typed or there at the start",
                    ini + ins
                ));
            }
            let floor = (ini + ins).saturating_sub(del + get(&self.unsure, c));
            if !may_drop && n < floor {
                return Err(format!(
                    "typing lost: {c:?} is there {n} times; {ini} at the start, {ins} typed, {del} deleted: at least {floor} must remain"
                ));
            }
        }
        let total = |m: &Counts| m.values().sum::<u64>();
        Ok(format!(
            "text ok: {} chars accounted for ({} typed, {} deleted{})",
            text.chars().count(),
            total(&self.inserted),
            total(&self.deleted),
            if may_drop {
                "; fuzzy patch may drop, never duplicate or invent"
            } else {
                ""
            }
        ))
    }
}

/// The order in which users placed tokens: a token inserted between two others must stay
/// between them (when all three survive), whatever else is inserted around it.
#[derive(Debug, Default, Clone)]
pub struct TokenOrder {
    /// (earlier, later) pairs.
    before: Vec<(String, String)>,
}

impl TokenOrder {
    /// `token` was inserted into a text whose tokens, in order, are `around`: it went between
    /// `left` and `right` (either may be missing at an end).
    pub fn placed(&mut self, left: Option<&str>, token: &str, right: Option<&str>) {
        if let Some(l) = left {
            self.before.push((l.to_string(), token.to_string()));
        }
        if let Some(r) = right {
            self.before.push((token.to_string(), r.to_string()));
        }
    }

    /// Every recorded order that `positions` (token → index in the final text) can judge holds.
    pub fn check(&self, positions: &BTreeMap<&str, usize>) -> Result<usize, String> {
        let mut judged = 0;
        for (a, b) in &self.before {
            if let (Some(pa), Some(pb)) = (positions.get(a.as_str()), positions.get(b.as_str())) {
                judged += 1;
                if pa > pb {
                    return Err(format!(
                        "tokens out of order: {a} was placed before {b}, but the text has {b} first"
                    ));
                }
            }
        }
        Ok(judged)
    }
}

/// Progress during faults: a client that can reach the server (both up, no partition between
/// them, a link that neither drops nor damages messages) and has typing to send must get some
/// of it acknowledged within a bound, whatever happens to the others. A clock starts when such
/// a client has work; it restarts whenever the server acknowledges something (the client's
/// oldest unacknowledged version moves, or its session is reset) or the client stops being
/// reachable (it may then need a reconnect, which the bound covers).
pub struct Progress {
    /// Per client: since when it has been reachable with work, and its marker then.
    since: Vec<Option<(u64, Marker)>>,
}

/// What moves when the server acknowledges a client's typing: the client's oldest
/// unacknowledged version and its reset count.
pub type Marker = (u64, u64);

/// The bound, in virtual ms of the simulator's clock for a client whose clock runs true: long
/// enough for the longest reconnect backoff (4 s), a retransmit (≤ 3 s) and several round trips.
pub const PROGRESS_WITHIN_MS: u64 = 20_000;

impl Progress {
    /// No clocks running, for `clients` clients.
    pub fn new(clients: usize) -> Progress {
        Progress {
            since: vec![None; clients],
        }
    }

    /// Observe client `i` at `now`: `state` is its marker when it is reachable with work, else
    /// None. Err(how long it has been stuck) once that passes `bound_ms`.
    pub fn observe(
        &mut self,
        i: usize,
        now: u64,
        state: Option<Marker>,
        bound_ms: u64,
    ) -> Result<(), u64> {
        let slot = &mut self.since[i];
        match (state, *slot) {
            (None, _) => *slot = None,
            (Some(m), Some((t, m0))) if m == m0 => {
                if now - t > bound_ms {
                    return Err(now - t);
                }
            }
            (Some(m), _) => *slot = Some((now, m)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_sees_lost_duplicated_and_invented_text() {
        let mut l = Ledger::new("ab", 2);
        l.edit(0, "ab", "axb");
        l.edit(1, "ab", "a");
        assert!(l.check("ax", false).is_ok());
        // Both deletions of one char (concurrent) leave slack, never a false alarm.
        l.edit(0, "axb", "ax");
        assert!(l.check("ax", false).is_ok());
        assert!(l
            .check("a", false)
            .unwrap_err()
            .contains("typing lost: 'x'"));
        assert!(l.check("axx", false).unwrap_err().contains("duplicated"));
        assert!(l.check("axq", false).unwrap_err().contains("'q'"));
        // Fuzzy patch may drop but not duplicate.
        assert!(l.check("a", true).is_ok());
        assert!(l.check("axx", true).is_err());
    }

    #[test]
    fn a_crash_excuses_only_what_was_typed_since_settling() {
        let mut l = Ledger::new("", 1);
        l.edit(0, "", "a");
        l.settled(0);
        l.edit(0, "a", "ab");
        l.crashed(0);
        assert!(l.check("a", false).is_ok());
        assert!(l.check("", false).unwrap_err().contains("'a'"));
    }

    #[test]
    fn changed_spans_are_minimal() {
        assert_eq!(changed_span("hello", "hexllo"), ("", "x"));
        assert_eq!(changed_span("été", "éé"), ("t", ""));
        assert_eq!(changed_span("aaa", "aaa"), ("", ""));
    }

    #[test]
    fn token_order_is_checked_where_both_survive() {
        let mut o = TokenOrder::default();
        o.placed(Some("A"), "T", Some("B"));
        let pos = |v: &[&'static str]| -> BTreeMap<&'static str, usize> {
            v.iter().enumerate().map(|(i, t)| (*t, i)).collect()
        };
        assert_eq!(o.check(&pos(&["A", "X", "T", "B"])), Ok(2));
        assert!(o.check(&pos(&["T", "A", "B"])).is_err());
        assert_eq!(o.check(&pos(&["T", "B"])), Ok(1));
    }

    #[test]
    fn progress_clock_runs_only_while_reachable_with_nothing_acknowledged() {
        let mut p = Progress::new(1);
        let bound = 1_000;
        assert_eq!(p.observe(0, 0, Some((3, 0)), bound), Ok(()));
        assert_eq!(p.observe(0, 900, Some((3, 0)), bound), Ok(()));
        // An acknowledgement restarts the clock.
        assert_eq!(p.observe(0, 950, Some((4, 0)), bound), Ok(()));
        assert_eq!(p.observe(0, 1_900, Some((4, 0)), bound), Ok(()));
        assert_eq!(p.observe(0, 2_000, Some((4, 0)), bound), Err(1_050));
        // Unreachable or idle: no clock; reachable again: a fresh one.
        assert_eq!(p.observe(0, 2_100, None, bound), Ok(()));
        assert_eq!(p.observe(0, 2_200, Some((4, 0)), bound), Ok(()));
        assert_eq!(p.observe(0, 3_100, Some((4, 0)), bound), Ok(()));
        // A reset counts as progress too.
        assert_eq!(p.observe(0, 3_150, Some((4, 1)), bound), Ok(()));
        assert_eq!(p.observe(0, 4_100, Some((4, 1)), bound), Ok(()));
    }
}
