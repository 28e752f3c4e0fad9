//! Presence on the client: this client's cursor, sent when it moves and again after every
//! connect, and the other clients' cursors as the server last listed them. Never part of the
//! text or the shadows; forgotten when the connection goes (docs/protocol.md, *Presence*).

use super::*;
use crate::msg::{PeerPresence, MAX_PRESENCE_PEERS};

/// This client's presence and the others'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Presence {
    /// This client's name, caret and selection end (chars), as last set.
    mine: Option<(String, u64, u64)>,
    /// The others, as the last `presence` listed them (at most [`MAX_PRESENCE_PEERS`]).
    others: Vec<PeerPresence>,
}

impl ClientEngine {
    /// Say where this client's caret (`cursor`) and selection end (`anchor`) are, in chars of
    /// [`ClientEngine::text`], and the name to show beside them. Sent at once when connected
    /// and changed, and after every connect; only clients that send presence receive the
    /// others' ([`ClientEngine::others`], [`ClientEvent::Presence`]).
    pub fn set_presence(&mut self, name: &str, cursor: u64, anchor: u64) {
        let chars = self.text.len_chars() as u64;
        let mine = (name.to_string(), cursor.min(chars), anchor.min(chars));
        if self.presence.mine.as_ref() == Some(&mine) {
            return;
        }
        self.presence.mine = Some(mine);
        if self.conn == Conn::Connected {
            self.send_presence();
        }
    }

    /// The other clients' cursors, as the server last listed them (empty while disconnected).
    pub fn others(&self) -> &[PeerPresence] {
        &self.presence.others
    }

    /// Send our presence, if we have one (after a connect, or when it moved).
    pub(super) fn send_presence(&mut self) {
        if let Some((name, cursor, anchor)) = self.presence.mine.clone() {
            self.send(ClientMsg::Presence {
                doc: self.doc.clone(),
                name,
                cursor,
                anchor,
            });
        }
    }

    /// The connection went: the others' cursors are no longer known.
    pub(super) fn presence_lost(&mut self) {
        if !self.presence.others.is_empty() {
            self.presence.others.clear();
            self.outputs
                .push_back(ClientOutput::Event(ClientEvent::Presence));
        }
    }

    /// The server listed the others.
    pub(super) fn on_presence(&mut self, doc: &str, mut peers: Vec<PeerPresence>) {
        if doc != self.doc || self.conn != Conn::Connected {
            self.stats.stale_skipped += 1;
            return;
        }
        peers.truncate(MAX_PRESENCE_PEERS);
        if peers != self.presence.others {
            self.presence.others = peers;
            self.outputs
                .push_back(ClientOutput::Event(ClientEvent::Presence));
        }
    }
}
