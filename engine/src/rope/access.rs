//! [`TextRead`] and [`TextEdit`]: what operations and the delta codec need of a text, for
//! flat strings and ropes alike.

use std::borrow::Cow;
use std::ops::Range;

use super::Rope;
use crate::text::{utf16_len, DeltaError};

/// What the engine's operations and codec read of a text, flat (`str`) or a [`Rope`]: the
/// same code serves both, so the rope's answers are held to the flat text's by the same tests.
pub trait TextRead {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True for the empty text.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True when byte `i` is a char boundary (or the end).
    fn is_char_boundary(&self, i: usize) -> bool;
    /// UTF-16 units in the bytes `range` (on char boundaries).
    fn utf16_in(&self, range: Range<usize>) -> usize;
    /// The byte offset `units` UTF-16 units after byte `from`.
    fn advance_utf16(&self, from: usize, units: usize) -> Result<usize, DeltaError>;
    /// The bytes `range` (on char boundaries).
    fn slice(&self, range: Range<usize>) -> Cow<'_, str>;
    /// CRC-32 of the UTF-8 text.
    fn crc32(&self) -> u32;
}

/// A text the engine's operations change in place.
pub trait TextEdit: TextRead {
    /// Replace the bytes `range` (on char boundaries) by `with`.
    fn replace_range(&mut self, range: Range<usize>, with: &str);
}

impl TextRead for str {
    fn len(&self) -> usize {
        str::len(self)
    }
    fn is_char_boundary(&self, i: usize) -> bool {
        str::is_char_boundary(self, i)
    }
    fn utf16_in(&self, range: Range<usize>) -> usize {
        utf16_len(&self[range])
    }
    fn advance_utf16(&self, from: usize, units: usize) -> Result<usize, DeltaError> {
        crate::text::advance_utf16(self, from, units)
    }
    fn slice(&self, range: Range<usize>) -> Cow<'_, str> {
        Cow::Borrowed(&self[range])
    }
    fn crc32(&self) -> u32 {
        crc32fast::hash(self.as_bytes())
    }
}

impl TextRead for String {
    fn len(&self) -> usize {
        str::len(self)
    }
    fn is_char_boundary(&self, i: usize) -> bool {
        str::is_char_boundary(self, i)
    }
    fn utf16_in(&self, range: Range<usize>) -> usize {
        self.as_str().utf16_in(range)
    }
    fn advance_utf16(&self, from: usize, units: usize) -> Result<usize, DeltaError> {
        self.as_str().advance_utf16(from, units)
    }
    fn slice(&self, range: Range<usize>) -> Cow<'_, str> {
        Cow::Borrowed(&self[range])
    }
    fn crc32(&self) -> u32 {
        self.as_str().crc32()
    }
}

impl TextEdit for String {
    fn replace_range(&mut self, range: Range<usize>, with: &str) {
        String::replace_range(self, range, with);
    }
}

impl TextRead for Rope {
    fn len(&self) -> usize {
        Rope::len(self)
    }
    fn is_char_boundary(&self, i: usize) -> bool {
        Rope::is_char_boundary(self, i)
    }
    fn utf16_in(&self, range: Range<usize>) -> usize {
        self.byte_to_utf16(range.end) - self.byte_to_utf16(range.start)
    }
    fn advance_utf16(&self, from: usize, units: usize) -> Result<usize, DeltaError> {
        Rope::advance_utf16(self, from, units)
    }
    fn slice(&self, range: Range<usize>) -> Cow<'_, str> {
        Rope::slice(self, range)
    }
    fn crc32(&self) -> u32 {
        self.checksum()
    }
}

impl TextEdit for Rope {
    fn replace_range(&mut self, range: Range<usize>, with: &str) {
        self.replace(range, with);
    }
}
