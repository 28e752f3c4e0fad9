//! The delta codec: how a change is written on the wire, and how it is applied strictly.
//!
//! The wire form is diff-match-patch's delta text (`=N`, `-N`, `+percent-encoded`, separated by
//! tabs) with N in **UTF-16 code units**, as the maintained JS/Java/Python libraries count.
//! Inside the engine every text is a Rust `String`; conversion happens here and in `text.rs`.
//!
//! Invariants:
//! - [`Delta::parse`] and [`Delta::apply`] never panic on any input; they return [`DeltaError`].
//! - A delta applies only to the exact text it was made from: counts must sum to that text's
//!   UTF-16 length and may not split a surrogate pair.

use std::fmt;

use percent_encoding::utf8_percent_encode;

use crate::diff::{diff_hunks, Hunk};
use crate::rope::TextRead;
pub use crate::text::DeltaError;
use crate::text::{advance_utf16, decode_uri, utf16_len, URI_ESCAPE};

/// One delta operation; counts are UTF-16 code units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaOp {
    /// `=N`: keep N units.
    Keep(usize),
    /// `-N`: delete N units.
    Delete(usize),
    /// `+text`: insert text.
    Insert(String),
}

/// A change from one text to the next, in diff-match-patch delta form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    ops: Vec<DeltaOp>,
}

impl Delta {
    /// A delta from its operations.
    pub fn from_ops(ops: Vec<DeltaOp>) -> Self {
        Delta { ops }
    }

    /// The operations.
    pub fn ops(&self) -> &[DeltaOp] {
        &self.ops
    }

    /// The delta that turns `old` into `new`.
    pub fn diff(old: &str, new: &str) -> Delta {
        Delta::from_hunks(old, new, &diff_hunks(old, new))
    }

    /// The delta for precomputed hunks of `old` → `new`.
    pub fn from_hunks(old: &str, new: &str, hunks: &[Hunk]) -> Delta {
        let mut ops = Vec::with_capacity(hunks.len() * 3 + 1);
        let mut pos = 0;
        for h in hunks {
            if h.old.start > pos {
                ops.push(DeltaOp::Keep(utf16_len(&old[pos..h.old.start])));
            }
            if !h.old.is_empty() {
                ops.push(DeltaOp::Delete(utf16_len(&old[h.old.clone()])));
            }
            if !h.new.is_empty() {
                ops.push(DeltaOp::Insert(new[h.new.clone()].to_string()));
            }
            pos = h.old.end;
        }
        if pos < old.len() {
            ops.push(DeltaOp::Keep(utf16_len(&old[pos..])));
        }
        Delta { ops }
    }

    /// Parse delta text; checks syntax only (fit is checked by [`Delta::apply`]).
    pub fn parse(text: &str, max_bytes: usize) -> Result<Delta, DeltaError> {
        if text.len() > max_bytes {
            return Err(DeltaError::TooLarge {
                len: text.len(),
                max: max_bytes,
            });
        }
        let mut ops = Vec::new();
        for token in text.split('\t') {
            // Blank tokens are allowed, as in the reference (a trailing tab makes one).
            let Some(kind) = token.chars().next() else {
                continue;
            };
            let param = &token[kind.len_utf8()..];
            match kind {
                '+' => ops.push(DeltaOp::Insert(decode_uri(param)?)),
                '=' | '-' => {
                    let n = parse_count(param)?;
                    ops.push(if kind == '=' {
                        DeltaOp::Keep(n)
                    } else {
                        DeltaOp::Delete(n)
                    });
                }
                _ => return Err(DeltaError::BadOperation(token.chars().take(40).collect())),
            }
        }
        Ok(Delta { ops })
    }

    /// Apply strictly to `text`: the counts must cover `text` exactly.
    pub fn apply(&self, text: &str) -> Result<String, DeltaError> {
        let mut out = String::with_capacity(text.len() + 16);
        let mut pos = 0;
        for op in &self.ops {
            match op {
                DeltaOp::Keep(n) => {
                    let end = advance_utf16(text, pos, *n)?;
                    out.push_str(&text[pos..end]);
                    pos = end;
                }
                DeltaOp::Delete(n) => pos = advance_utf16(text, pos, *n)?,
                DeltaOp::Insert(s) => out.push_str(s),
            }
        }
        if pos != text.len() {
            return Err(DeltaError::DoesNotFit {
                covered: utf16_len(&text[..pos]),
                len: utf16_len(text),
            });
        }
        Ok(out)
    }

    /// The exact operation this delta stands for on `base` (strict: the counts must cover
    /// `base` exactly and not split a surrogate pair).
    pub fn to_operation<T: TextRead + ?Sized>(
        &self,
        base: &T,
    ) -> Result<crate::op::Operation, DeltaError> {
        let mut op = crate::op::Operation::new();
        let mut pos = 0;
        for d in &self.ops {
            match d {
                DeltaOp::Keep(n) => {
                    let end = base.advance_utf16(pos, *n)?;
                    op.retain(end - pos);
                    pos = end;
                }
                DeltaOp::Delete(n) => {
                    let end = base.advance_utf16(pos, *n)?;
                    op.delete(end - pos);
                    pos = end;
                }
                DeltaOp::Insert(s) => {
                    op.insert(s);
                }
            }
        }
        if pos != base.len() {
            return Err(DeltaError::DoesNotFit {
                covered: base.utf16_in(0..pos),
                len: base.utf16_in(0..base.len()),
            });
        }
        Ok(op)
    }

