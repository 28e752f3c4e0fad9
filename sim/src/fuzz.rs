//! Fuzzing every decoder a peer or a file can reach, on the stable toolchain: frames
//! (`LineBuffer`, `datagram_frame`), messages (`decode_client`, `decode_server`), deltas
//! (`Delta::parse` and applying what parses) and scenario files (`Scenario::parse`).
//!
//! Each target mutates a corpus of valid inputs (bit flips, bytes and tokens a parser must
//! treat with care, deletions, duplications, splices, truncations) with a seeded generator, so
//! a run is repeatable from its seed; it stops after a number of inputs or of wall seconds.
//! Beyond "never panics", each target checks what a decoder promises: a frame splitter gives
//! what splitting by hand gives, whatever decodes encodes back to the same message, a parsed
//! delta prints back to itself and applies to texts of its length, and a scenario that parses
//! survives its own RON. A panic or a broken promise is written to `--out` as the input that
//! caused it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use dsync_engine::{
    Checksum, ClientMsg, Delta, Edit, ErrorCode, ResetBase, Resume, ServerMsg, SessionKey,
};
use dsync_net::{
    datagram_frame, decode_client, decode_server, encode_client, encode_server, DecodeError,
    LineBuffer,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Scenario;

/// The decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Splitting a byte stream into frames, and datagrams into one.
    Frame,
    /// Client and server messages.
    Message,
    /// Delta texts, and applying them.
    Delta,
    /// Scenario files.
    Scenario,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [
        Target::Frame,
        Target::Message,
        Target::Delta,
        Target::Scenario,
    ];

    /// The target's name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Frame => "frame",
            Target::Message => "message",
            Target::Delta => "delta",
            Target::Scenario => "scenario",
        }
    }
}

/// What a target's run did.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    /// The target.
    pub target: Target,
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs the decoder accepted (the rest it refused, as it should refuse garbage).
    pub accepted: u64,
    /// The first failure: what went wrong, and where its input was written.
    pub failure: Option<(String, PathBuf)>,
}

/// Largest input a target builds (mutations stop growing it here).
const MAX_INPUT: usize = 64 << 10;
/// Largest delta the delta target accepts (and base text it applies to).
const MAX_DELTA: usize = 1 << 20;

/// Run `target` from `seed` until `stop` says so (called with the inputs tried so far).
pub fn run(target: Target, seed: u64, out: &Path, mut stop: impl FnMut(u64) -> bool) -> FuzzReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ target as u64);
    let corpus = corpus(target);
    let mut report = FuzzReport {
        target,
        inputs: 0,
        accepted: 0,
        failure: None,
    };
    // A panic in a target is caught and reported with its input (the panic hook, the
    // caller's, prints its message as usual).
    while !stop(report.inputs) {
        let input = mutate(&mut rng, &corpus);
        report.inputs += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| check(target, &input, &mut rng)));
        let why = match outcome {
            Ok(Ok(true)) => {
                report.accepted += 1;
                continue;
            }
            Ok(Ok(false)) => continue,
            Ok(Err(broken)) => broken,
            Err(panic) => format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        let path = out.join(format!("{}-{seed}-{}.bin", target.name(), report.inputs));
        let _ = std::fs::create_dir_all(out);
        let _ = std::fs::write(&path, &input);
        report.failure = Some((why, path));
        break;
    }
    report
}

/// Try one input: `Ok(accepted)`, or what promise it broke.
fn check(target: Target, input: &[u8], rng: &mut ChaCha8Rng) -> Result<bool, String> {
    match target {
        Target::Frame => check_frames(input, rng),
        Target::Message => check_message(input),
        Target::Delta => check_delta(input, rng),
        Target::Scenario => check_scenario(input),
    }
}

/// The splitter gives what splitting by hand gives, in any chunking; it never holds more than
/// its maximum and one read.
fn check_frames(input: &[u8], rng: &mut ChaCha8Rng) -> Result<bool, String> {
    let max = rng.random_range(1..512usize);
    // By hand: every complete line; over the maximum (counted with its `\r`) refused, blank
    // skipped, not UTF-8 refused.
    let mut want: Vec<Option<Vec<u8>>> = Vec::new();
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    lines.pop(); // the unfinished tail
    for l in lines {
        if l.len() > max {
            want.push(None);
            continue;
        }
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        want.push(std::str::from_utf8(l).ok().map(|_| l.to_vec()));
    }
    let mut buf = LineBuffer::new(max);
    let mut got: Vec<Option<Vec<u8>>> = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(700));
        buf.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = buf.next_frame() {
            got.push(match f {
                Ok(s) => Some(s.into_bytes()),
                Err(DecodeError::NotUtf8 | DecodeError::FrameTooLarge { .. }) => None,
                Err(e) => return Err(format!("the splitter gave {e}")),
            });
        }
        if buf.buffered() > max + 700 {
            return Err(format!(
                "the splitter holds {} bytes with a maximum of {max}",
                buf.buffered()
            ));
        }
    }
    if got != want {
        return Err(format!(
            "the splitter and splitting by hand disagree (maximum {max}): {} frames against {}",
            got.len(),
            want.len()
        ));
    }
    // A datagram is one frame, or refused.
    let _ = datagram_frame(input, max);
    Ok(got.iter().any(Option::is_some))
}

