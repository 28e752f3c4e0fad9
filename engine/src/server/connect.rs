//! `connect`: opening a session, resuming one (with its key), or taking an unused one over;
//! making room when a document holds its maximum of sessions.

use super::*;

impl ServerEngine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_connect(
        &mut self,
        now: Time,
        peer: PeerId,
        protocol: u32,
        doc: String,
        client_id: String,
        seq: u64,
        resume: Option<Resume>,
        token: Option<String>,
    ) {
        if protocol != PROTOCOL_VERSION {
            let m = format!(
                "protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}"
            );
            return self.reject(peer, Some(doc), ErrorCode::UnsupportedProtocol, m);
        }
        if !self.valid_name(&doc) || !self.valid_name(&client_id) {
            let m = format!(
                "document and client names must be 1 to {} bytes without control characters",
                self.config.limits.max_name_bytes
            );
            return self.reject(peer, None, ErrorCode::BadName, m);
        }
        let (subject, rights) = match self.access.check(token.as_deref(), &doc, now.0) {
            Ok(granted) => granted,
            Err(e) => {
                self.stats.unauthorized += 1;
                let m = format!("{e}");
                return self.refuse(peer, doc, seq, ErrorCode::Unauthorized, m);
            }
        };
        let read_only = rights == Rights::Read;
        // Sessions are bound to the token's subject: the same client id under another subject
        // names another session, so a guessed client id gives nothing.
        let shown_id = client_id;
        let client_id = session_id(subject.as_deref(), &shown_id);
        if let Err(m) = self.peer_may_open(peer, &doc) {
            return self.reject(peer, Some(doc), ErrorCode::TooManyDocuments, m);
        }
        let max_clients = self.config.limits.max_clients_per_document;
        let Some(d) = self.docs.get_mut(&doc) else {
            return self.reject(
                peer,
                Some(doc),
                ErrorCode::Internal,
                "document is not loaded".into(),
            );
        };
        // A different client id bound to this doc on this connection is detached first.
        let previous = self
            .peers
            .get(&peer)
            .and_then(|p| p.docs.get(&doc))
            .cloned();
        if let Some(prev) = previous.filter(|p| *p != client_id) {
            if let Some(s) = d.sessions.get_mut(&prev) {
                s.peer = None;
                s.last_active = now;
            }
            // Its cursor goes with it (the others see it gone at the next relay).
            d.presence.remove(&prev);
            // And the connection no longer names it (even if this connect is refused).
            if let Some(p) = self.peers.get_mut(&peer) {
                p.docs.remove(&doc);
                p.read_only.remove(&doc);
            }
        }
        if !d.sessions.contains_key(&client_id) {
            // A new id: a new session, perhaps in place of an idle one. Rate-limited per peer.
            let max = self.config.limits.max_new_sessions_per_minute;
            if let Some(p) = self.peers.get_mut(&peer) {
                if now.0.saturating_sub(p.new_sessions.0 .0) >= 60_000 {
                    p.new_sessions = (now, 0);
                }
                if p.new_sessions.1 >= max {
                    let m = format!(
                        "this connection created {max} sessions within a minute; wait before opening more"
                    );
                    return self.reject(peer, Some(doc), ErrorCode::TooManyClients, m);
                }
                p.new_sessions.1 += 1;
            }
        }
        if let Some(s) = d.sessions.get_mut(&client_id) {
            // Only the holder of the session's key may resume it; a connect without the key
            // may take the id over only while the session was never used (the same client
            // retrying a connect whose reply was lost). Nothing of a refused connect is kept:
            // not even its seq, so a stranger cannot lock the owner out.
            let proven = resume
                .and_then(|r| r.key)
                .zip(s.key)
                .is_some_and(|(theirs, ours)| theirs.matches(&ours));
            if !proven && (resume.is_some() || !s.unused()) {
                self.stats.sessions_refused += 1;
                let m = format!(
                    "client id {shown_id:?} belongs to a session this connect does not hold the key of; start a new session under another id"
                );
                return self.refuse(peer, doc, seq, ErrorCode::SessionTaken, m);
            }
            if seq <= s.last_seq {
                self.stats.stale_skipped += 1;
                return;
            }
            if resume.is_some() {
                s.last_seq = seq;
                let holder = s.peer.replace(peer);
                s.last_active = now;
                self.stats.resumes += 1;
                let msg = ServerMsg::ConnectOk {
                    doc: doc.clone(),
                    seq,
                    resumed: true,
                    text: String::new(),
                    client_version: s.shadow.client_version,
                    server_version: s.shadow.server_version,
                    session_key: None,
                    read_only,
                };
                self.bind(peer, &doc, &client_id, holder, read_only);
                return self.send(peer, msg);
            }
        } else if d.sessions.len() >= max_clients {
            // Make room by forgetting the longest-idle detached session, if there is one.
            let idle = d
                .sessions
                .iter()
                .filter(|(_, s)| s.peer.is_none())
                .min_by_key(|(id, s)| (s.last_active, (*id).clone()))
                .map(|(id, _)| id.clone());
            match idle {
                Some(id) => {
                    d.sessions.remove(&id);
                    self.outputs.push_back(ServerOutput::Persist(PersistRecord {
                        doc: doc.clone(),
                        text: None,
                        version: d.version,
                        sessions: Vec::new(),
                        removed_sessions: vec![id],
                        changes: Vec::new(),
                        changes_needed_after: d.log_base,
                    }));
                }
                None => {
                    let m = format!("document has its maximum of {max_clients} clients");
                    return self.reject(peer, Some(doc), ErrorCode::TooManyClients, m);
                }
            }
        }
        let mut key = [0u8; 16];
        self.keys.fill_bytes(&mut key);
        let key = SessionKey(key);
        let mut session = Session::fresh(&d.master, seq, peer, now, key);
        session.link = d.link_now();
        session.backup_link = d.link_now();
        let record = session.record(&client_id, d.log_end());
        let msg = ServerMsg::ConnectOk {
            doc: doc.clone(),
            seq,
            resumed: false,
            text: String::from(&d.master),
            client_version: 0,
            server_version: 0,
            session_key: Some(key),
            read_only,
        };
        let holder = d
            .sessions
            .insert(client_id.clone(), session)
            .and_then(|old| old.peer);
        self.outputs.push_back(ServerOutput::Persist(PersistRecord {
            doc: doc.clone(),
            text: None,
            version: d.version,
            sessions: vec![record],
            removed_sessions: Vec::new(),
            changes: Vec::new(),
            changes_needed_after: d.log_base,
        }));
        if let Some(p) = self.peers.get_mut(&peer) {
            p.full_texts.charge(d.master.len());
        }
        self.bind(peer, &doc, &client_id, holder, read_only);
        self.send(peer, msg);
    }

    /// `peer` now holds the session; `holder` is the connection that held it before, if any
    /// (the session's own record of it: looking through every connection made each connect
    /// O(connections), 10,000 connects a quadratic 10^8 comparisons).
    pub(super) fn bind(
        &mut self,
        peer: PeerId,
        doc: &str,
        client_id: &str,
        holder: Option<PeerId>,
        read_only: bool,
    ) {
        // Another connection holding this session loses it (the client moved).
        if let Some(p) = holder
            .filter(|h| *h != peer)
            .and_then(|h| self.peers.get_mut(&h))
        {
            if p.docs.get(doc).is_some_and(|c| c == client_id) {
                p.docs.remove(doc);
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.docs.insert(doc.to_string(), client_id.to_string());
            if read_only {
                p.read_only.insert(doc.to_string());
            } else {
                p.read_only.remove(doc);
            }
        }
    }
}

/// The session a client id names under a token's subject (`None`: open access, the id
/// itself). Names hold no control characters, so the separator keeps subjects apart.
fn session_id(subject: Option<&str>, client_id: &str) -> String {
    match subject {
        Some(s) => format!("{s}\u{1f}{client_id}"),
        None => client_id.to_string(),
    }
}
