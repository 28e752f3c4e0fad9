//! `dsync-net`: the wire. This crate alone knows how protocol messages look as bytes: one JSON
//! object per line, a `"type"` tag, deltas as diff-match-patch delta text (UTF-16 counts).
//!
//! - [`encode_client`] / [`encode_server`] turn engine messages into one `\n`-terminated line;
//! - [`decode_client`] / [`decode_server`] parse one line back, returning [`DecodeError`]
//!   values (never panicking) for anything malformed;
//! - [`LineBuffer`] splits a byte stream into frames with a maximum frame size, sans-IO, so the
//!   tokio drivers and the simulator share it.
//!
//! Invariant: every decode error maps to a protocol [`ErrorCode`] ([`DecodeError::code`]), so
//! a driver can always answer a bad frame with a clear `error` message.

use dsync_engine::{Checksum, Delta, DeltaError};
use dsync_engine::{
    ClientMsg, Edit, ErrorCode, PeerPresence, ResetBase, Resume, ServerMsg, SessionKey,
};
use serde::{Deserialize, Serialize};

/// The largest number the protocol carries (2^53 − 1, the largest integer every JSON reader,
/// JavaScript's included, holds exactly). A larger `seq` or version is refused as
/// `bad_message`, never clamped: numbers reach the store as they came.
pub const MAX_WIRE_INT: u64 = (1 << 53) - 1;

/// Most characters of a peer's own text (an unknown type's name, a parser's complaint) that
/// an error message repeats: replies and logs stay small whatever the peer sent.
pub const MAX_ECHO_CHARS: usize = 120;

fn wire_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v > MAX_WIRE_INT {
        return Err(serde::de::Error::custom(format!(
            "number {v} is above the protocol's maximum of 2^53 - 1"
        )));
    }
    Ok(v)
}

fn wire_opt_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        Some(v) if v > MAX_WIRE_INT => Err(serde::de::Error::custom(format!(
            "number {v} is above the protocol's maximum of 2^53 - 1"
        ))),
        v => Ok(v),
    }
}

/// At most [`MAX_ECHO_CHARS`] of `s`, marked when cut.
fn clamp_echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        None => s.to_string(),
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
    }
}

/// Default maximum frame size: what the default limits need (`Limits::frame_bytes`, ~67 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = dsync_engine::Limits::DEFAULT.frame_bytes();

impl From<DeltaError> for DecodeError {
    fn from(e: DeltaError) -> Self {
        DecodeError::BadDelta(e)
    }
}

/// Why a frame could not be decoded. Messages hold their cause (no `source()` chain): they go to
/// peers as text and print once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is longer than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Bytes seen so far (at least `max + 1`).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is not UTF-8.
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    /// The frame is not valid JSON for any message.
    #[error("malformed message at line {line} column {column}: {message}")]
    Json {
        /// serde_json's description.
        message: String,
        /// Line in the frame (1-based).
        line: usize,
        /// Column in the frame (1-based).
        column: usize,
    },
    /// The `type` is not one this side accepts.
    #[error("unknown message type: {0}")]
    UnknownType(String),
    /// An edit has neither or both of `delta` and `text`.
    #[error("edit must have exactly one of \"delta\" and \"text\"")]
    BadEdit,
    /// A delta's text is malformed.
    #[error("bad delta: {0}")]
    BadDelta(DeltaError),
    /// An error code this side does not know.
    #[error("unknown error code {0:?}")]
    UnknownErrorCode(String),
    /// A `connect_ok`'s session key is not 32 hex digits.
    #[error("session_key must be 32 hex digits")]
    BadSessionKey,
}

