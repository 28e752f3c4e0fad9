//! The rope held to the flat text: every edit, length, offset conversion and checksum.

use super::crc::{mul, mul_mod_p, shift_for, Crc};
use super::*;
use proptest::prelude::*;

#[test]
fn combined_crc_is_zlib_crc32() {
    let text = "hello, wörld ✓ 𝄞 ".repeat(500);
    let r = Rope::from(text.as_str());
    assert!(r.height() >= 1, "the text spans several leaves");
    assert_eq!(r.checksum(), crc32fast::hash(text.as_bytes()));
    assert_eq!(Rope::new().checksum(), 0);
    assert_eq!(Rope::from("hello").checksum(), 907_060_870);
}

#[test]
fn shift_matches_zlib_combine() {
    // crc(A‖B) from crc(A), crc(B) and |B|.
    let (a, b) = ("The quick brown fox ", "jumps over the lazy dog");
    let ca = Crc {
        crc: crc32fast::hash(a.as_bytes()),
        shift: shift_for(a.len()),
    };
    let cb = Crc {
        crc: crc32fast::hash(b.as_bytes()),
        shift: shift_for(b.len()),
    };
    let ab = format!("{a}{b}");
    assert_eq!(ca.then(cb).crc, crc32fast::hash(ab.as_bytes()));
    assert_eq!(ca.then(cb).shift, shift_for(ab.len()));
}

#[test]
fn a_large_text_is_shallow_and_a_keystroke_copies_one_path() {
    let text = "x".repeat(4 << 20);
    let mut r = Rope::from(text.as_str());
    r.check().unwrap();
    assert!(r.height() <= 4, "height {}", r.height());
    let copy = r.clone();
    r.replace(2_000_000..2_000_000, "y");
    assert_eq!(r.len(), copy.len() + 1);
    assert_eq!(copy, text.as_str(), "the clone is untouched");
    // Only the path to the change was copied: most leaves are still shared.
    let leaves = |r: &Rope| {
        let mut out = Vec::new();
        fn walk(n: &Arc<Node>, out: &mut Vec<*const Node>) {
            match &n.body {
                Body::Leaf(_) => out.push(Arc::as_ptr(n)),
                Body::Inner(c) => c.iter().for_each(|c| walk(c, out)),
            }
        }
        walk(&r.root, &mut out);
        out
    };
    let (a, b) = (leaves(&r), leaves(&copy));
    let shared = a.iter().filter(|p| b.contains(p)).count();
    assert!(
        shared + 2 >= b.len(),
        "{shared} of {} leaves shared",
        b.len()
    );
}

#[test]
fn ropes_of_different_texts_compare_by_bytes() {
    // Equal lengths, chunk boundaries of one inside the other's multi-byte chars.
    let a = Rope::from("é".repeat(3000).as_str());
    let b = Rope::from(format!("a{}a", "é".repeat(2999)).as_str());
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
    assert_ne!(b, a);
    let c = Rope::from(format!("x{}", "é".repeat(3000)).as_str());
    let mut d = c.clone();
    d.replace(0..1, "y");
    d.replace(0..1, "x");
    assert!(c == d && !c.ptr_eq(&d));
}

/// One edit: a position and a length as fractions of the text, and what to insert.
fn edits() -> impl Strategy<Value = Vec<(f64, f64, String)>> {
    let piece = prop_oneof![
        "[a-c]{0,3}",
        "[aé✓𝄞\n]{0,5}",
        "[a-z]{0,3000}",
        Just("x".repeat(5000)),
    ];
    prop::collection::vec((0.0..=1.0f64, 0.0..=0.3f64, piece), 1..40)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

proptest! {
    #[test]
    fn nibble_product_is_the_bitwise_product(a in any::<u32>(), b in any::<u32>()) {
        prop_assert_eq!(mul(a, b), mul_mod_p(a, b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every edit on a rope gives the flat text's result, with every length, offset
    /// conversion and checksum equal to the flat computation, and the invariants held.
    #[test]
    fn rope_equals_flat_text(start in "[a-z✓𝄞 ]{0,6000}", script in edits()) {
        let mut flat = start.clone();
        let mut rope = Rope::from(start.as_str());
        let mut older = Vec::new();
        for (at, len, with) in script {
            older.push((rope.clone(), flat.clone()));
            let a = floor_boundary(&flat, (flat.len() as f64 * at) as usize);
            let b = floor_boundary(&flat, (a + (flat.len() as f64 * len) as usize).min(flat.len()));
            flat.replace_range(a..b, &with);
            rope.replace(a..b, &with);
            rope.check().map_err(TestCaseError::fail)?;
            prop_assert_eq!(rope.len(), flat.len());
            prop_assert_eq!(rope.len_utf16(), utf16_len(&flat));
            prop_assert_eq!(rope.len_chars(), flat.chars().count());
            prop_assert_eq!(rope.checksum(), crc32fast::hash(flat.as_bytes()));
            prop_assert_eq!(String::from(&rope), flat.clone());
            prop_assert!(rope == flat);
            // Offsets around the edit.
            for i in [0, a, a + with.len(), flat.len()] {
                prop_assert_eq!(rope.is_char_boundary(i), flat.is_char_boundary(i));
                if flat.is_char_boundary(i) {
                    let u = utf16_len(&flat[..i]);
                    prop_assert_eq!(rope.byte_to_utf16(i), u);
                    for units in [0, 1, 2, 7, 5000] {
                        prop_assert_eq!(
                            rope.advance_utf16(i, units),
                            crate::text::advance_utf16(&flat, i, units)
                        );
                    }
                    let c = flat[..i].chars().count();
                    prop_assert_eq!(rope.char_to_byte(c), Some(i));
                    let end = floor_boundary(&flat, (i + 3000).min(flat.len()));
                    prop_assert_eq!(rope.slice(i..end), &flat[i..end]);
                }
            }
            prop_assert_eq!(rope.char_to_byte(flat.chars().count() + 1), None);
        }
        // Clones taken along the way never changed, and compare as their texts do.
        for (r, f) in &older {
            prop_assert!(r == f.as_str());
            prop_assert_eq!(r.checksum(), crc32fast::hash(f.as_bytes()));
            prop_assert_eq!(r == &rope, f == &flat);
            prop_assert_eq!(&rope == r, f == &flat);
            // The same texts in other chunkings compare equal to it, and never panic.
            let rebuilt = Rope::from(f.as_str());
            prop_assert!(rebuilt.eq(r));
        }
    }
}
