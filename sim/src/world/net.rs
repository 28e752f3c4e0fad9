//! The network: link faults, partitions, the fate of each message, flights in the air,
//! delivery, stalled messages released at a heal.

use super::*;

impl Payload {
    pub(super) fn label(&self) -> String {
        let edits = |e: &[Edit]| -> String {
            e.iter()
                .map(|e| match e {
                    Edit::Delta { version, delta, .. } => {
                        format!("v{version}:{}", delta.ops().len())
                    }
                    Edit::Full { version, text, .. } => format!("v{version}:full{}", digest(text)),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Payload::Up(ClientMsg::Connect { seq, resume, .. }) => {
                format!(
                    "connect seq={seq}{}",
                    if resume.is_some() { " resume" } else { "" }
                )
            }
            Payload::Up(ClientMsg::ClientSync {
                seq,
                server_version,
                edits: e,
                ..
            }) => {
                format!("client_sync seq={seq} m={server_version} [{}]", edits(e))
            }
            Payload::Up(m) => format!("{m:?}").to_lowercase(),
            Payload::Down(ServerMsg::ConnectOk {
                seq, resumed, text, ..
            }) => {
                format!(
                    "connect_ok seq={seq} resumed={resumed} text={}",
                    digest(text)
                )
            }
            Payload::Down(ServerMsg::ServerSync {
                seq,
                client_version,
                edits: e,
                ..
            }) => {
                format!("server_sync seq={seq} n={client_version} [{}]", edits(e))
            }
            Payload::Down(ServerMsg::Error { code, .. }) => format!("error {}", code.as_str()),
            Payload::Down(m) => format!("{m:?}").to_lowercase(),
        }
    }

    /// Does this message still change state (edits, connects, errors), unlike an empty poll and
    /// its empty reply?
    pub(super) fn substantive(&self) -> bool {
        match self {
            Payload::Up(ClientMsg::ClientSync { edits, .. }) => !edits.is_empty(),
            Payload::Down(ServerMsg::ServerSync { edits, .. }) => !edits.is_empty(),
            Payload::Up(ClientMsg::Ping | ClientMsg::Pong)
            | Payload::Down(ServerMsg::Ping | ServerMsg::Pong) => false,
            _ => true,
        }
    }
}

/// The faults of the link `from` → `to` in `sc`: the last override for that client and
/// direction, else the network's defaults.
pub(crate) fn link_faults(sc: &Scenario, from: Node, to: Node) -> &LinkFaults {
    let (client, dir) = match (from, to) {
        (Node::Client(c), _) => (c, Direction::Up),
        (_, Node::Client(c)) => (c, Direction::Down),
        _ => return &sc.network,
    };
    sc.links
        .iter()
        .rev()
        .find(|l| l.client == client && (l.direction == dir || l.direction == Direction::Both))
        .map_or(&sc.network, |l| &l.faults)
}

/// Whether a partition in force, (id, one side, other side, one way), blocks `from` → `to`.
pub(crate) fn blocked(
    partitions: &[(u64, Vec<Node>, Vec<Node>, bool)],
    from: Node,
    to: Node,
) -> bool {
    partitions.iter().any(|(_, a, b, one_way)| {
        (a.contains(&from) && b.contains(&to)) || (!one_way && b.contains(&from) && a.contains(&to))
    })
}

/// The fate of one frame on a link with faults `f` (`stream`: the stream model), drawn from
/// the network stream (latencies) and the fault stream (decisions); and whether it was held
/// back to reorder it. The simulator and the real run's proxy draw every fate here.
pub(crate) fn draw(
    f: &LinkFaults,
    stream: bool,
    rng_net: &mut ChaCha8Rng,
    rng_fault: &mut ChaCha8Rng,
    frame: &[u8],
) -> (Fate, bool) {
    let (lo, hi) = f.latency_ms;
    let lat = rng_net.random_range(lo..=hi);
    let r = rng_fault;
    if f.drop > 0.0 && r.random_bool(f.drop) {
        return (Fate::Drop, false);
    }
    if f.corrupt > 0.0 && r.random_bool(f.corrupt) {
        if wire::has_edit(frame) && r.random_bool(0.75) {
            return (Fate::Corrupt(lat), false);
        }
        return (Fate::Mangle(lat), false);
    }
    if f.garbage > 0.0 && r.random_bool(f.garbage) {
        return (Fate::Garbage(lat), false);
    }
    if stream {
        if f.split > 0.0 && r.random_bool(f.split) {
            let lat2 = rng_net.random_range(lo..=hi);
            return (Fate::Split(lat, lat2), false);
        }
        return (Fate::Delay(lat), false);
    }
    if f.duplicate > 0.0 && r.random_bool(f.duplicate) {
        let lat2 = rng_net.random_range(lo..=hi);
        return (Fate::Duplicate(lat, lat2), false);
    }
    if f.reorder > 0.0 && r.random_bool(f.reorder) {
        return (Fate::Delay(lat + f.reorder_delay_ms), true);
    }
    (Fate::Delay(lat), false)
}

impl<'a> Sim<'a> {
    pub(super) fn link_faults(&self, from: Node, to: Node) -> &LinkFaults {
        link_faults(self.sc, from, to)
    }

    pub(super) fn blocked(&self, from: Node, to: Node) -> bool {
        blocked(&self.partitions, from, to)
    }

    pub(super) fn draw_fate(&mut self, from: Node, to: Node, frame: &[u8]) -> Fate {
        let f = self.link_faults(from, to).clone();
        if !self.random || self.stopped_at.is_some() {
            return Fate::Delay(f.latency_ms.0);
        }
        let stream = self.sc.topology.link == LinkModel::Stream;
        let (fate, reordered) = draw(&f, stream, &mut self.rng_net, &mut self.rng_fault, frame);
        if reordered {
            self.summary.reordered += 1;
        }
        fate
    }

    /// Send a frame (`bytes`, the encoded `payload`) from one node to another.
    pub(super) fn send(&mut self, from: Node, to: Node, payload: Payload, bytes: Vec<u8>) {
        self.summary.sent += 1;
        let nth = {
            let c = self.link_counts.entry((from, to)).or_insert(0);
            *c += 1;
            *c
        };
        let explicit = self.fates.get(&(from, to, nth)).copied();
        let fate = match explicit {
            Some(f) => f,
            None => self.draw_fate(from, to, &bytes),
        };
        if self.opts.record {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: Event::Net {
                    from,
                    to,
                    nth,
                    fate,
                },
            });
        }
        let label = payload.label();
        let conn = match (from, to) {
            (Node::Client(i), _) | (_, Node::Client(i)) => self.clients[i].conn,
            _ => 0,
        };
        let stream = self.sc.topology.link == LinkModel::Stream;
        let link = format!("{}->{}#{nth}", node_name(from), node_name(to));
        let chart_idx = self.chart_msg(from, to, label.clone());
        // A datagram sent into a partition is lost; a stream stalls (at delivery time).
        if !stream && self.blocked(from, to) {
            self.summary.dropped += 1;
            self.set_chart(chart_idx, None, "blocked");
            self.log_full("drop", || format!("{link:<12} blocked {label}"));
            return;
        }
        let mut bytes = bytes;
        match fate {
            Fate::Drop => {
                self.summary.dropped += 1;
                self.set_chart(chart_idx, None, "dropped");
                self.log_full("drop", || format!("{link:<12} {label}"));
                if stream {
                    self.summary.conn_resets += 1;
                    let i = match (from, to) {
                        (Node::Client(i), _) | (_, Node::Client(i)) => i,
                        _ => return,
                    };
                    self.log("fault", format!("connection of c{i} reset"));
                    self.conn_lost(i, true);
                }
            }
            Fate::Delay(lat) => {
                self.log_full("send", || format!("{link:<12} {label} (+{lat}ms)"));
                self.launch(from, to, conn, bytes, vec![(payload, chart_idx)], lat);
            }
            Fate::Duplicate(l1, l2) => {
                self.summary.duplicated += 1;
                self.log_full("dup", || format!("{link:<12} {label} (+{l1}ms, +{l2}ms)"));
                let copy = self.chart_msg(from, to, format!("{label} (copy)"));
                self.set_chart(copy, None, "duplicate");
                let copy_msgs = vec![(payload.clone(), copy)];
                self.launch(
                    from,
                    to,
                    conn,
                    bytes.clone(),
                    vec![(payload, chart_idx)],
                    l1,
                );
                self.launch(from, to, conn, bytes, copy_msgs, l2);
            }
            Fate::Corrupt(lat) => {
                if wire::corrupt(&mut bytes) {
                    self.summary.corrupted += 1;
                    self.set_chart(chart_idx, None, "corrupted");
                    self.log_full("corrupt", || {
                        format!("{link:<12} {label} (an edit's byte changed, +{lat}ms)")
                    });
                } else {
                    self.log_full("send", || {
                        format!("{link:<12} {label} (no edit to corrupt, +{lat}ms)")
                    });
                }
                self.launch(from, to, conn, bytes, vec![(payload, chart_idx)], lat);
            }
            Fate::Mangle(lat) => {
                let damage = wire::mangle(&mut bytes);
                self.summary.corrupted += 1;
                self.set_chart(chart_idx, None, "corrupted");
                self.log_full("corrupt", || {
                    format!("{link:<12} {label} ({}, +{lat}ms)", damage.name())
                });
                self.launch(from, to, conn, bytes, vec![(payload, chart_idx)], lat);
            }
            Fate::Garbage(lat) => {
                let mut junk = wire::garbage(&bytes, nth, self.max_frame_bytes);
                self.summary.garbage += 1;
                self.log_full("garbage", || {
                    format!(
                        "{link:<12} {} junk bytes, then {label} (+{lat}ms)",
                        junk.len()
                    )
                });
                if stream {
                    junk.extend_from_slice(&bytes);
                    self.launch(from, to, conn, junk, vec![(payload, chart_idx)], lat);
                } else {
                    self.launch(from, to, conn, junk, Vec::new(), lat);
                    self.launch(from, to, conn, bytes, vec![(payload, chart_idx)], lat);
                }
            }
            Fate::Split(l1, l2) => {
                let tail = bytes.split_off(wire::split_point(&bytes));
                self.summary.split_frames += 1;
                self.log_full("split", || {
                    format!(
                        "{link:<12} {label} in {}+{} bytes (+{l1}ms, +{l2}ms)",
                        bytes.len(),
                        tail.len()
                    )
                });
                self.launch(from, to, conn, bytes, Vec::new(), l1);
                self.launch(from, to, conn, tail, vec![(payload, chart_idx)], l2);
            }
        }
    }

