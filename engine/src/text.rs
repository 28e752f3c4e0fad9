//! Text units and escapes: UTF-16 lengths and offsets (the wire counts in UTF-16 code units),
//! diff-match-patch's percent-encoding, line-ending normalisation, and the error of reading
//! them. Used by the delta codec (`delta.rs`) and by operations (`op.rs`); depends on neither.

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

/// Characters diff-match-patch leaves unescaped: JavaScript's `encodeURI` set plus space
/// (Python: `quote(s, "!~*'();/?:@&=+$,# ")` with `_.-~` always safe).
pub(crate) const URI_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
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
pub(crate) fn advance_utf16(s: &str, from: usize, units: usize) -> Result<usize, DeltaError> {
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

/// Normalise line endings to `\n` (pitfall 11): `\r\n` and lone `\r` become `\n`.
pub fn normalize_newlines(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\r') {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
}

/// The longest prefix of `s` that fits in `max_bytes` without splitting a char (names and ids
/// are cut this way to fit their limits).
pub(crate) fn prefix_within(s: &str, max_bytes: usize) -> &str {
    let end = s
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= max_bytes)
        .last()
        .unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod tests {

    #[test]
    fn prefixes_are_cut_on_char_boundaries() {
        assert_eq!(prefix_within("abc", 2), "ab");
        assert_eq!(prefix_within("abc", 3), "abc");
        assert_eq!(prefix_within("abc", 9), "abc");
        assert_eq!(prefix_within("aé", 2), "a");
        assert_eq!(prefix_within("aé", 3), "aé");
        assert_eq!(prefix_within("é", 1), "");
        assert_eq!(prefix_within("", 0), "");
    }
    use super::*;

    #[test]
    fn newlines_normalise() {
        assert_eq!(normalize_newlines("a\r\nb\rc\n"), "a\nb\nc\n");
    }
}