/// What decodes encodes back to the same message.
fn check_message(input: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(input);
    let mut accepted = false;
    if let Ok(m) = decode_client(&text, MAX_DELTA) {
        accepted = true;
        let again = decode_client(&encode_client(&m), MAX_DELTA)
            .map_err(|e| format!("a decoded client message does not decode again: {e}"))?;
        if again != m {
            return Err("a client message changed through encode and decode".into());
        }
    }
    if let Ok(m) = decode_server(&text, MAX_DELTA) {
        accepted = true;
        let again = decode_server(&encode_server(&m), MAX_DELTA)
            .map_err(|e| format!("a decoded server message does not decode again: {e}"))?;
        if again != m {
            return Err("a server message changed through encode and decode".into());
        }
    }
    Ok(accepted)
}

/// A parsed delta prints back to itself, and applies (or is refused) on texts of any length.
fn check_delta(input: &[u8], rng: &mut ChaCha8Rng) -> Result<bool, String> {
    let text = String::from_utf8_lossy(input);
    let Ok(d) = Delta::parse(&text, MAX_DELTA) else {
        return Ok(false);
    };
    let again = Delta::parse(&d.to_string(), MAX_DELTA)
        .map_err(|e| format!("a parsed delta does not parse again: {e}"))?;
    if again != d {
        return Err("a delta changed through printing and parsing".into());
    }
    // The base the delta covers, and one a unit longer or shorter.
    let covered: usize = d
        .ops()
        .iter()
        .map(|op| match op {
            dsync_engine::DeltaOp::Keep(n) | dsync_engine::DeltaOp::Delete(n) => *n,
            dsync_engine::DeltaOp::Insert(_) => 0,
        })
        .sum();
    if covered > MAX_DELTA {
        return Ok(true);
    }
    let alphabet = ['a', 'é', '😀', '\n', ' '];
    for len in [covered, covered.saturating_sub(1), covered + 1] {
        let mut base = String::new();
        let mut units = 0;
        while units < len {
            let c = alphabet[rng.random_range(0..alphabet.len())];
            if units + c.len_utf16() > len {
                base.push('a');
                units += 1;
            } else {
                base.push(c);
                units += c.len_utf16();
            }
        }
        if let Ok(out) = d.apply(&base) {
            match d.to_operation(&base) {
                Ok(op) => {
                    let via = op
                        .apply(&base)
                        .map_err(|e| format!("an operation from a delta does not apply: {e}"))?;
                    if via != out {
                        return Err("a delta and its operation give different texts".into());
                    }
                }
                Err(e) => return Err(format!("a delta applies but has no operation: {e}")),
            }
        }
    }
    Ok(true)
}

/// A scenario that parses survives its own RON.
fn check_scenario(input: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(input);
    let Ok(sc) = Scenario::parse(&text, "fuzz") else {
        return Ok(false);
    };
    let ron = sc.to_ron();
    let again = Scenario::parse(&ron, "fuzz (again)")
        .map_err(|e| format!("a parsed scenario does not parse again from its RON: {e}"))?;
    if again.to_ron() != ron {
        return Err("a scenario changed through its RON".into());
    }
    Ok(true)
}