    pub(super) fn chart_msg(&mut self, from: Node, to: Node, label: String) -> Option<usize> {
        let now = self.now;
        let c = self.chart.as_mut()?;
        if c.messages.len() >= CHART_MAX_MESSAGES {
            return None;
        }
        c.messages.push(ChartMsg {
            from,
            to,
            sent_ms: now,
            delivered_ms: None,
            fate: "sent",
            label,
        });
        Some(c.messages.len() - 1)
    }

    pub(super) fn set_chart(
        &mut self,
        idx: Option<usize>,
        delivered: Option<u64>,
        fate: &'static str,
    ) {
        if let (Some(c), Some(i)) = (self.chart.as_mut(), idx) {
            let m = &mut c.messages[i];
            if delivered.is_some() {
                m.delivered_ms = delivered;
            }
            if m.fate == "sent" || fate != "sent" {
                m.fate = fate;
            }
        }
    }

    /// Put bytes in the air. On a stream, bytes that would arrive with the link's last flight
    /// still in the air ride in it (coalesced, as a TCP segment would carry them).
    pub(super) fn launch(
        &mut self,
        from: Node,
        to: Node,
        conn: u64,
        bytes: Vec<u8>,
        msgs: Vec<(Payload, Option<usize>)>,
        lat: u64,
    ) {
        let mut at = self.now + lat;
        if self.sc.topology.link == LinkModel::Stream {
            let last = self.stream_last.entry((from, to)).or_insert(0);
            at = at.max(*last);
            *last = at;
            if let Some(&(id, serial, tail_at)) = self.stream_tail.get(&(from, to)) {
                let open = self
                    .flights
                    .get(id)
                    .and_then(Option::as_ref)
                    .filter(|f| f.serial == serial && f.conn == conn && tail_at == at);
                if open.is_some() {
                    self.summary.coalesced += 1;
                    let added = msgs.iter().filter(|(p, _)| p.substantive()).count();
                    self.in_flight_substantive += added;
                    if let Some(f) = self.flights[id].as_mut() {
                        f.bytes.extend_from_slice(&bytes);
                        f.msgs.extend(msgs);
                    }
                    return;
                }
            }
        }
        self.next_serial += 1;
        let flight = Flight {
            from,
            to,
            conn,
            bytes,
            msgs,
            serial: self.next_serial,
        };
        let serial = flight.serial;
        let id = self.park(flight);
        if self.sc.topology.link == LinkModel::Stream {
            self.stream_tail.insert((from, to), (id, serial, at));
        }
        self.schedule(at, Ev::Deliver(id));
    }

