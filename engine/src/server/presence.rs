//! Presence: where each client's cursor and selection are, relayed to the other clients of its
//! document. Ephemeral by design: kept in memory only while the client's connection has the
//! document open (a [`Document`]'s `presence`, keyed by session), never persisted, never part
//! of a shadow or the text, never a reason to load a document. Only connections that send
//! presence receive it, so clients that know nothing of it never see the message.
//!
//! Bounds: one entry per attached session (so at most `max_clients_per_document`), a name of
//! at most [`MAX_PRESENCE_NAME_BYTES`], and at most [`MAX_PRESENCE_PEERS`] others listed per
//! message. Each change sends one message to each other presence-sending connection of the
//! document (the connection's outbox limit bounds what a slow reader holds).

use super::*;
use crate::msg::{PeerPresence, MAX_PRESENCE_NAME_BYTES, MAX_PRESENCE_PEERS};

/// One client's cursor, as it last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Here {
    name: String,
    cursor: u64,
    anchor: u64,
}

impl ServerEngine {
    /// A `presence` from `peer`: kept for its session and relayed if it moved.
    pub(super) fn on_presence(
        &mut self,
        peer: PeerId,
        doc: String,
        name: String,
        cursor: u64,
        anchor: u64,
    ) {
        let Some(session) = self
            .peers
            .get(&peer)
            .and_then(|p| p.docs.get(&doc))
            .cloned()
        else {
            let m = "presence for a document this connection has not opened".into();
            return self.reject(peer, Some(doc), ErrorCode::UnknownSession, m);
        };
        let Some(d) = self.docs.get_mut(&doc) else {
            return;
        };
        // Cut in place: the name is ours already, no second copy.
        let mut name = name;
        name.truncate(crate::text::prefix_within(&name, MAX_PRESENCE_NAME_BYTES).len());
        let here = Here {
            name,
            cursor,
            anchor,
        };
        if d.presence.get(&session) == Some(&here) {
            return;
        }
        d.presence.insert(session, here);
        self.relay_presence(&doc);
    }

    /// `session`'s connection let go of `doc`: its cursor leaves the others' views.
    pub(super) fn presence_gone(&mut self, doc: &str, session: &str) {
        let had = self
            .docs
            .get_mut(doc)
            .is_some_and(|d| d.presence.remove(session).is_some());
        if had {
            self.relay_presence(doc);
        }
    }

    /// Tell every presence-sending connection of `doc` where the others are.
    fn relay_presence(&mut self, doc: &str) {
        let Some(d) = self.docs.get(doc) else {
            return;
        };
        for (to_session, _) in d.presence.iter() {
            let Some(to) = d.sessions.get(to_session).and_then(|s| s.peer) else {
                continue;
            };
            let peers = d
                .presence
                .iter()
                .filter(|(s, _)| *s != to_session)
                .take(MAX_PRESENCE_PEERS)
                .map(|(s, h)| {
                    // Sessions are named `subject \x1f client id` under access control.
                    let (user, id) = s.split_once('\x1f').unwrap_or(("", s));
                    PeerPresence {
                        id: id.to_string(),
                        user: user.to_string(),
                        name: h.name.clone(),
                        cursor: h.cursor,
                        anchor: h.anchor,
                    }
                })
                .collect();
            self.outputs.push_back(ServerOutput::Send {
                to,
                msg: ServerMsg::Presence {
                    doc: doc.to_string(),
                    peers,
                },
            });
        }
    }
}
