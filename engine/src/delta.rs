//! Diff, delta and checksum: what changes between two versions of a text, how that change is
//! written on the wire, and how it is applied strictly.
//!
//! The wire form is diff-match-patch's delta text (`=N`, `-N`, `+percent-encoded`, separated by
//! tabs) with N in **UTF-16 code units**, as the maintained JS/Java/Python libraries count.
//! Inside the engine every text is a Rust `String`; conversion happens here and nowhere else.
//!
//! Invariants:
//! - [`Delta::parse`] and [`Delta::apply`] never panic on any input; they return [`DeltaError`].
//! - A delta applies only to the exact text it was made from: counts must sum to that text's
//!   UTF-16 length and may not split a surrogate pair.
//! - Diffs never read a clock (no `similar` deadline) and never split a `char`.

use std::fmt;
use std::ops::Range;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Why a delta could not be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// A token does not start with `=`, `-` or `+`.
    #[error("invalid delta operation {0:?}")]
    BadOperation(String),
    /// A count is not a non-negative decimal integer.
    #[error("invalid delta count {0:?}")]
    BadCount(String),
    /// A `%` is not followed by two hex digits.
    #[error("invalid percent-encoding in {0:?}")]
    BadEscape(String),
    /// The decoded bytes are not UTF-8.
    #[error("inserted text is not valid UTF-8 after percent-decoding")]
    BadUtf8,
    /// The delta text is longer than the configured maximum.
    #[error("delta is {len} bytes, over the maximum of {max}")]
    TooLarge {
        /// Size of the delta text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The counts do not sum to the text's UTF-16 length.
    #[error("delta does not fit the text: it covers {covered} UTF-16 units of {len}")]
    DoesNotFit {
        /// UTF-16 units covered by `=` and `-` before the mismatch.
        covered: usize,
        /// UTF-16 length of the text.
        len: usize,
    },
    /// A count ends between the two halves of a surrogate pair.
    #[error("delta count splits a surrogate pair at UTF-16 offset {0}")]
    SplitsSurrogate(usize),
}

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

/// Characters diff-match-patch leaves unescaped: JavaScript's `encodeURI` set plus space
/// (Python: `quote(s, "!~*'();/?:@&=+$,# ")` with `_.-~` always safe).
const URI_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b';')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',')
    .remove(b'#')
    .remove(b' ');

/// Percent-encode as diff-match-patch does (`encodeURI`, spaces kept).
pub fn encode_uri(s: &str) -> String {
    utf8_percent_encode(s, URI_ESCAPE).to_string()
}

/// Strict percent-decoding: every `%` must start a `%XX` escape, and the result must be UTF-8.
pub fn decode_uri(s: &str) -> Result<String, DeltaError> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'%') {
        let at = i + off;
        let ok =
            b.len() >= at + 3 && b[at + 1].is_ascii_hexdigit() && b[at + 2].is_ascii_hexdigit();
        if !ok {
            return Err(DeltaError::BadEscape(s.chars().take(40).collect()));
        }
        i = at + 3;
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| DeltaError::BadUtf8)
}

/// UTF-16 length of a string.
pub fn utf16_len(s: &str) -> usize {
    // ASCII bytes are one unit each; only the rest needs decoding.
    if s.is_ascii() {
        return s.len();
    }
    s.chars().map(char::len_utf16).sum()
}

/// Byte offset reached after `units` UTF-16 units of `s`, starting at byte `from`.
///
/// ASCII runs are skipped a byte at a time without decoding (one unit per byte): this walk is
/// most of the cost of applying a delta to a large text.
fn advance_utf16(s: &str, from: usize, units: usize) -> Result<usize, DeltaError> {
    let bytes = s.as_bytes();
    let mut pos = from;
    let mut left = units;
    while left > 0 {
        // The ASCII run ahead, up to what is still needed.
        let window = &bytes[pos..bytes.len().min(pos + left)];
        // `is_ascii` checks a word at a time; find the exact end only when the run is broken.
        let ascii = if window.is_ascii() {
            window.len()
        } else {
            window
                .iter()
                .position(|b| !b.is_ascii())
                .unwrap_or(window.len())
        };
        pos += ascii;
        left -= ascii;
        if left == 0 {
            break;
        }
        let Some(c) = s[pos..].chars().next() else {
            return Err(DeltaError::DoesNotFit {
                covered: utf16_len(&s[..pos]) + left,
                len: utf16_len(s),
            });
        };
        let u = c.len_utf16();
        if u > left {
            let offset = utf16_len(&s[..pos]) + left;
            return Err(DeltaError::SplitsSurrogate(offset));
        }
        left -= u;
        pos += c.len_utf8();
    }
    Ok(pos)
}

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