    /// The delta of an operation on `base` (which must be the text it applies to).
    pub fn from_operation<T: TextRead + ?Sized>(op: &crate::op::Operation, base: &T) -> Delta {
        use crate::op::Step;
        let mut ops = Vec::with_capacity(op.steps().len());
        let mut pos = 0;
        for s in op.steps() {
            match s {
                Step::Retain(n) => {
                    ops.push(DeltaOp::Keep(base.utf16_in(pos..pos + n)));
                    pos += n;
                }
                Step::Delete(n) => {
                    ops.push(DeltaOp::Delete(base.utf16_in(pos..pos + n)));
                    pos += n;
                }
                Step::Insert(t) => ops.push(DeltaOp::Insert(t.clone())),
            }
        }
        Delta { ops }
    }
}

fn parse_count(param: &str) -> Result<usize, DeltaError> {
    if param.is_empty() || param.len() > 15 || !param.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DeltaError::BadCount(param.chars().take(20).collect()));
    }
    param
        .parse()
        .map_err(|_| DeltaError::BadCount(param.to_string()))
}

impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str("\t")?;
            }
            match op {
                DeltaOp::Keep(n) => write!(f, "={n}")?,
                DeltaOp::Delete(n) => write!(f, "-{n}")?,
                DeltaOp::Insert(s) => write!(f, "+{}", utf8_percent_encode(s, URI_ESCAPE))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(old: &str, new: &str) {
        let d = Delta::diff(old, new);
        let text = d.to_string();
        let parsed = Delta::parse(&text, usize::MAX).unwrap();
        assert_eq!(parsed.apply(old).unwrap(), new, "delta {text:?}");
    }

    /// The reference's deltas never hold an empty operation (`=0`, `-0`, `+`): neither do ours.
    #[test]
    fn deltas_hold_no_empty_operations() {
        for (old, new, want) in [
            ("abc", "xbc", "-1\t+x\t=2"),
            ("abc", "abx", "=2\t-1\t+x"),
            ("abc", "xabc", "+x\t=3"),
            ("abc", "", "-3"),
            ("", "abc", "+abc"),
        ] {
            let d = Delta::diff(old, new);
            assert_eq!(d.to_string(), want, "{old:?} -> {new:?}");
            assert!(d.ops().iter().all(|op| match op {
                DeltaOp::Keep(n) | DeltaOp::Delete(n) => *n > 0,
                DeltaOp::Insert(t) => !t.is_empty(),
            }));
        }
    }

    /// Counts have at most 15 digits (more than any document holds): a 16th is refused at
    /// parse, before anything is applied.
    #[test]
    fn counts_of_up_to_15_digits_parse_and_longer_are_refused() {
        let nines = |n: usize| "9".repeat(n);
        assert!(Delta::parse(&format!("={}", nines(15)), 100).is_ok());
        assert!(matches!(
            Delta::parse(&format!("={}", nines(16)), 100),
            Err(DeltaError::BadCount(_))
        ));
        assert!(matches!(
            Delta::parse(&format!("-{}", nines(16)), 100),
            Err(DeltaError::BadCount(_))
        ));
    }

    /// The size limit is inclusive: a delta exactly `max_bytes` long parses.
    #[test]
    fn a_delta_exactly_at_the_limit_parses() {
        let text = "=1\t+ab";
        assert!(Delta::parse(text, text.len()).is_ok());
        assert!(matches!(
            Delta::parse(text, text.len() - 1),
            Err(DeltaError::TooLarge { .. })
        ));
    }

    #[test]
    fn emoji_counts_utf16_units() {
        // The guide's example: "a😀b" → "a😀c" is =3 -1 +c.
        assert_eq!(Delta::diff("a😀b", "a😀c").to_string(), "=3\t-1\t+c");
    }

    #[test]
    fn roundtrips_mixed_scripts() {
        roundtrip("", "hello");
        roundtrip("hello", "");
        roundtrip("héllo wörld", "hallo welt 🌍");
        roundtrip("e\u{301}t\u{e9}", "e\u{301}te\u{301}"); // combining marks
        roundtrip("日本語のテキスト", "日本のテキストです");
        roundtrip("line1\r\nline2\r\n", "line1\r\nlineX\r\n");
        roundtrip("👨‍👩‍👧 family", "👨‍👩‍👦 family");
        roundtrip("tab\there 100% sure", "tab\there 50% sure+");
    }

    #[test]
    fn encodes_like_diff_match_patch() {
        let d = Delta::from_ops(vec![DeltaOp::Insert("a b%\t\n~!*'();/?:@&=+$,#é".into())]);
        assert_eq!(d.to_string(), "+a b%25%09%0A~!*'();/?:@&=+$,#%C3%A9");
    }

    #[test]
    fn accepts_empty_ops() {
        let d = Delta::parse("=0\t-0\t+\t=2\t", 100).unwrap();
        assert_eq!(d.apply("ab").unwrap(), "ab");
    }

    #[test]
    fn rejects_surrogate_split_and_misfit() {
        let d = Delta::parse("=1\t+x", 100).unwrap();
        assert!(matches!(d.apply("😀"), Err(DeltaError::SplitsSurrogate(1))));
        let d = Delta::parse("=1", 100).unwrap();
        assert!(matches!(d.apply("ab"), Err(DeltaError::DoesNotFit { .. })));
        let d = Delta::parse("=3", 100).unwrap();
        assert!(matches!(d.apply("ab"), Err(DeltaError::DoesNotFit { .. })));
    }
}
