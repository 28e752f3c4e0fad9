//! Bytes on the simulated wire: what corruption, garbage and splitting do to a frame. Every
//! choice is a function of the frame's bytes, so a recorded fate (`Corrupt`, `Garbage`,
//! `Split`) replays exactly.
//!
//! Damage only makes changes some layer must catch (or that change nothing the frame means, like
//! the case of a percent escape's hex digit): `Corrupt` replaces a byte of an edit's delta or text
//! (the delta codec or the edit's CRC-32); `Mangle` writes a byte that is never valid UTF-8 or
//! cuts the frame short (decoding). A changed digit of a version number would pass every check; the
//! protocol has no frame checksum and relies on the transport for those (see
//! `docs/protocol.md`), so the simulator does not pretend otherwise.

/// FNV-1a: a fixed, dependency-free hash of a frame (determinism, not security).
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What [`mangle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// A byte made 0xFF (never valid UTF-8).
    NotUtf8,
    /// The frame cut short (its newline kept).
    Truncated,
}

impl Damage {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Damage::NotUtf8 => "invalid UTF-8 byte",
            Damage::Truncated => "frame cut short",
        }
    }
}

/// The byte range of the first edit's `delta` or `text` value in a sync frame, if any.
fn edit_value(frame: &[u8]) -> Option<(usize, usize)> {
    let sync = frame.starts_with(br#"{"type":"client_sync""#)
        || frame.starts_with(br#"{"type":"server_sync""#);
    if !sync {
        return None;
    }
    let find = |pat: &[u8]| {
        frame
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| p + pat.len())
    };
    let start = [find(br#""delta":""#), find(br#""text":""#)]
        .into_iter()
        .flatten()
        .min()?;
    let mut i = start;
    while i < frame.len() {
        match frame[i] {
            b'\\' => i += 2,
            b'"' => return (i > start).then_some((start, i)),
            _ => i += 1,
        }
    }
    None
}

/// Whether a frame carries an edit whose bytes [`corrupt`] can damage.
pub(crate) fn has_edit(frame: &[u8]) -> bool {
    edit_value(frame).is_some_and(|(a, b)| (a..b).any(|i| plain(frame, i)))
}

/// A letter or digit that is neither a JSON escape's nor a percent escape's.
fn plain(frame: &[u8], i: usize) -> bool {
    frame[i].is_ascii_alphanumeric()
        && frame[i - 1] != b'\\'
        && frame[i - 1] != b'%'
        && frame[i.saturating_sub(2)] != b'%'
}

/// Damage the first edit of a frame: a letter or digit of its delta or text replaced by
/// another of its kind. The frame still decodes, and the edit's text comes out different (or
/// the delta no longer fits its base), which only the receiver's strict apply and CRC-32 can
/// tell: the checksum path, which repeated damage turns into resets. False (the frame
/// untouched) when the frame has no such edit.
pub(crate) fn corrupt(frame: &mut [u8]) -> bool {
    let Some((a, b)) = edit_value(frame) else {
        return false;
    };
    let spots: Vec<usize> = (a..b).filter(|&i| plain(frame, i)).collect();
    if spots.is_empty() {
        return false;
    }
    let h = hash(frame);
    let at = spots[(h >> 8) as usize % spots.len()];
    let old = frame[at];
    let (base, n) = match old {
        b'0'..=b'9' => (b'0', 10),
        b'a'..=b'z' => (b'a', 26),
        _ => (b'A', 26),
    };
    let shift = 1 + ((h >> 16) % (n - 1) as u64) as u8;
    frame[at] = base + (old - base + shift) % n;
    true
}

/// Damage a frame (newline-terminated, at least 2 bytes) so that decoding fails: a byte made
/// 0xFF (never valid UTF-8), or the frame cut short (its newline kept; never its closing brace,
/// so the JSON is never complete).
pub(crate) fn mangle(frame: &mut Vec<u8>) -> Damage {
    debug_assert!(frame.len() >= 2 && frame.last() == Some(&b'\n'));
    let h = hash(frame);
    let body = frame.len() - 1;
    if (h >> 24) % 2 == 0 {
        frame[(h >> 8) as usize % body] = 0xff;
        Damage::NotUtf8
    } else {
        let keep = 1 + (h >> 8) as usize % (body - 1).max(1);
        frame.truncate(keep.min(body - 1).max(1));
        frame.push(b'\n');
        Damage::Truncated
    }
}

/// A line of garbage to go ahead of `frame`: short printable junk, or one in eight times a line
/// longer than `max_frame_bytes` (the receiver's frame limit).
pub(crate) fn garbage(frame: &[u8], nth: u64, max_frame_bytes: usize) -> Vec<u8> {
    let h = hash(frame) ^ nth.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut g = if h % 8 == 0 {
        vec![b'#'; max_frame_bytes + 1]
    } else {
        const JUNK: &[u8] = br#"{}[]":,ab01 x\"#;
        let n = 1 + (h >> 3) as usize % 64;
        let mut v: Vec<u8> = (0..n)
            .map(|k| JUNK[(h.rotate_left(k as u32 * 7) % JUNK.len() as u64) as usize])
            .collect();
        v[0] = b'!'; // never a blank line (blank lines are keep-alives, not frames)
        v
    };
    g.push(b'\n');
    g
}

/// Where to split a frame of at least 2 bytes: 1..len.
pub(crate) fn split_point(frame: &[u8]) -> usize {
    1 + (hash(frame) % (frame.len() as u64 - 1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsync_engine::{Checksum, ClientMsg, Delta, Edit, ServerMsg};
    use dsync_net::{decode_client, decode_server, encode_client, encode_server};

    fn sync_frame(text: &str) -> Vec<u8> {
        encode_client(&ClientMsg::ClientSync {
            doc: "doc".into(),
            seq: 3,
            server_version: 2,
            edits: vec![Edit::Delta {
                version: 1,
                delta: Delta::diff("hello", text),
                checksum: Checksum::of(text),
            }],
        })
        .into_bytes()
    }

    /// Every corruption of many frames is caught by the edit's strict apply or checksum, or
    /// changes nothing the frame means; every mangled frame fails to decode.
    #[test]
    fn every_corruption_is_caught() {
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..3_000 {
            let text = format!("hel{i}lo wörld {}", "x".repeat(i % 17));
            let mut f = sync_frame(&text);
            assert!(has_edit(&f));
            let mut m = f.clone();
            kinds.insert(format!("{:?}", mangle(&mut m)));
            let bad = String::from_utf8(m).map(|l| decode_client(&l, 1 << 20));
            assert!(!matches!(bad, Ok(Ok(_))), "a mangled frame decoded");
            assert!(corrupt(&mut f));
            let line = String::from_utf8(f).expect("corruption keeps UTF-8");
            let Ok(ClientMsg::ClientSync { edits, .. }) = decode_client(&line, 1 << 20) else {
                continue; // a delta count made unparseable: refused as bad_delta
            };
            let Edit::Delta {
                delta, checksum, ..
            } = &edits[0]
            else {
                panic!("not a delta")
            };
            // Caught, or harmless: a percent escape's hex digit changed case decodes to the
            // same text.
            if let Ok(t) = delta.apply("hello") {
                assert!(
                    Checksum::of(&t) != *checksum || t == text,
                    "undetected: {line}"
                );
            }
        }
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        // A frame without an edit is left alone by `corrupt`.
        let mut ping = encode_server(&ServerMsg::Ping).into_bytes();
        assert!(!has_edit(&ping) && !corrupt(&mut ping));
        assert_eq!(ping, encode_server(&ServerMsg::Ping).into_bytes());
    }

    #[test]
    fn garbage_never_decodes_and_split_points_are_inside() {
        for n in 0..500 {
            let g = garbage(b"{\"type\":\"ping\"}\n", n, 64);
            let line = String::from_utf8_lossy(&g[..g.len() - 1]).to_string();
            assert!(g.len() > 65 || decode_server(&line, 1 << 20).is_err());
            assert!(!line.trim().is_empty());
        }
        let f = b"{\"type\":\"ping\"}\n";
        let p = split_point(f);
        assert!(p >= 1 && p < f.len());
    }
}
