//! What users did and whether the final text honours it: the local edits (scripted or from a
//! workload) as positions in a client's text, and the books every final text is checked
//! against — the character ledger, the tokens inserted and deleted, the order they were placed
//! in. The simulator ([`crate::world`]) and the real run ([`crate::real`]) both keep their
//! users' edits here, so one check judges both.

use std::collections::{BTreeMap, BTreeSet};

use crate::oracle::{Ledger, TokenOrder};
use crate::scenario::Event;

/// A local edit, from the timeline or a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalEdit {
    /// Insert `text` at char `pos` (clamped to the text).
    Insert {
        /// Char position.
        pos: usize,
        /// What to insert.
        text: String,
    },
    /// Delete `len` chars from `pos` (clamped).
    Delete {
        /// Char position.
        pos: usize,
        /// Chars.
        len: usize,
    },
    /// Insert `token` at token slot `slot` (modulo the slots there are).
    InsertToken {
        /// Which slot: the start, or after a token.
        slot: usize,
        /// The token, `⟨client:k⟩`.
        token: String,
    },
    /// Delete `token` where it is visible (nothing if it is not).
    DeleteToken {
        /// The token.
        token: String,
    },
}

/// A local edit resolved against the text it applies to: chars `start..end` replaced by
/// `insert` (nothing at all for a token that is not visible).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The change, in chars: (start, end, inserted text); `None` changes nothing.
    pub change: Option<(usize, usize, String)>,
    /// For traces: `+"abc"@3`, `-2@5`, `+⟨0:1⟩@4`, `-⟨1:0⟩ (not visible)`.
    pub desc: String,
    /// The edit as a timeline event (for recorded runs).
    pub event: Event,
}

impl LocalEdit {
    /// Where this edit goes in `before`, client `client`'s text.
    pub fn resolve(&self, client: usize, before: &str) -> Resolved {
        let len = before.chars().count();
        match self {
            LocalEdit::Insert { pos, text } => {
                let p = (*pos).min(len);
                Resolved {
                    change: Some((p, p, text.clone())),
                    desc: format!("+{:?}@{p}", excerpt(text)),
                    event: Event::Insert {
                        client,
                        pos: p,
                        text: text.clone(),
                    },
                }
            }
            LocalEdit::Delete { pos, len: n } => {
                let p = (*pos).min(len);
                let e = (p + n).min(len);
                Resolved {
                    change: Some((p, e, String::new())),
                    desc: format!("-{}@{p}", e - p),
                    event: Event::Delete {
                        client,
                        pos: p,
                        len: e - p,
                    },
                }
            }
            LocalEdit::InsertToken { slot, token } => {
                let slots = token_slots(before);
                let p = slots[slot % slots.len()];
                Resolved {
                    change: Some((p, p, token.clone())),
                    desc: format!("+{token}@{p}"),
                    event: Event::InsertToken {
                        client,
                        slot: *slot,
                        token: token.clone(),
                    },
                }
            }
            LocalEdit::DeleteToken { token } => {
                let event = Event::DeleteToken {
                    client,
                    token: token.clone(),
                };
                match before.find(token.as_str()) {
                    Some(b) => {
                        let p = before[..b].chars().count();
                        Resolved {
                            change: Some((p, p + token.chars().count(), String::new())),
                            desc: format!("-{token}@{p}"),
                            event,
                        }
                    }
                    None => Resolved {
                        change: None,
                        desc: format!("-{token} (not visible)"),
                        event,
                    },
                }
            }
        }
    }
}

/// Tokens inserted and deleted, by whom (client, incarnation), and which may be lost or come
/// back because a crash undid what was not yet durable.
#[derive(Debug, Default, Clone)]
pub struct TokenBook {
    /// Token → who first inserted it.
    pub inserted: BTreeMap<String, (usize, u32)>,
    /// Token → who first deleted it.
    pub deleted: BTreeMap<String, (usize, u32)>,
    /// Inserted by a crashed incarnation before it became durable.
    pub lost_ok: BTreeSet<String>,
    /// Deleted by a crashed incarnation before the deletion became durable.
    pub resurrect_ok: BTreeSet<String>,
}

/// Everything users did, for the final checks.
#[derive(Debug, Clone)]
pub struct Users {
    /// Tokens.
    pub book: TokenBook,
    /// What users' edits did, per character (the final text must account for it).
    pub ledger: Ledger,
    /// Where users placed their tokens relative to others (order kept).
    pub order: TokenOrder,
    /// A plain insert or delete happened (then the text between tokens is not known).
    pub plain_edits: bool,
    /// Local edits made.
    pub edits: u64,
    /// The run checks tokens (intent): the book is kept.
    pub tokens: bool,
}