impl DecodeError {
    /// The protocol error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::BadDelta(DeltaError::TooLarge { .. }) => ErrorCode::TooManyEdits,
            DecodeError::BadDelta(_) => ErrorCode::BadDelta,
            _ => ErrorCode::BadMessage,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireEdit {
    #[serde(deserialize_with = "wire_int")]
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    checksum: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_checksum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_delta: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct WireResume {
    #[serde(deserialize_with = "wire_int")]
    client_version: u64,
    #[serde(deserialize_with = "wire_int")]
    server_version: u64,
    /// The session key, 32 hex digits (optional on the wire; a resume without it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireClient {
    Connect {
        protocol: u32,
        doc: String,
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(deserialize_with = "wire_int")]
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<WireResume>,
        #[serde(default, skip_serializing_if = "is_false")]
        hints: bool,
    },
    ClientSync {
        doc: String,
        #[serde(deserialize_with = "wire_int")]
        seq: u64,
        #[serde(deserialize_with = "wire_int")]
        server_version: u64,
        edits: Vec<WireEdit>,
    },
    Presence {
        doc: String,
        #[serde(default)]
        name: String,
        #[serde(deserialize_with = "wire_int")]
        cursor: u64,
        #[serde(deserialize_with = "wire_int")]
        anchor: u64,
    },
    Close {
        doc: String,
    },
    Ping,
    Pong,
}

#[derive(Serialize, Deserialize)]
struct WirePeer {
    id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(default)]
    name: String,
    #[serde(deserialize_with = "wire_int")]
    cursor: u64,
    #[serde(deserialize_with = "wire_int")]
    anchor: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireServer {
    ConnectOk {
        doc: String,
        #[serde(deserialize_with = "wire_int")]
        seq: u64,
        resumed: bool,
        text: String,
        #[serde(deserialize_with = "wire_int")]
        client_version: u64,
        #[serde(deserialize_with = "wire_int")]
        server_version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_key: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        read_only: bool,
    },
    ServerSync {
        doc: String,
        #[serde(deserialize_with = "wire_int")]
        seq: u64,
        #[serde(deserialize_with = "wire_int")]
        client_version: u64,
        edits: Vec<WireEdit>,
    },
    Ping,
    Pong,
    Changed {
        doc: String,
    },
    Presence {
        doc: String,
        peers: Vec<WirePeer>,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc: Option<String>,
        code: String,
        message: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "wire_opt_int"
        )]
        seq: Option<u64>,
    },
}

fn edit_to_wire(e: &Edit) -> WireEdit {
    match e {
        Edit::Delta {
            version,
            delta,
            checksum,
        } => WireEdit {
            version: *version,
            delta: Some(delta.to_string()),
            text: None,
            checksum: checksum.0,
            base_checksum: None,
            base_delta: None,
        },
        Edit::Full {
            version,
            text,
            checksum,
            base,
        } => WireEdit {
            version: *version,
            delta: None,
            text: Some(text.clone()),
            checksum: checksum.0,
            base_checksum: base.as_ref().map(|b| b.checksum.0),
            base_delta: base.as_ref().map(|b| b.delta.to_string()),
        },
    }
}

fn edits_from_wire(edits: Vec<WireEdit>, max_delta: usize) -> Result<Vec<Edit>, DecodeError> {
    edits
        .into_iter()
        .map(|w| match (w.delta, w.text) {
            (Some(d), None) => Ok(Edit::Delta {
                version: w.version,
                delta: Delta::parse(&d, max_delta)?,
                checksum: Checksum(w.checksum),
            }),
            (None, Some(text)) => Ok(Edit::Full {
                version: w.version,
                text,
                checksum: Checksum(w.checksum),
                base: match (w.base_checksum, w.base_delta) {
                    (Some(c), Some(d)) => Some(ResetBase {
                        checksum: Checksum(c),
                        delta: Delta::parse(&d, max_delta)?,
                    }),
                    (None, None) => None,
                    _ => return Err(DecodeError::BadEdit),
                },
            }),
            _ => Err(DecodeError::BadEdit),
        })
        .collect()
}

/// Optional booleans are left out when false (older peers never see them).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

