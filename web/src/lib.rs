//! `dsync-web`: the browser client. The page (`web/static/app.js`) owns the WebSocket, the
//! timer and the text area; everything else is the same [`ClientNode`] the terminal client,
//! the simulator and the tests run, compiled to WebAssembly and driven through [`WebClient`].
//!
//! Like the node, [`WebClient`] is sans-IO: the page tells it what happened (the socket opened,
//! closed or delivered a message; the timer fired; the user typed) and asks it what to send,
//! when to wake it, what the text now is and what to show as the connection's state. Nothing
//! here reads a clock: time comes in as the page's `performance.now()` in milliseconds.
//!
//! Built by `web/build.sh` into `web/dist/` (the wasm32 target and `wasm-bindgen-cli`);
//! its unit tests run natively under `cargo test`, and `server/tests/browser.rs` drives the built
//! page in headless Chromium against the real server.

use std::collections::VecDeque;

use dsync_engine::diff::{common_prefix_len, common_suffix_len};
use dsync_engine::{ClientEvent, Config, EngineError, ErrorCode, Time};
use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput};
use wasm_bindgen::prelude::wasm_bindgen;

/// Most notices kept for the page to show; older ones are dropped first.
const MAX_NOTICES: usize = 16;

/// Where the connection stands, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection: waiting to (re)connect.
    Offline,
    /// The socket is open; the document is being opened.
    Connecting,
    /// The document is open.
    Connected,
    /// The server refused the token: no point connecting again.
    Refused,
}

/// The browser's client: a [`ClientNode`] plus what the page needs to show.
#[wasm_bindgen]
pub struct WebClient {
    node: ClientNode,
    state: State,
    /// The text changed by something other than the user's typing (a merge, a reset).
    text_changed: bool,
    /// The others' cursors changed (or the text under them did).
    presence_changed: bool,
    /// The server went silent: the page should close the socket (then call `lost`).
    close_asked: bool,
    notices: VecDeque<String>,
    /// Frames to send, in order.
    frames: VecDeque<String>,
}

#[wasm_bindgen]
impl WebClient {
    /// A disconnected client of `doc`, identified as `client_id`, carrying `token` (if any) in
    /// every `connect`.
    #[wasm_bindgen(constructor)]
    pub fn new(client_id: String, doc: String, token: Option<String>) -> WebClient {
        let config = Config::default();
        let node_cfg = ClientNodeConfig::for_engine(&config);
        let mut node = ClientNode::new(config, node_cfg, client_id, doc);
        node.set_token(token.filter(|t| !t.is_empty()));
        WebClient {
            node,
            state: State::Offline,
            text_changed: false,
            presence_changed: false,
            close_asked: false,
            notices: VecDeque::new(),
            frames: VecDeque::new(),
        }
    }

    /// The socket opened: the document is (re)opened.
    pub fn connected(&mut self, now_ms: f64) {
        self.state = State::Connecting;
        self.close_asked = false;
        self.node.connected(at(now_ms));
        self.drain();
    }

    /// The socket closed or failed. Returns the delay before the next attempt (ms), or a
    /// negative number when the client must not try again (the token was refused).
    pub fn lost(&mut self, opened: bool) -> f64 {
        let delay = if opened {
            self.node.lost()
        } else {
            self.node.attempt_failed()
        };
        self.drain();
        if self.state == State::Refused {
            return -1.0;
        }
        self.state = State::Offline;
        delay as f64
    }

    /// One WebSocket message from the server (one frame).
    pub fn receive(&mut self, now_ms: f64, message: &str) {
        self.node.receive_datagram(at(now_ms), message.as_bytes());
        self.drain();
    }

    /// The timer fired.
    pub fn tick(&mut self, now_ms: f64) {
        self.node.handle_timeout(at(now_ms));
        self.drain();
    }

    /// When to call [`WebClient::tick`] next, in the page's milliseconds (`None`: only when
    /// something happens).
    pub fn wake_at(&self) -> Option<f64> {
        self.node.poll_timeout().map(|t| t.0 as f64)
    }