    pub(super) fn take_flight(&mut self, id: usize) -> Option<Flight> {
        let f = self.flights.get_mut(id)?.take()?;
        self.free_flights.push(id);
        self.in_flight -= 1;
        self.in_flight_substantive -= f.substantive();
        Some(f)
    }

    pub(super) fn deliver(&mut self, id: usize) {
        let Some(f) = self.take_flight(id) else {
            return;
        };
        let stream = self.sc.topology.link == LinkModel::Stream;
        let client = match (f.from, f.to) {
            (Node::Client(i), _) | (_, Node::Client(i)) => i,
            _ => return,
        };
        let link = (f.from, f.to);
        // Stream links: a message of a closed connection never arrives; a partition stalls.
        if stream {
            if f.conn != self.clients[client].conn || !self.clients[client].conn_up {
                self.lost(&f, "dropped");
                return;
            }
            let backlog = self.stalled.get(&link).is_some_and(|q| !q.is_empty());
            if self.blocked(f.from, f.to) || backlog {
                self.chart_all(&f, None, "stalled");
                let id = self.park(f);
                self.stalled.entry(link).or_default().push_back(id);
                return;
            }
        } else if self.blocked(f.from, f.to) {
            self.lost(&f, "blocked");
            return;
        } else if f.to == Node::Client(client) && f.conn != self.clients[client].conn {
            // A datagram to a client's previous life: a restarted client has a new address, so
            // what the server sent the old one never reaches it (handing it over let a restarted
            // client take its previous life's `connect_ok`, seq 1 as its own, with another
            // session's key: swarm seed 321557, scenarios/regressions/reply-to-previous-life-min.ron).
            self.lost(&f, "dropped");
            return;
        }
        self.hand_over(f);
    }