impl Users {
    /// Books for `clients` clients over `initial`; `typing`: a random-typing workload runs;
    /// `tokens`: the run checks intent (the token book is kept).
    pub fn new(initial: &str, clients: usize, typing: bool, tokens: bool) -> Users {
        Users {
            book: TokenBook::default(),
            ledger: Ledger::new(initial, clients),
            order: TokenOrder::default(),
            plain_edits: typing,
            edits: 0,
            tokens,
        }
    }

    /// Client `i` (incarnation `inc`) made `edit`, resolved as `r`, turning `before` into
    /// `after`.
    pub fn record(
        &mut self,
        i: usize,
        inc: u32,
        edit: &LocalEdit,
        r: &Resolved,
        before: &str,
        after: &str,
    ) {
        self.edits += 1;
        self.ledger.edit(i, before, after);
        match edit {
            LocalEdit::Insert { .. } | LocalEdit::Delete { .. } => self.plain_edits = true,
            LocalEdit::InsertToken { token, .. } if before != after => {
                // Its neighbours where it went: the last token ending at or before it, the
                // first starting at or after it.
                let p = r.change.as_ref().map_or(0, |c| c.0);
                let at = before
                    .char_indices()
                    .nth(p)
                    .map_or(before.len(), |(b, _)| b);
                let spans = token_spans(before);
                let left = spans.iter().rev().find(|(_, e, _)| *e <= at).map(|s| s.2);
                let right = spans.iter().find(|(b, _, _)| *b >= at).map(|s| s.2);
                self.order.placed(left, token, right);
            }
            _ => {}
        }
        if self.tokens {
            let b = tokens_in(before).unwrap_or_default();
            let a = tokens_in(after).unwrap_or_default();
            for t in a.keys().filter(|t| !b.contains_key(*t)) {
                self.book.inserted.entry(t.to_string()).or_insert((i, inc));
            }
            for t in b.keys().filter(|t| !a.contains_key(*t)) {
                self.book.deleted.entry(t.to_string()).or_insert((i, inc));
            }
        }
    }