    /// The next frame to send on the socket, if any.
    pub fn next_frame(&mut self) -> Option<String> {
        self.frames.pop_front()
    }

    /// The user's text area now holds `text`: the change from the engine's text is recorded
    /// as an exact edit (the common prefix and suffix kept). An error (a read-only token, a
    /// document over the size limit) leaves the engine's text as it was; the page then puts
    /// [`WebClient::text`] back.
    pub fn edit(&mut self, text: &str) -> Result<(), String> {
        let old = self.node.engine().text().to_string();
        let (at, del, ins) = change(&old, text);
        if del == 0 && ins.is_empty() {
            return Ok(());
        }
        let r = self.node.edit_bytes(at, del, ins).map_err(|e| match e {
            EngineError::ReadOnly => "read only: this link's token grants reading".to_string(),
            e => e.to_string(),
        });
        if let Err(e) = &r {
            self.notice(e.clone());
        }
        // Typing is sent one short sync cycle after the last (the engine's pacing): the page
        // re-arms its timer from `wake_at`.
        self.drain();
        r
    }

    /// The text as the engine holds it.
    pub fn text(&self) -> String {
        self.node.engine().text().to_string()
    }

    /// True once after the text changed by a merge or a reset: the page then shows
    /// [`WebClient::text`], keeping the cursor where it was in the text around it.
    pub fn take_text_changed(&mut self) -> bool {
        std::mem::take(&mut self.text_changed)
    }

    /// The user's caret and selection end moved (UTF-16 offsets in the text area, as the
    /// browser counts): sent to the other clients as presence, under `name`.
    pub fn set_presence(&mut self, name: &str, cursor: u32, anchor: u32) {
        let text = self.node.engine().text().to_string();
        let (c, a) = (
            chars_at_utf16(&text, cursor as usize),
            chars_at_utf16(&text, anchor as usize),
        );
        self.node.set_presence(name, c as u64, a as u64);
        self.drain();
    }

    /// True once after the others' cursors changed (or the text did, which moves them on
    /// the page): the page then shows [`WebClient::others`].
    pub fn take_presence_changed(&mut self) -> bool {
        std::mem::take(&mut self.presence_changed)
    }

    /// The other clients' cursors as JSON: `[{"id", "user", "name", "cursor", "anchor",
    /// "line", "column"}]`, positions in UTF-16 units of [`WebClient::text`] (clamped to it),
    /// line and column 1-based.
    pub fn others(&self) -> String {
        let text = self.node.engine().text().to_string();
        let list: Vec<serde_json::Value> = self
            .node
            .engine()
            .others()
            .iter()
            .map(|p| {
                let (cursor, line, column) = place(&text, p.cursor as usize);
                let (anchor, _, _) = place(&text, p.anchor as usize);
                serde_json::json!({
                    "id": p.id, "user": p.user, "name": p.name,
                    "cursor": cursor, "anchor": anchor, "line": line, "column": column,
                })
            })
            .collect();
        serde_json::Value::Array(list).to_string()
    }

    /// True once after the server went silent: the page closes the socket.
    pub fn take_close_asked(&mut self) -> bool {
        std::mem::take(&mut self.close_asked)
    }

    /// The connection's state: `offline`, `connecting`, `connected`, `read-only` or `refused`.
    pub fn state(&self) -> String {
        match self.state {
            State::Offline => "offline",
            State::Connecting => "connecting",
            State::Connected if self.node.engine().read_only() => "read-only",
            State::Connected => "connected",
            State::Refused => "refused",
        }
        .to_string()
    }

    /// Local changes the server has not acknowledged yet (0: everything typed is stored).
    pub fn unacknowledged(&self) -> usize {
        let e = self.node.engine();
        e.pending().len() + usize::from(!e.is_settled() && e.pending().is_empty())
    }

    /// The oldest notice not yet shown (refusals, dropped typing, bad frames).
    pub fn next_notice(&mut self) -> Option<String> {
        self.notices.pop_front()
    }
}

impl WebClient {
    /// The node, for tests.
    pub fn node(&self) -> &ClientNode {
        &self.node
    }