fn line(json: serde_json::Result<String>) -> String {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no I/O.
    let mut s = json.expect("wire structs always serialise");
    s.push('\n');
    s
}

/// One `\n`-terminated JSON line for a client message.
pub fn encode_client(msg: &ClientMsg) -> String {
    let w = match msg {
        ClientMsg::Connect {
            protocol,
            doc,
            client_id,
            token,
            seq,
            resume,
            hints,
        } => WireClient::Connect {
            protocol: *protocol,
            doc: doc.clone(),
            client_id: client_id.clone(),
            token: token.clone(),
            seq: *seq,
            hints: *hints,
            resume: resume.map(|r| WireResume {
                client_version: r.client_version,
                server_version: r.server_version,
                key: r.key.map(|k| k.to_hex()),
            }),
        },
        ClientMsg::ClientSync {
            doc,
            seq,
            server_version,
            edits,
        } => WireClient::ClientSync {
            doc: doc.clone(),
            seq: *seq,
            server_version: *server_version,
            edits: edits.iter().map(edit_to_wire).collect(),
        },
        ClientMsg::Presence {
            doc,
            name,
            cursor,
            anchor,
        } => WireClient::Presence {
            doc: doc.clone(),
            name: name.clone(),
            cursor: *cursor,
            anchor: *anchor,
        },
        ClientMsg::Close { doc } => WireClient::Close { doc: doc.clone() },
        ClientMsg::Ping => WireClient::Ping,
        ClientMsg::Pong => WireClient::Pong,
    };
    line(serde_json::to_string(&w))
}

/// One `\n`-terminated JSON line for a server message.
pub fn encode_server(msg: &ServerMsg) -> String {
    let w = match msg {
        ServerMsg::ConnectOk {
            doc,
            seq,
            resumed,
            text,
            client_version,
            server_version,
            session_key,
            read_only,
        } => WireServer::ConnectOk {
            doc: doc.clone(),
            seq: *seq,
            resumed: *resumed,
            text: text.clone(),
            client_version: *client_version,
            server_version: *server_version,
            session_key: session_key.map(|k| k.to_hex()),
            read_only: *read_only,
        },
        ServerMsg::ServerSync {
            doc,
            seq,
            client_version,
            edits,
        } => WireServer::ServerSync {
            doc: doc.clone(),
            seq: *seq,
            client_version: *client_version,
            edits: edits.iter().map(edit_to_wire).collect(),
        },
        ServerMsg::Ping => WireServer::Ping,
        ServerMsg::Pong => WireServer::Pong,
        ServerMsg::Changed { doc } => WireServer::Changed { doc: doc.clone() },
        ServerMsg::Presence { doc, peers } => WireServer::Presence {
            doc: doc.clone(),
            peers: peers
                .iter()
                .map(|p| WirePeer {
                    id: p.id.clone(),
                    user: p.user.clone(),
                    name: p.name.clone(),
                    cursor: p.cursor,
                    anchor: p.anchor,
                })
                .collect(),
        },
        ServerMsg::Error {
            doc,
            code,
            message,
            seq,
        } => WireServer::Error {
            doc: doc.clone(),
            code: code.as_str().to_string(),
            message: message.clone(),
            seq: *seq,
        },
    };
    line(serde_json::to_string(&w))
}

fn json_error(e: serde_json::Error) -> DecodeError {
    let message = e.to_string();
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or_default();
        return DecodeError::UnknownType(clamp_echo(name));
    }
    DecodeError::Json {
        message: clamp_echo(&message),
        line: e.line(),
        column: e.column(),
    }
}

