//! Exact changes: an [`Operation`] turns one text into another as a sequence of retain,
//! insert and delete steps (byte counts at char boundaries), in the manner of ot.js's
//! `TextOperation`, with `compose` and `transform`.
//!
//! Why exact changes and not diffs: a diff is ambiguous next to repeated text (inserting `⟨b⟩`
//! before `⟨a⟩` is also `b⟩⟨` after the first `⟨`) and finds chance equalities between
//! unrelated texts, so merging two diffs can split a word or a token, or repeat it. The engine
//! knows what the user did (`insert`, `delete`) and what each merge did, so it carries those
//! operations and transforms them; diffs remain only where nothing better is known (a whole-text
//! `set_text`, a reset, a restart).
//!
//! Invariants: every operation has a known `base_len` and `target_len`; `apply` fails (never
//! panics) on a text of the wrong length or a count that splits a char; `transform(a, b)` of
//! two operations on one base gives `(a', b')` with `b'∘a == a'∘b`, inserts of `a` first at a
//! tie, deletions of both applied once, inserts never dropped.

use crate::rope::{Rope, TextEdit, TextRead};

/// One step of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep this many bytes.
    Retain(usize),
    /// Insert this text.
    Insert(String),
    /// Delete this many bytes.
    Delete(usize),
}

/// An operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The text is not the length the operation was made for.
    #[error("operation expects a text of {expected} bytes, got {got}")]
    WrongLength {
        /// Base length of the operation.
        expected: usize,
        /// Length of the text.
        got: usize,
    },
    /// A count ends inside a UTF-8 sequence.
    #[error("operation splits a character at byte {0}")]
    SplitsChar(usize),
    /// Two operations do not fit together (compose or transform).
    #[error("operations do not fit: {0}")]
    Mismatch(&'static str),
}

/// An exact change from a text of `base_len` bytes to one of `target_len` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operation {
    steps: Vec<Step>,
    base_len: usize,
    target_len: usize,
}

/// The current (possibly partly consumed) step, borrowed.
#[derive(Debug, Clone, Copy)]
enum Cur<'a> {
    Retain(usize),
    Insert(&'a str),
    Delete(usize),
}

/// Walks an operation's steps without cloning them.
struct Cursor<'a> {
    steps: &'a [Step],
    next: usize,
    cur: Option<Cur<'a>>,
}

impl<'a> Cursor<'a> {
    fn new(steps: &'a [Step]) -> Self {
        let mut c = Cursor {
            steps,
            next: 0,
            cur: None,
        };
        c.advance();
        c
    }

    fn advance(&mut self) {
        self.cur = self.steps.get(self.next).map(|s| match s {
            Step::Retain(n) => Cur::Retain(*n),
            Step::Insert(t) => Cur::Insert(t.as_str()),
            Step::Delete(n) => Cur::Delete(*n),
        });
        self.next += 1;
    }

    /// Use up `k` bytes of the current step.
    fn consume(&mut self, k: usize) -> Result<(), OpError> {
        match self.cur {
            Some(Cur::Retain(n)) if n > k => self.cur = Some(Cur::Retain(n - k)),
            Some(Cur::Delete(n)) if n > k => self.cur = Some(Cur::Delete(n - k)),
            Some(Cur::Insert(t)) if t.len() > k => {
                if !t.is_char_boundary(k) {
                    return Err(OpError::SplitsChar(k));
                }
                self.cur = Some(Cur::Insert(&t[k..]));
            }
            _ => self.advance(),
        }
        Ok(())
    }
}

impl Operation {
    /// The empty operation on the empty text.
    pub fn new() -> Operation {
        Operation::default()
    }