    /// Put a message in the flight table (the twin of `take_flight`); a stalled one stays
    /// there, out of the event queue, until its link heals.
    pub(super) fn park(&mut self, f: Flight) -> usize {
        self.in_flight += 1;
        self.in_flight_substantive += f.substantive();
        match self.free_flights.pop() {
            Some(id) => {
                self.flights[id] = Some(f);
                id
            }
            None => {
                self.flights.push(Some(f));
                self.flights.len() - 1
            }
        }
    }

    /// A flight that will never arrive: its messages count as dropped.
    fn lost(&mut self, f: &Flight, why: &'static str) {
        self.summary.dropped += f.msgs.len() as u64;
        self.chart_all(f, None, why);
    }

    fn chart_all(&mut self, f: &Flight, delivered: Option<u64>, fate: &'static str) {
        for (_, c) in &f.msgs {
            self.set_chart(*c, delivered, fate);
        }
    }

    /// The bytes reach their node, which splits, decodes and handles them.
    pub(super) fn hand_over(&mut self, f: Flight) {
        let receiver_down = match f.to {
            Node::Server => self.server.is_none(),
            Node::Client(i) => self.clients[i].node.is_none(),
        };
        if receiver_down {
            self.lost(&f, "dropped");
            return;
        }
        self.summary.delivered += f.msgs.len() as u64;
        self.chart_all(&f, Some(self.now), "sent");
        if self.opts.trace == TraceLevel::Full {
            let link = format!("{}->{}", node_name(f.from), node_name(f.to));
            let labels: Vec<String> = f.msgs.iter().map(|(p, _)| p.label()).collect();
            let what = if labels.is_empty() {
                format!("{} bytes (no frame ends here)", f.bytes.len())
            } else {
                labels.join(" + ")
            };
            self.log("deliver", format!("{link:<12} {what}"));
        }
        let stream = self.sc.topology.link == LinkModel::Stream;
        match f.to {
            Node::Server => {
                // The sender's address is the one it was sent from: a datagram from a client's
                // previous life comes from that life's peer, never from the restarted client's
                // (crediting it to the new one made the server skip the new client's requests
                // as stale for a minute: scenarios/regressions/old-datagram-after-restart-min.ron).
                let peer = PeerId(f.conn);
                let now = Time(self.now);
                if let Some(s) = self.server.as_mut() {
                    let before = s.stats().decode_errors;
                    if stream {
                        s.receive_bytes(now, peer, &f.bytes);
                    } else {
                        s.receive_datagram(now, peer, &f.bytes);
                    }
                    self.summary.decode_errors += s.stats().decode_errors - before;
                }
                self.server_dirty();
            }
            Node::Client(i) => {
                let now = self.node_now(Node::Client(i));
                if let Some(e) = self.clients[i].node.as_mut() {
                    if stream {
                        e.receive_bytes(now, &f.bytes);
                    } else {
                        e.receive_datagram(now, &f.bytes);
                    }
                }
                self.client_out(i);
            }
        }
    }