/// Parse one client line (without or with its `\n`). `max_delta` bounds each delta's text.
pub fn decode_client(frame: &str, max_delta: usize) -> Result<ClientMsg, DecodeError> {
    let w: WireClient = serde_json::from_str(frame).map_err(json_error)?;
    Ok(match w {
        WireClient::Connect {
            protocol,
            doc,
            client_id,
            token,
            seq,
            resume,
            hints,
        } => ClientMsg::Connect {
            protocol,
            doc,
            client_id,
            token,
            seq,
            hints,
            resume: resume.map(|r| Resume {
                client_version: r.client_version,
                server_version: r.server_version,
                // A malformed key is no key: the resume is refused (`session_taken`).
                key: r.key.as_deref().and_then(SessionKey::from_hex),
            }),
        },
        WireClient::ClientSync {
            doc,
            seq,
            server_version,
            edits,
        } => ClientMsg::ClientSync {
            doc,
            seq,
            server_version,
            edits: edits_from_wire(edits, max_delta)?,
        },
        WireClient::Presence {
            doc,
            name,
            cursor,
            anchor,
        } => ClientMsg::Presence {
            doc,
            name,
            cursor,
            anchor,
        },
        WireClient::Close { doc } => ClientMsg::Close { doc },
        WireClient::Ping => ClientMsg::Ping,
        WireClient::Pong => ClientMsg::Pong,
    })
}

/// Parse one server line.
pub fn decode_server(frame: &str, max_delta: usize) -> Result<ServerMsg, DecodeError> {
    let w: WireServer = serde_json::from_str(frame).map_err(json_error)?;
    Ok(match w {
        WireServer::ConnectOk {
            doc,
            seq,
            resumed,
            text,
            client_version,
            server_version,
            session_key,
            read_only,
        } => ServerMsg::ConnectOk {
            read_only,
            doc,
            seq,
            resumed,
            text,
            client_version,
            server_version,
            session_key: match session_key {
                None => None,
                Some(k) => Some(SessionKey::from_hex(&k).ok_or(DecodeError::BadSessionKey)?),
            },
        },
        WireServer::ServerSync {
            doc,
            seq,
            client_version,
            edits,
        } => ServerMsg::ServerSync {
            doc,
            seq,
            client_version,
            edits: edits_from_wire(edits, max_delta)?,
        },
        WireServer::Ping => ServerMsg::Ping,
        WireServer::Pong => ServerMsg::Pong,
        WireServer::Changed { doc } => ServerMsg::Changed { doc },
        WireServer::Presence { doc, peers } => ServerMsg::Presence {
            doc,
            peers: peers
                .into_iter()
                .map(|p| PeerPresence {
                    id: p.id,
                    user: p.user,
                    name: p.name,
                    cursor: p.cursor,
                    anchor: p.anchor,
                })
                .collect(),
        },
        WireServer::Error {
            doc,
            code,
            message,
            seq,
        } => ServerMsg::Error {
            doc,
            code: ErrorCode::parse(&code)
                .ok_or_else(|| DecodeError::UnknownErrorCode(clamp_echo(&code)))?,
            message,
            seq,
        },
    })
}

/// The frame a datagram holds: all of it (a trailing `\n` allowed), refused when longer than
/// `max_frame_bytes` or not UTF-8. The datagram twin of [`LineBuffer`].
pub fn datagram_frame(bytes: &[u8], max_frame_bytes: usize) -> Result<String, DecodeError> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.len() > max_frame_bytes {
        return Err(DecodeError::FrameTooLarge {
            len: body.len(),
            max: max_frame_bytes,
        });
    }
    String::from_utf8(body.to_vec()).map_err(|_| DecodeError::NotUtf8)
}

/// Splits a byte stream into `\n`-terminated frames, refusing frames over a maximum size.
///
/// An oversized frame yields one [`DecodeError::FrameTooLarge`] and is skipped up to its
/// newline, so the stream stays usable; memory held never exceeds the maximum plus one read.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out: frames are taken by moving this mark,
    /// and the buffer is compacted only when the dead front outweighs the live rest, so many
    /// short frames (or blank lines) in one read cost linear time, not a copy each.
    start: usize,
    max: usize,
    /// Skipping the rest of an oversized frame.
    discarding: bool,
    /// Bytes of the oversized frame seen so far.
    discarded: usize,
    /// Where to resume looking for `\n` in `buf` (absolute index, at least `start`).
    scanned: usize,
}

