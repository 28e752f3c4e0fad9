//! The protocol's checksum: CRC-32 of a text's UTF-8 bytes.

/// CRC-32 (IEEE, as zlib's `crc32`) of a text's UTF-8 bytes (pitfall 8: never `DefaultHasher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checksum(pub u32);

impl Checksum {
    /// The checksum of `text` (flat or a [`crate::Rope`], whose CRC is combined from its
    /// chunks').
    pub fn of<T: crate::rope::TextRead + ?Sized>(text: &T) -> Checksum {
        Checksum(text.crc32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_zlib_crc32() {
        // zlib.crc32(b"hello") == 907060870
        assert_eq!(Checksum::of("hello"), Checksum(907_060_870));
    }
}