    pub(super) fn heal(&mut self) {
        self.partitions.clear();
        self.release_stalled();
    }

    /// Lift one partition (its `for_ms` ran out).
    pub(super) fn unpartition(&mut self, id: u64) {
        let Some(i) = self.partitions.iter().position(|p| p.0 == id) else {
            return;
        };
        let (_, a, b, one_way) = self.partitions.remove(i);
        self.fault(format!(
            "heal partition [{}] | [{}] {}",
            node_list(&a),
            node_list(&b),
            if one_way { "one-way" } else { "symmetric" }
        ));
        self.release_stalled();
    }

    /// Send on what stalled on links that no partition blocks any more.
    pub(super) fn release_stalled(&mut self) {
        let links: Vec<(Node, Node)> = self
            .stalled
            .keys()
            .copied()
            .filter(|&(from, to)| !self.blocked(from, to))
            .collect();
        for link in links {
            let ids: Vec<usize> = self
                .stalled
                .remove(&link)
                .map(Vec::from)
                .unwrap_or_default();
            for id in ids {
                if let Some(f) = self.take_flight(id) {
                    // Resent in order after the heal, each with the link's minimum latency.
                    let lat = self.link_faults(f.from, f.to).latency_ms.0;
                    self.launch(f.from, f.to, f.conn, f.bytes, f.msgs, lat);
                }
            }
        }
    }

    // ----- timeline and workloads -------------------------------------------------------
}