impl LineBuffer {
    /// A buffer refusing frames longer than `max_frame_bytes` (newline excluded).
    pub fn new(max_frame_bytes: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            max: max_frame_bytes,
            discarding: false,
            discarded: 0,
            scanned: 0,
        }
    }

    /// Bytes held, waiting for a newline.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True while the bytes held (if any) are the start of a frame that is not complete yet,
    /// or the rest of an oversized one being skipped.
    pub fn in_frame(&self) -> bool {
        self.discarding || self.buffered() > 0
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buffered() {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Take `len` bytes (the frame) and the newline after them off the front.
    fn take(&mut self, len: usize) -> Vec<u8> {
        let frame = self.buf[self.start..self.start + len].to_vec();
        self.start += len + 1;
        self.scanned = self.start;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
        frame
    }

    /// The next complete frame (without its `\n`, and without a trailing `\r`), if any.
    pub fn next_frame(&mut self) -> Option<Result<String, DecodeError>> {
        loop {
            let from = self.scanned.max(self.start);
            let nl = self.buf[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + from - self.start);
            match nl {
                Some(i) if self.discarding => {
                    let len = self.discarded + i;
                    self.take(i);
                    self.discarding = false;
                    self.discarded = 0;
                    return Some(Err(DecodeError::FrameTooLarge { len, max: self.max }));
                }
                Some(i) if i > self.max => {
                    self.take(i);
                    return Some(Err(DecodeError::FrameTooLarge {
                        len: i,
                        max: self.max,
                    }));
                }
                Some(i) => {
                    let mut frame = self.take(i);
                    if frame.last() == Some(&b'\r') {
                        frame.pop();
                    }
                    if frame.iter().all(u8::is_ascii_whitespace) {
                        continue; // blank lines are keep-alives, not frames
                    }
                    return Some(String::from_utf8(frame).map_err(|_| DecodeError::NotUtf8));
                }
                None if self.buffered() > self.max => {
                    // No newline within the limit: drop what we hold and skip to the next one.
                    self.discarded += self.buffered();
                    self.buf.clear();
                    self.start = 0;
                    self.scanned = 0;
                    self.discarding = true;
                    return None;
                }
                None => {
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sync_wire_shape() {
        let msg = ClientMsg::ClientSync {
            doc: "d".into(),
            seq: 7,
            server_version: 3,
            edits: vec![Edit::Delta {
                version: 2,
                delta: Delta::diff("a😀b", "a😀c"),
                checksum: Checksum::of("a😀c"),
            }],
        };
        let line = encode_client(&msg);
        assert_eq!(
            line,
            format!(
                "{{\"type\":\"client_sync\",\"doc\":\"d\",\"seq\":7,\"server_version\":3,\"edits\":[{{\"version\":2,\"delta\":\"=3\\t-1\\t+c\",\"checksum\":{}}}]}}\n",
                Checksum::of("a😀c").0
            )
        );
        assert_eq!(decode_client(&line, 1 << 20).unwrap(), msg);
    }

    #[test]
    fn frames_split_and_oversize_is_skipped() {
        let mut b = LineBuffer::new(10);
        b.push(b"{\"a\":1}\r\n\n0123456789ABCDEF");
        assert_eq!(b.next_frame(), Some(Ok("{\"a\":1}".into())));
        assert_eq!(b.next_frame(), None);
        b.push(b"GHIJ\nok\n");
        assert!(matches!(
            b.next_frame(),
            Some(Err(DecodeError::FrameTooLarge { .. }))
        ));
        assert_eq!(b.next_frame(), Some(Ok("ok".into())));
        assert!(b.buffered() == 0);
    }
}