    /// The operation that keeps a text of `len` bytes as it is.
    pub fn identity(len: usize) -> Operation {
        let mut op = Operation::new();
        op.retain(len);
        op
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Length of the text it applies to.
    pub fn base_len(&self) -> usize {
        self.base_len
    }

    /// Length of the text it produces.
    pub fn target_len(&self) -> usize {
        self.target_len
    }

    /// True when it changes nothing.
    pub fn is_noop(&self) -> bool {
        self.steps.iter().all(|s| matches!(s, Step::Retain(_)))
    }

    /// Append a retain (merged with a previous one).
    pub fn retain(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.base_len += n;
        self.target_len += n;
        if let Some(Step::Retain(m)) = self.steps.last_mut() {
            *m += n;
        } else {
            self.steps.push(Step::Retain(n));
        }
        self
    }

    /// Append an insert. Inserts are kept before a directly preceding delete, so that equal
    /// operations have equal steps.
    pub fn insert(&mut self, s: &str) -> &mut Self {
        if s.is_empty() {
            return self;
        }
        self.target_len += s.len();
        let n = self.steps.len();
        match self.steps.last_mut() {
            Some(Step::Insert(t)) => t.push_str(s),
            Some(Step::Delete(_)) => {
                if n >= 2 {
                    if let Step::Insert(t) = &mut self.steps[n - 2] {
                        t.push_str(s);
                        return self;
                    }
                }
                self.steps.insert(n - 1, Step::Insert(s.to_string()));
            }
            _ => self.steps.push(Step::Insert(s.to_string())),
        }
        self
    }

    /// Append a delete (merged with a previous one).
    pub fn delete(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.base_len += n;
        if let Some(Step::Delete(m)) = self.steps.last_mut() {
            *m += n;
        } else {
            self.steps.push(Step::Delete(n));
        }
        self
    }

    /// The exact change that normalises the line endings of `text` (`\r\n` and a lone `\r`
    /// become `\n`, as [`crate::text::normalize_newlines`]), with its result; `None` when
    /// `text` holds no `\r`. One pass over the text: the change is read off the scan, never
    /// diffed (a diff of a text with many `\r` against its normalised self was quadratic).
    pub fn normalize_newlines(text: &str) -> Option<(Operation, String)> {
        let bytes = text.as_bytes();
        let mut op = Operation::new();
        let mut out = String::with_capacity(text.len());
        let mut kept = 0;
        for (i, _) in text.match_indices('\r') {
            op.retain(i - kept);
            out.push_str(&text[kept..i]);
            op.delete(1);
            if bytes.get(i + 1) != Some(&b'\n') {
                op.insert("\n");
                out.push('\n');
            }
            kept = i + 1;
        }
        if kept == 0 && !text.starts_with('\r') {
            return None;
        }
        op.retain(text.len() - kept);
        out.push_str(&text[kept..]);
        Some((op, out))
    }

    /// Whether applying this operation to `base` gives `base` back, comparing only the bytes
    /// between its first and last change (a keystroke's operation on a large text costs the
    /// keystroke, not the text). `base` must be the text the operation was made for.
    pub fn leaves_unchanged<T: TextRead + ?Sized>(&self, base: &T) -> bool {
        debug_assert_eq!(base.len(), self.base_len, "leaves_unchanged: wrong base");
        if self.base_len != self.target_len || base.len() != self.base_len {
            return false;
        }
        let steps = self.steps.as_slice();
        let lead = match steps.first() {
            Some(Step::Retain(n)) => *n,
            _ => 0,
        };
        let trail = match steps.last() {
            Some(Step::Retain(n)) if steps.len() > 1 => *n,
            _ => 0,
        };
        let inner = &steps[usize::from(lead > 0)..steps.len() - usize::from(trail > 0)];
        let end = self.base_len - trail;
        if lead > end || !base.is_char_boundary(lead) || !base.is_char_boundary(end) {
            return false;
        }
        // Only the span between the first and last change is read (a keystroke's worth).
        let span = base.slice(lead..end);
        let span = span.as_bytes();
        let mut pos = 0;
        let mut at = 0;
        for st in inner {
            let piece: &[u8] = match st {
                Step::Retain(n) => {
                    let Some(p) = span.get(pos..pos + n) else {
                        return false;
                    };
                    pos += n;
                    p
                }
                Step::Insert(t) => t.as_bytes(),
                Step::Delete(n) => {
                    pos += n;
                    continue;
                }
            };
            if span.get(at..at + piece.len()) != Some(piece) {
                return false;
            }
            at += piece.len();
        }
        at == span.len()
    }

    /// Apply to `text`.
    pub fn apply(&self, text: &str) -> Result<String, OpError> {
        if text.len() != self.base_len {
            return Err(OpError::WrongLength {
                expected: self.base_len,
                got: text.len(),
            });
        }
        let mut out = String::with_capacity(self.target_len);
        let mut pos = 0;
        for s in &self.steps {
            match s {
                Step::Retain(n) => {
                    let end = pos + n;
                    if !text.is_char_boundary(end) {
                        return Err(OpError::SplitsChar(end));
                    }
                    out.push_str(&text[pos..end]);
                    pos = end;
                }
                Step::Insert(t) => out.push_str(t),
                Step::Delete(n) => {
                    pos += n;
                    if !text.is_char_boundary(pos) {
                        return Err(OpError::SplitsChar(pos));
                    }
                }
            }
        }
        Ok(out)
    }

    /// CRC-32 of the text this operation makes from `base`, without changing `base` (a
    /// rope's clone is O(1) and its CRC is combined from the unchanged chunks').
    pub fn result_checksum<T: TextEdit + Clone>(&self, base: &T) -> Result<u32, OpError> {
        let mut t = base.clone();
        self.apply_in_place(&mut t)?;
        Ok(t.crc32())
    }

    /// Apply to a rope: a new rope sharing every chunk the operation leaves alone.
    pub fn apply_to(&self, text: &Rope) -> Result<Rope, OpError> {
        let mut t = text.clone();
        self.apply_in_place(&mut t)?;
        Ok(t)
    }

    /// Apply to `text` in place: each change is spliced where it is, so a keystroke moves the
    /// tail of the text instead of copying all of it into a new string.
    pub fn apply_in_place<T: TextEdit + ?Sized>(&self, text: &mut T) -> Result<(), OpError> {
        if text.len() != self.base_len {
            return Err(OpError::WrongLength {
                expected: self.base_len,
                got: text.len(),
            });
        }
        // Check every boundary first, so a failure leaves `text` untouched.
        let mut pos = 0;
        for s in &self.steps {
            match s {
                Step::Retain(n) | Step::Delete(n) => {
                    pos += n;
                    if !text.is_char_boundary(pos) {
                        return Err(OpError::SplitsChar(pos));
                    }
                }
                Step::Insert(_) => {}
            }
        }
        // Then splice from the front, tracking how far the text has shifted.
        let mut at = 0usize;
        for s in &self.steps {
            match s {
                Step::Retain(n) => at += n,
                Step::Insert(t) => {
                    text.replace_range(at..at, t);
                    at += t.len();
                }
                Step::Delete(n) => {
                    text.replace_range(at..at + n, "");
                }
            }
        }
        Ok(())
    }

    /// The operation for `self` then `other`.
    pub fn compose(&self, other: &Operation) -> Result<Operation, OpError> {
        if self.target_len != other.base_len {
            return Err(OpError::Mismatch(
                "compose: first target length != second base length",
            ));
        }
        let mut out = Operation::new();
        out.steps.reserve(self.steps.len() + other.steps.len());
        let mut a = Cursor::new(&self.steps);
        let mut b = Cursor::new(&other.steps);
        loop {
            match (a.cur, b.cur) {
                (None, None) => break,
                (Some(Cur::Delete(n)), _) => {
                    out.delete(n);
                    a.advance();
                }
                (_, Some(Cur::Insert(t))) => {
                    out.insert(t);
                    b.advance();
                }
                (None, _) | (_, None) => {
                    return Err(OpError::Mismatch("compose: lengths disagree"))
                }
                (Some(Cur::Retain(n)), Some(Cur::Retain(m))) => {
                    let k = n.min(m);
                    out.retain(k);
                    a.consume(k)?;
                    b.consume(k)?;
                }
                (Some(Cur::Insert(t)), Some(Cur::Delete(m))) => {
                    // The second deletes (part of) what the first inserted.
                    let k = t.len().min(m);
                    a.consume(k)?;
                    b.consume(k)?;
                }
                (Some(Cur::Insert(t)), Some(Cur::Retain(m))) => {
                    let k = t.len().min(m);
                    if !t.is_char_boundary(k) {
                        return Err(OpError::SplitsChar(k));
                    }
                    out.insert(&t[..k]);
                    a.consume(k)?;
                    b.consume(k)?;
                }
                (Some(Cur::Retain(n)), Some(Cur::Delete(m))) => {
                    let k = n.min(m);
                    out.delete(k);
                    a.consume(k)?;
                    b.consume(k)?;
                }
            }
        }
        Ok(out)
    }

    /// The composition of a sequence of operations, each applying to the previous one's
    /// result. Composed pairwise as a balanced tree: O(total steps × log n) rather than the
    /// O(n × total steps) of composing one after another.
    pub fn compose_all(ops: &[&Operation]) -> Result<Option<Operation>, OpError> {
        match ops {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            _ => {
                let (l, r) = ops.split_at(ops.len() / 2);
                match (Self::compose_all(l)?, Self::compose_all(r)?) {
                    (Some(a), Some(b)) => a.compose(&b).map(Some),
                    (a, b) => Ok(a.or(b)),
                }
            }
        }
    }

    /// For two operations on one base, `(a', b')` such that `b'` applies after `a` and `a'`
    /// after `b`, with the same result. Deletions of both apply once; at one position `a`'s
    /// insert comes first.
    pub fn transform(a: &Operation, b: &Operation) -> Result<(Operation, Operation), OpError> {
        if a.base_len != b.base_len {
            return Err(OpError::Mismatch("transform: base lengths differ"));
        }
        let (mut ap, mut bp) = (Operation::new(), Operation::new());
        let mut x = Cursor::new(&a.steps);
        let mut y = Cursor::new(&b.steps);
        loop {
            match (x.cur, y.cur) {
                (None, None) => break,
                (Some(Cur::Insert(t)), _) => {
                    ap.insert(t);
                    bp.retain(t.len());
                    x.advance();
                }
                (_, Some(Cur::Insert(t))) => {
                    ap.retain(t.len());
                    bp.insert(t);
                    y.advance();
                }
                (None, _) | (_, None) => {
                    return Err(OpError::Mismatch("transform: lengths disagree"))
                }
                (Some(Cur::Retain(n)), Some(Cur::Retain(m))) => {
                    let k = n.min(m);
                    ap.retain(k);
                    bp.retain(k);
                    x.consume(k)?;
                    y.consume(k)?;
                }
                (Some(Cur::Delete(n)), Some(Cur::Delete(m))) => {
                    let k = n.min(m);
                    x.consume(k)?;
                    y.consume(k)?;
                }
                (Some(Cur::Delete(n)), Some(Cur::Retain(m))) => {
                    let k = n.min(m);
                    ap.delete(k);
                    x.consume(k)?;
                    y.consume(k)?;
                }
                (Some(Cur::Retain(n)), Some(Cur::Delete(m))) => {
                    let k = n.min(m);
                    bp.delete(k);
                    x.consume(k)?;
                    y.consume(k)?;
                }
            }
        }
        Ok((ap, bp))
    }

    /// The operation turning `old` into `new`, from a diff (used where the exact change is
    /// not known).
    pub fn from_diff(old: &str, new: &str) -> Operation {
        let mut op = Operation::new();
        let mut pos = 0;
        for h in crate::diff::diff_hunks(old, new) {
            op.retain(h.old.start - pos);
            op.insert(&new[h.new.clone()]);
            op.delete(h.old.len());
            pos = h.old.end;
        }
        op.retain(old.len() - pos);
        op
    }

    /// A compact text form for storage: tab-separated `=N` (retain N bytes), `-N` (delete N
    /// bytes), `+text` (percent-encoded like a delta's inserts).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            match s {
                Step::Retain(n) => out.push_str(&format!("={n}")),
                Step::Delete(n) => out.push_str(&format!("-{n}")),
                Step::Insert(t) => {
                    out.push('+');
                    out.push_str(&crate::text::encode_uri(t));
                }
            }
        }
        out
    }

    /// Parse [`Operation::to_text`]'s form.
    pub fn parse(text: &str) -> Result<Operation, crate::text::DeltaError> {
        use crate::text::DeltaError;
        let mut op = Operation::new();
        for token in text.split('\t').filter(|t| !t.is_empty()) {
            let Some(first) = token.chars().next() else {
                continue;
            };
            let (kind, rest) = token.split_at(first.len_utf8());
            let count = || -> Result<usize, DeltaError> {
                if rest.is_empty() || rest.len() > 15 || !rest.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(DeltaError::BadCount(rest.chars().take(20).collect()));
                }
                rest.parse()
                    .map_err(|_| DeltaError::BadCount(rest.to_string()))
            };
            match kind {
                "=" => {
                    op.retain(count()?);
                }
                "-" => {
                    op.delete(count()?);
                }
                "+" => {
                    op.insert(&crate::text::decode_uri(rest)?);
                }
                _ => return Err(DeltaError::BadOperation(token.chars().take(40).collect())),
            }
        }
        Ok(op)
    }

    /// Insert `s` at byte `at` of a text of `len` bytes.
    pub fn insertion(len: usize, at: usize, s: &str) -> Operation {
        let mut op = Operation::new();
        op.retain(at).insert(s).retain(len - at);
        op
    }

    /// Delete bytes `range` of a text of `len` bytes.
    pub fn deletion(len: usize, range: std::ops::Range<usize>) -> Operation {
        let mut op = Operation::new();
        op.retain(range.start)
            .delete(range.len())
            .retain(len - range.end);
        op
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_transform_agree() {
        let base = "hello world";
        let a = Operation::insertion(base.len(), 5, ",");
        let b = Operation::deletion(base.len(), 6..11);
        let (ap, bp) = Operation::transform(&a, &b).unwrap();
        let via_a = bp.apply(&a.apply(base).unwrap()).unwrap();
        let via_b = ap.apply(&b.apply(base).unwrap()).unwrap();
        assert_eq!(via_a, "hello, ");
        assert_eq!(via_a, via_b);
        let ab = a.compose(&bp).unwrap();
        assert_eq!(ab.apply(base).unwrap(), "hello, ");
    }

    #[test]
    fn tie_puts_first_operand_first_and_deletes_once() {
        let base = "ab";
        let a = Operation::insertion(2, 1, "X");
        let b = Operation::insertion(2, 1, "Y");
        let (ap, bp) = Operation::transform(&a, &b).unwrap();
        assert_eq!(bp.apply(&a.apply(base).unwrap()).unwrap(), "aXYb");
        assert_eq!(ap.apply(&b.apply(base).unwrap()).unwrap(), "aXYb");
        let d1 = Operation::deletion(2, 0..2);
        let d2 = Operation::deletion(2, 1..2);
        let (p, q) = Operation::transform(&d1, &d2).unwrap();
        assert_eq!(q.apply(&d1.apply(base).unwrap()).unwrap(), "");
        assert_eq!(p.apply(&d2.apply(base).unwrap()).unwrap(), "");
    }

    #[test]
    fn apply_in_place_matches_apply() {
        let mut op = Operation::new();
        op.retain(2)
            .insert("XY")
            .delete(3)
            .retain(1)
            .insert("é")
            .retain(2);
        let base = "abcdefgh";
        let mut t = base.to_string();
        op.apply_in_place(&mut t).unwrap();
        assert_eq!(t, op.apply(base).unwrap());
        assert_eq!(
            op.result_checksum(&base.to_string()).unwrap(),
            crc32fast::hash(t.as_bytes())
        );
        let mut short = "ab".to_string();
        assert!(op.apply_in_place(&mut short).is_err());
        assert_eq!(short, "ab");
    }

    #[test]
    fn apply_refuses_bad_lengths_and_splits() {
        let op = Operation::identity(3);
        assert!(op.apply("ab").is_err());
        let mut op = Operation::new();
        op.retain(1).delete(1);
        assert!(matches!(op.apply("é"), Err(OpError::SplitsChar(1))));
    }

    #[test]
    fn compose_all_equals_composing_in_turn() {
        let mut text = String::from("hello");
        let mut ops = Vec::new();
        for i in 0..37 {
            let at = (i * 7) % (text.len() + 1);
            let op = if i % 3 == 2 && at < text.len() {
                Operation::deletion(text.len(), at..at + 1)
            } else {
                Operation::insertion(text.len(), at, if i % 2 == 0 { "é" } else { "x" })
            };
            let at_ok = text.is_char_boundary(at) && (i % 3 != 2 || text.is_char_boundary(at + 1));
            if !at_ok {
                continue;
            }
            text = op.apply(&text).unwrap();
            ops.push(op);
        }
        let mut seq = ops[0].clone();
        for op in &ops[1..] {
            seq = seq.compose(op).unwrap();
        }
        let refs: Vec<&Operation> = ops.iter().collect();
        let tree = Operation::compose_all(&refs).unwrap().unwrap();
        assert_eq!(tree.apply("hello").unwrap(), text);
        assert_eq!(seq.apply("hello").unwrap(), text);
    }

    #[test]
    fn text_form_roundtrips() {
        let mut op = Operation::new();
        op.retain(3).insert("a\tb%é").delete(2).retain(1);
        assert_eq!(Operation::parse(&op.to_text()).unwrap(), op);
        assert!(Operation::parse("=x").is_err());
        assert!(Operation::parse("*1").is_err());
        assert!(Operation::parse("é1").is_err());
    }

    #[test]
    fn normalize_newlines_is_exact_and_linear() {
        for t in [
            "",
            "abc",
            "\r",
            "\r\n",
            "a\r\nb\rc\n",
            "\r\r\n\r",
            "é\r😀\r\n",
        ] {
            let want = crate::text::normalize_newlines(t);
            match Operation::normalize_newlines(t) {
                None => assert!(!t.contains('\r'), "{t:?}"),
                Some((op, out)) => {
                    assert_eq!(out, want, "{t:?}");
                    assert_eq!(op.apply(t).unwrap(), want, "{t:?}");
                }
            }
        }
        // 300,000 × "\ra" (an attack that once took the server 25 s): the change has one step
        // per `\r`, read off in one pass.
        let t = "\ra".repeat(300_000);
        let (op, out) = Operation::normalize_newlines(&t).unwrap();
        assert_eq!(out, "\na".repeat(300_000));
        assert_eq!(op.apply(&t).unwrap(), out);
    }

    #[test]
    fn from_diff_roundtrips() {
        for (a, b) in [
            ("", "x"),
            ("abc", "abXc"),
            ("⟨1:2⟩⟨3:4⟩", "⟨3:4⟩⟨5:6⟩"),
            ("日本", "日本語"),
        ] {
            assert_eq!(Operation::from_diff(a, b).apply(a).unwrap(), b);
        }
    }
}