    fn notice(&mut self, s: String) {
        if self.notices.len() == MAX_NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(s);
    }

    /// Take the node's outputs: frames to the send queue, events to the state.
    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            match o {
                ClientNodeOutput::Transmit(t) => self.frames.push_back(t.line),
                ClientNodeOutput::Answered { .. } => {}
                ClientNodeOutput::BadFrame(e) => self.notice(format!("bad frame skipped: {e}")),
                ClientNodeOutput::Event(ev) => self.event(ev),
            }
        }
    }

    fn event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Connected { .. } => self.state = State::Connected,
            ClientEvent::RemoteChange | ClientEvent::Reset => self.text_changed = true,
            ClientEvent::Presence => self.presence_changed = true,
            ClientEvent::ServerSilent => self.close_asked = true,
            ClientEvent::ServerError { code, message } => {
                if code == ErrorCode::Unauthorized {
                    self.state = State::Refused;
                    self.close_asked = true;
                }
                self.notice(format!("server: {}: {message}", code.as_str()));
            }
            ClientEvent::LocalChangeDropped { reason } => {
                self.text_changed = true;
                self.notice(format!(
                    "typing dropped ({}): the text is the server's again",
                    reason.as_str()
                ));
            }
        }
    }
}

/// The page's clock (`performance.now()`, ms, never negative) as the engine's time.
fn at(now_ms: f64) -> Time {
    Time(if now_ms.is_finite() && now_ms > 0.0 {
        now_ms as u64
    } else {
        0
    })
}

/// The char index of UTF-16 offset `at` in `text` (clamped to its end; an offset inside a
/// surrogate pair counts the char as passed).
pub fn chars_at_utf16(text: &str, at: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.chars().enumerate() {
        if units >= at {
            return i;
        }
        units += c.len_utf16();
    }
    text.chars().count()
}

/// Char index `at` of `text` (clamped) as (UTF-16 offset, line, column), line and column
/// 1-based and counted in chars.
pub fn place(text: &str, at: usize) -> (usize, usize, usize) {
    let (mut units, mut line, mut column) = (0, 1, 1);
    for c in text.chars().take(at) {
        units += c.len_utf16();
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (units, line, column)
}

/// The change that turns `old` into `new`: (byte offset, bytes deleted, text inserted), with
/// the longest common prefix and then the longest common suffix of what is left kept, on char
/// boundaries. Typing, a paste or a deletion is one such change.
pub fn change<'a>(old: &str, new: &'a str) -> (usize, usize, &'a str) {
    let prefix = common_prefix_len(old, new);
    let suffix = common_suffix_len(old, new, old.len().min(new.len()) - prefix);
    (
        prefix,
        old.len() - prefix - suffix,
        &new[prefix..new.len() - suffix],
    )
}

#[cfg(test)]
mod tests {
    use super::{change, chars_at_utf16, place};

    #[test]
    fn browser_offsets_become_chars_and_back() {
        let t = "a😀b\ncd";
        assert_eq!(chars_at_utf16(t, 0), 0);
        assert_eq!(chars_at_utf16(t, 1), 1);
        assert_eq!(chars_at_utf16(t, 3), 2, "after the surrogate pair");
        assert_eq!(chars_at_utf16(t, 99), 6);
        assert_eq!(place(t, 2), (3, 1, 3));
        assert_eq!(place(t, 4), (5, 2, 1));
        assert_eq!(place(t, 99), (7, 2, 3));
    }

    #[test]
    fn change_keeps_the_common_ends() {
        assert_eq!(change("hello", "hello"), (5, 0, ""));
        assert_eq!(change("hello", "help me"), (3, 2, "p me"));
        assert_eq!(change("abc", "abxc"), (2, 0, "x"));
        assert_eq!(change("aaa", "aa"), (2, 1, ""));
        assert_eq!(change("", "é"), (0, 0, "é"));
        assert_eq!(change("héé", "hé"), (3, 2, ""));
        assert_eq!(change("x€y", "x¢y"), (1, 3, "¢"));
    }
}