    /// Client `i`'s incarnation `inc` crashed while the store held `durable`: what it did that
    /// never became durable may vanish.
    pub fn crashed(&mut self, i: usize, inc: u32, durable: &str) {
        self.ledger.crashed(i);
        let durable_tokens: BTreeSet<String> = tokens_in(durable)
            .map(|m| m.keys().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        for (t, who) in &self.book.inserted {
            if *who == (i, inc) && !durable_tokens.contains(t) {
                self.book.lost_ok.insert(t.clone());
            }
        }
        // A deletion that was not durable may vanish too: the token is in the store, or this
        // incarnation inserted it and the insertion is still in flight (it can land after the
        // crash, while the deletion never will).
        for (t, who) in &self.book.deleted {
            let unsent_own =
                self.book.inserted.get(t) == Some(&(i, inc)) && self.book.lost_ok.contains(t);
            if *who == (i, inc) && (durable_tokens.contains(t) || unsent_own) {
                self.book.resurrect_ok.insert(t.clone());
            }
        }
    }

    /// Safety (token runs): `master` never holds a duplicated or invented token.
    pub fn check_master_tokens(&self, master: &str) -> Result<(), String> {
        let map = tokens_in(master).map_err(|why| format!("master: {why}"))?;
        for (t, n) in map {
            if n > 1 {
                return Err(format!("master holds {t} {n} times"));
            }
            if !self.book.inserted.contains_key(t) {
                return Err(format!("master holds {t}, which nobody inserted"));
            }
        }
        Ok(())
    }

    /// Intent, on the final text: it accounts for what users typed and deleted (`may_drop`:
    /// the merge may drop a patch); no token lost, duplicated, invented or resurrected; tokens
    /// in the order they were placed; with tokens only, the text between them the `initial`
    /// one. Returns the lines to log (those of the checks that passed, in order) and why a
    /// check failed, if one did.
    pub fn check_final(
        &self,
        master: &str,
        may_drop: bool,
        initial: &str,
    ) -> (Vec<String>, Result<(), String>) {
        let mut log = Vec::new();
        let r = self.check_final_into(master, may_drop, initial, &mut log);
        (log, r)
    }

    fn check_final_into(
        &self,
        master: &str,
        may_drop: bool,
        initial: &str,
        log: &mut Vec<String>,
    ) -> Result<(), String> {
        log.push(self.ledger.check(master, may_drop)?);
        if self.book.inserted.is_empty() && self.book.deleted.is_empty() {
            return Ok(());
        }
        self.check_master_tokens(master)?;
        let present = tokens_in(master).unwrap_or_default();
        let mut lost = Vec::new();
        let mut resurrected = Vec::new();
        for t in self.book.inserted.keys() {
            let here = present.contains_key(t.as_str());
            let deleted = self.book.deleted.contains_key(t);
            if !deleted && !here && !self.book.lost_ok.contains(t) {
                lost.push(t.clone());
            }
            if deleted && here && !self.book.resurrect_ok.contains(t) {
                resurrected.push(t.clone());
            }
        }
        if !lost.is_empty() {
            let n = lost.len();
            lost.truncate(5);
            return Err(format!("{n} tokens lost, e.g. {}", lost.join(" ")));
        }
        if !resurrected.is_empty() {
            let n = resurrected.len();
            resurrected.truncate(5);
            return Err(format!(
                "{n} deleted tokens came back, e.g. {}",
                resurrected.join(" ")
            ));
        }
        // Order: a token stays between the tokens it was placed between.
        let positions: BTreeMap<&str, usize> = token_spans(master)
            .into_iter()
            .enumerate()
            .map(|(k, (_, _, t))| (t, k))
            .collect();
        let judged = self.order.check(&positions)?;
        // Text between tokens: with tokens only, it is the initial text, untouched.
        if !self.plain_edits {
            let mut between = String::with_capacity(master.len());
            let mut last = 0;
            for (b, e, _) in token_spans(master) {
                between.push_str(&master[last..b]);
                last = e;
            }
            between.push_str(&master[last..]);
            if between != initial {
                return Err(format!(
                    "the text between tokens changed: {:?}, expected the initial {:?}",
                    excerpt(&between),
                    excerpt(initial)
                ));
            }
        }
        log.push(format!(
            "intent ok: {} tokens present, {} inserted, {} deleted, {judged} orders kept",
            present.len(),
            self.book.inserted.len(),
            self.book.deleted.len()
        ));
        Ok(())
    }
}

/// Parse the tokens of a text. Err on a malformed token fragment.
pub fn tokens_in(text: &str) -> Result<BTreeMap<&str, usize>, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(open) = rest.find(['⟨', '⟩']) {
        let tail = &rest[open..];
        if tail.starts_with('⟩') {
            return Err(format!("stray '⟩' in {:?}", excerpt(tail)));
        }
        let Some(close) = tail.find('⟩') else {
            return Err(format!("unclosed token at {:?}", excerpt(tail)));
        };
        let token = &tail[..close + '⟩'.len_utf8()];
        let inner = &token['⟨'.len_utf8()..token.len() - '⟩'.len_utf8()];
        let ok = inner.split_once(':').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(format!("malformed token {token:?}"));
        }
        *out.entry(token).or_insert(0) += 1;
        rest = &tail[token.len()..];
    }
    Ok(out)
}

/// The first 24 chars of `s`.
pub fn excerpt(s: &str) -> String {
    s.chars().take(24).collect()
}

/// The tokens of a text with their byte spans, in order (malformed fragments skipped).
pub fn token_spans(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('⟨') {
        let b = from + open;
        let Some(close) = text[b..].find('⟩') else {
            break;
        };
        let e = b + close + '⟩'.len_utf8();
        let token = &text[b..e];
        if token[3..].contains('⟨') {
            // `⟨⟨…⟩`: start again at the inner opening.
            from = b + '⟨'.len_utf8();
            continue;
        }
        out.push((b, e, token));
        from = e;
    }
    out
}

/// Char positions where a token may be inserted: the start and after each token.
pub fn token_slots(text: &str) -> Vec<usize> {
    let mut slots = vec![0];
    for (i, c) in text.chars().enumerate() {
        if c == '⟩' {
            slots.push(i + 1);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parsing() {
        let m = tokens_in("⟨1:2⟩⟨3:4⟩x⟨1:2⟩").unwrap();
        assert_eq!(m["⟨1:2⟩"], 2);
        assert!(tokens_in("⟨1:2").is_err());
        assert!(tokens_in("⟨1:2⟩⟩").is_err());
        assert!(tokens_in("⟨a:2⟩").is_err());
        assert_eq!(token_slots("⟨1:2⟩ab⟨3:4⟩"), vec![0, 5, 12]);
    }
}
