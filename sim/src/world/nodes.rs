//! The nodes: starting, crashing and restarting server and clients, connections and their
//! reconnection, timers on each node's clock, draining engine outputs, commits and loads.

use super::*;

impl<'a> Sim<'a> {
    pub(super) fn start_server(&mut self) {
        let mut key_seed = [0u8; 32];
        self.rng_keys.fill_bytes(&mut key_seed);
        let mut s = ServerNode::new(
            self.config,
            self.store.clone(),
            self.max_frame_bytes,
            key_seed,
        );
        s.set_merge(DOC, self.config.merge);
        self.server = Some(s);
    }

    /// The server's engine, when the server is up (read-only: checks and reports).
    pub(super) fn server_engine(&self) -> Option<&ServerEngine> {
        self.server.as_ref().map(ServerNode::engine)
    }

    pub(crate) fn client_id(i: usize, inc: u32) -> String {
        if inc == 0 {
            format!("c{i}")
        } else {
            format!("c{i}.{inc}")
        }
    }

    pub(super) fn start_client(&mut self, i: usize) {
        let inc = self.clients[i].incarnation;
        let node_cfg = ClientNodeConfig {
            max_frame_bytes: self.max_frame_bytes,
            ..ClientNodeConfig::for_engine(&self.config)
        };
        let engine = ClientNode::new(self.config, node_cfg, Self::client_id(i, inc), DOC);
        let conn = self.next_conn;
        self.next_conn += 1;
        let slot = &mut self.clients[i];
        slot.node = Some(engine);
        slot.conn = conn;
        slot.last_versions = (0, 0, 0);
        slot.conn_up = false;
        match self.sc.topology.link {
            LinkModel::Datagram => {
                let now = self.node_now(Node::Client(i));
                if let Some(e) = self.clients[i].node.as_mut() {
                    e.connected(now);
                }
                self.client_out(i);
            }
            LinkModel::Stream => self.reconnect(i),
        }
    }

    /// Stream: open a connection if the server is up (else retry with backoff). Datagram:
    /// send `connect` again.
    pub(super) fn reconnect(&mut self, i: usize) {
        self.clients[i].reconnect_pending = None;
        if self.clients[i].node.is_none() {
            return;
        }
        if self.sc.topology.link == LinkModel::Stream {
            if self.server.is_none() || self.blocked(Node::Client(i), Node::Server) {
                let delay = self.clients[i]
                    .node
                    .as_mut()
                    .map_or(0, ClientNode::attempt_failed);
                return self.schedule_reconnect(i, delay);
            }
            let conn = self.next_conn;
            self.next_conn += 1;
            self.clients[i].conn = conn;
            self.clients[i].conn_up = true;
            self.log_full("conn", || format!("c{i} connected as peer {conn}"));
        }
        let now = self.node_now(Node::Client(i));
        if let Some(e) = self.clients[i].node.as_mut() {
            e.connected(now);
        }
        self.client_out(i);
    }

    /// Try again in `delay` ms (the node's backoff), unless an attempt is already scheduled.
    pub(super) fn schedule_reconnect(&mut self, i: usize, delay: u64) {
        if self.clients[i].reconnect_pending.is_some() || self.clients[i].node.is_none() {
            return;
        }
        self.clients[i].reconnect_gen += 1;
        let gen = self.clients[i].reconnect_gen;
        self.clients[i].reconnect_pending = Some(gen);
        self.schedule(self.now + delay, Ev::Reconnect(i, gen));
    }

    /// Stream: the connection of client `i` broke. `tell_server`: the server has not noticed.
    pub(super) fn conn_lost(&mut self, i: usize, tell_server: bool) {
        if !self.clients[i].conn_up {
            return;
        }
        self.clients[i].conn_up = false;
        let peer = PeerId(self.clients[i].conn);
        if tell_server {
            let now = Time(self.now);
            if let Some(s) = self.server.as_mut() {
                s.closed(now, peer);
            }
            self.server_dirty();
        }
        let delay = self.clients[i].node.as_mut().map_or(0, ClientNode::lost);
        self.client_out(i);
        self.schedule_reconnect(i, delay);
    }

    pub(super) fn crash(&mut self, node: Node) {
        match node {
            Node::Server => {
                let Some(s) = self.server.take() else { return };
                self.server_past.add(s.engine_stats());
                self.fault("crash S (uncommitted state lost)".into());
                self.server_stopped();
            }
            Node::Client(i) => {
                let Some(e) = self.clients[i].node.take() else {
                    return;
                };
                self.fault(format!("crash c{i} (unsent typing lost)"));
                let inc = self.clients[i].incarnation;
                self.clients[i].past.add(e.engine().stats());
                self.clients[i].timer_at = None;
                // Intent: what this incarnation did that never became durable may vanish.
                let durable = self
                    .store
                    .load(DOC)
                    .ok()
                    .flatten()
                    .map(|d| String::from(&d.text))
                    .unwrap_or_default();
                self.users.crashed(i, inc, &durable);
                if self.clients[i].conn_up {
                    self.clients[i].conn_up = false;
                    let peer = PeerId(self.clients[i].conn);
                    let now = Time(self.now);
                    if let Some(s) = self.server.as_mut() {
                        s.closed(now, peer);
                    }
                    self.server_dirty();
                }
            }
        }
    }