/// Valid inputs to start from.
fn corpus(target: Target) -> Vec<Vec<u8>> {
    let key = Some(SessionKey([0x3c; 16]));
    let delta = |a: &str, b: &str| Delta::diff(a, b);
    let edits = vec![
        Edit::Delta {
            version: 3,
            delta: delta("hello wörld", "hello, 😀 world\r\n"),
            checksum: Checksum::of("hello, 😀 world\r\n"),
        },
        Edit::Full {
            version: 9,
            text: "a \"quoted\"\ttext\u{1}".into(),
            checksum: Checksum::of("x"),
            base: Some(ResetBase {
                checksum: Checksum(7),
                delta: delta("ab", "a%b"),
            }),
        },
    ];
    let client = [
        ClientMsg::Connect {
            protocol: 1,
            doc: "notes".into(),
            client_id: "c-1".into(),
            token: Some("t".into()),
            seq: 1,
            resume: Some(Resume {
                client_version: 2,
                server_version: 5,
                key,
            }),
            hints: true,
        },
        ClientMsg::ClientSync {
            doc: "notes".into(),
            seq: 2,
            server_version: 5,
            edits: edits.clone(),
        },
        ClientMsg::Presence {
            doc: "notes".into(),
            name: "ada".into(),
            cursor: 4,
            anchor: 1,
        },
        ClientMsg::Close { doc: "d".into() },
        ClientMsg::Ping,
    ];
    let server = [
        ServerMsg::ConnectOk {
            doc: "notes".into(),
            seq: 1,
            resumed: false,
            text: "line\nline".into(),
            client_version: 0,
            server_version: 0,
            session_key: key,
            read_only: true,
        },
        ServerMsg::ServerSync {
            doc: "notes".into(),
            seq: 2,
            client_version: 3,
            edits,
        },
        ServerMsg::Error {
            doc: None,
            code: ErrorCode::SessionTaken,
            message: "m".into(),
            seq: Some(7),
        },
        ServerMsg::Pong,
        ServerMsg::Changed {
            doc: "notes".into(),
        },
        ServerMsg::Presence {
            doc: "notes".into(),
            peers: vec![dsync_engine::PeerPresence {
                id: "c-2".into(),
                user: "ada".into(),
                name: "Ada".into(),
                cursor: 4,
                anchor: 4,
            }],
        },
    ];
    let messages: Vec<Vec<u8>> = client
        .iter()
        .map(encode_client)
        .chain(server.iter().map(encode_server))
        .map(String::into_bytes)
        .collect();
    match target {
        Target::Message => messages,
        Target::Frame => {
            let mut all = messages.concat();
            all.extend_from_slice(b"\n\r\n  \n");
            vec![all, messages.concat(), b"a\r\n\nbb\n".to_vec()]
        }
        Target::Delta => [
            ("", "x"),
            ("abc", "abd"),
            ("hello wörld", "hello, 😀 world"),
            ("a\tb%c", "a b%%c\t"),
            ("😀😀", "😀"),
        ]
        .iter()
        .map(|(a, b)| delta(a, b).to_string().into_bytes())
        .collect(),
        Target::Scenario => SCENARIOS.iter().map(|s| s.as_bytes().to_vec()).collect(),
    }
}

/// Shipped scenarios, built in so the corpus does not depend on where the command runs.
const SCENARIOS: [&str; 4] = [
    include_str!("../../scenarios/partition.ron"),
    include_str!("../../scenarios/server_crash_restart.ron"),
    include_str!("../../scenarios/lossy.ron"),
    include_str!("../../scenarios/unicode.ron"),
];

/// Bytes and tokens parsers must treat with care.
const TOKENS: [&[u8]; 22] = [
    b"\n",
    b"\r",
    b"\t",
    b"\\",
    b"\"",
    b"%",
    b"%0D",
    b"%ZZ",
    b"%F0%9F",
    b"=99999999999999",
    b"-1",
    b"9007199254740992",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b"\xF0\x9F\x98\x80",
    b"\xFF",
    b"null",
    b"{}",
    b"[]",
    b"(",
    b"),",
];

/// One mutated input: a corpus entry with 1 to 8 mutations.
fn mutate(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=8) {
        let at = |rng: &mut ChaCha8Rng, v: &Vec<u8>| rng.random_range(0..=v.len());
        match rng.random_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = TOKENS[rng.random_range(0..TOKENS.len())][0];
            }
            2 => {
                let i = at(rng, &v);
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                v.splice(i..i, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                let n = rng.random_range(1..=(v.len() - i).min(64));
                v.drain(i..i + n);
            }
            4 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                let n = rng.random_range(1..=(v.len() - i).min(256));
                let chunk = v[i..i + n].to_vec();
                let j = at(rng, &v);
                v.splice(j..j, chunk);
            }
            5 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let i = rng.random_range(0..other.len());
                    let n = rng.random_range(1..=(other.len() - i).min(256));
                    let j = at(rng, &v);
                    v.splice(j..j, other[i..i + n].iter().copied());
                }
            }
            _ => {
                let i = at(rng, &v);
                v.truncate(i);
            }
        }
        v.truncate(MAX_INPUT);
    }
    v
}