fn fold_chance_equalities(old: &str, new: &str, hunks: &mut Vec<Hunk>) {
    let chars = |s: &str, r: Range<usize>| s[r].chars().count();
    let size = |h: &Hunk| chars(old, h.old.clone()).max(chars(new, h.new.clone()));
    loop {
        let mut changed = false;
        let mut k = 0;
        while k + 1 < hunks.len() {
            let gap = &old[hunks[k].old.end..hunks[k + 1].old.start];
            let n = gap.chars().count();
            let hard = gap.chars().any(|c| c == '\n' || c.is_control());
            if !hard && n <= size(&hunks[k]) && n <= size(&hunks[k + 1]) {
                let next = hunks.remove(k + 1);
                hunks[k].old.end = next.old.end;
                hunks[k].new.end = next.new.end;
                changed = true;
            } else {
                k += 1;
            }
        }
        if !changed {
            break;
        }
    }
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
    pub fn to_operation(&self, base: &str) -> Result<crate::op::Operation, DeltaError> {
        let mut op = crate::op::Operation::new();
        let mut pos = 0;
        for d in &self.ops {
            match d {
                DeltaOp::Keep(n) => {
                    let end = advance_utf16(base, pos, *n)?;
                    op.retain(end - pos);
                    pos = end;
                }
                DeltaOp::Delete(n) => {
                    let end = advance_utf16(base, pos, *n)?;
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
                covered: utf16_len(&base[..pos]),
                len: utf16_len(base),
            });
        }
        Ok(op)
    }

    /// The delta of an operation on `base` (which must be the text it applies to).
    pub fn from_operation(op: &crate::op::Operation, base: &str) -> Delta {
        use crate::op::Step;
        let mut ops = Vec::with_capacity(op.steps().len());
        let mut pos = 0;
        for s in op.steps() {
            match s {
                Step::Retain(n) => {
                    ops.push(DeltaOp::Keep(utf16_len(&base[pos..pos + n])));
                    pos += n;
                }
                Step::Delete(n) => {
                    ops.push(DeltaOp::Delete(utf16_len(&base[pos..pos + n])));
                    pos += n;
                }
                Step::Insert(t) => ops.push(DeltaOp::Insert(t.clone())),
            }
        }
        Delta { ops }
    }

    /// True when the delta changes nothing.
    pub fn is_identity(&self) -> bool {
        self.ops.iter().all(|op| match op {
            DeltaOp::Keep(_) => true,
            DeltaOp::Delete(n) => *n == 0,
            DeltaOp::Insert(s) => s.is_empty(),
        })
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

/// CRC-32 (IEEE, as zlib's `crc32`) of a text's UTF-8 bytes (pitfall 8: never `DefaultHasher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checksum(pub u32);

impl Checksum {
    /// The checksum of `text`.
    pub fn of(text: &str) -> Checksum {
        Checksum(crc32fast::hash(text.as_bytes()))
    }
}

/// Normalise line endings to `\n` (pitfall 11): `\r\n` and lone `\r` become `\n`.
pub fn normalize_newlines(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\r') {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
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

    #[test]
    fn prefix_suffix_back_off_to_char_boundaries() {
        // "é" and "è" share their first UTF-8 byte; the trim must not split it.
        assert_eq!(common_prefix_len("aé", "aè"), 1);
        assert_eq!(common_suffix_len("éa", "èa", 3), 1);
        roundtrip("aé", "aè");
        roundtrip("éa", "èa");
    }

    #[test]
    fn checksum_is_zlib_crc32() {
        // zlib.crc32(b"hello") == 907060870
        assert_eq!(Checksum::of("hello"), Checksum(907_060_870));
    }

    #[test]
    fn newlines_normalise() {
        assert_eq!(normalize_newlines("a\r\nb\rc\n"), "a\nb\nc\n");
    }
}