    /// The server is gone (crashed, or stopped by a failed commit): its timer and batch with
    /// it; stream connections break.
    pub(super) fn server_stopped(&mut self) {
        self.server_timer_at = None;
        self.commit_pending = false;
        self.check_durable("after the server stopped");
        if self.sc.topology.link == LinkModel::Stream {
            for i in 0..self.clients.len() {
                self.conn_lost(i, false);
            }
        }
    }

    pub(super) fn restart(&mut self, node: Node) {
        match node {
            Node::Server => {
                if self.server.is_some() {
                    return;
                }
                self.fault("restart S".into());
                self.start_server();
            }
            Node::Client(i) => {
                if self.clients[i].node.is_some() {
                    return;
                }
                self.clients[i].incarnation += 1;
                let id = Self::client_id(i, self.clients[i].incarnation);
                self.fault(format!("restart c{i} as {id}"));
                self.start_client(i);
            }
        }
    }

    pub(super) fn node_now(&self, node: Node) -> Time {
        match node {
            Node::Server => Time(self.now),
            Node::Client(i) => {
                let d = self.clients[i].drift_pct;
                Time((self.now as i64 + self.now as i64 * d / 100).max(0) as u64)
            }
        }
    }

    pub(super) fn to_global(&self, node: Node, t: Time) -> u64 {
        match node {
            Node::Server => t.0,
            Node::Client(i) => {
                let d = self.clients[i].drift_pct;
                // Inverse of node_now, rounded up so a timer never fires early.
                let num = t.0 as i128 * 100;
                let den = (100 + d) as i128;
                ((num + den - 1) / den).max(0) as u64
            }
        }
    }

    /// Re-arm a node's timer from its engine's `poll_timeout`.
    pub(super) fn arm(&mut self, node: Node) {
        let next = match node {
            Node::Server => self.server.as_ref().and_then(|s| s.poll_timeout()),
            Node::Client(i) => self.clients[i].node.as_ref().and_then(|e| e.poll_timeout()),
        };
        let at = next.map(|t| self.to_global(node, t).max(self.now));
        let (cur, gen) = match node {
            Node::Server => (&mut self.server_timer_at, &mut self.server_timer_gen),
            Node::Client(i) => {
                let c = &mut self.clients[i];
                (&mut c.timer_at, &mut c.timer_gen)
            }
        };
        if *cur == at {
            return;
        }
        *cur = at;
        *gen += 1;
        let g = *gen;
        if let Some(at) = at {
            self.schedule(at, Ev::Timer(node, g));
        }
    }

    pub(super) fn timer(&mut self, node: Node, gen: u64) {
        let now = self.node_now(node);
        match node {
            Node::Server => {
                if gen != self.server_timer_gen {
                    return;
                }
                self.server_timer_at = None;
                if let Some(s) = self.server.as_mut() {
                    s.handle_timeout(now);
                }
                self.server_dirty();
            }
            Node::Client(i) => {
                if gen != self.clients[i].timer_gen {
                    return;
                }
                self.clients[i].timer_at = None;
                if let Some(e) = self.clients[i].node.as_mut() {
                    e.handle_timeout(now);
                }
                self.client_out(i);
            }
        }
        self.arm(node);
    }

    pub(super) fn client_out(&mut self, i: usize) {
        while let Some(out) = self.clients[i]
            .node
            .as_mut()
            .and_then(ClientNode::poll_output)
        {
            match out {
                ClientNodeOutput::Transmit(t) => self.send(
                    Node::Client(i),
                    Node::Server,
                    Payload::Up(t.msg),
                    t.line.into_bytes(),
                ),
                ClientNodeOutput::Event(ev) => {
                    if ev == ClientEvent::ServerSilent {
                        match self.sc.topology.link {
                            LinkModel::Stream => self.conn_lost(i, true),
                            LinkModel::Datagram => {
                                let delay =
                                    self.clients[i].node.as_mut().map_or(0, ClientNode::lost);
                                self.schedule_reconnect(i, delay);
                            }
                        }
                    }
                    if !matches!(ev, ClientEvent::RemoteChange) {
                        self.log("event", format!("c{i} {ev:?}"));
                    }
                }
                ClientNodeOutput::BadFrame(e) => {
                    self.summary.decode_errors += 1;
                    self.log_full("event", || format!("c{i} skipped a bad frame: {e}"));
                }
                ClientNodeOutput::Answered { .. } => {}
            }
        }
        self.arm(Node::Client(i));
    }

    pub(super) fn client_of_peer(&self, peer: PeerId) -> Option<usize> {
        self.clients.iter().position(|c| {
            c.conn == peer.0
                && c.node.is_some()
                && (c.conn_up || self.sc.topology.link == LinkModel::Datagram)
        })
    }
}
