//! The sync step: one `client_sync` against one session.

use super::*;

/// Guaranteed-delivery DS, server side, for one `client_sync` (see `docs/protocol.md`).
#[allow(clippy::too_many_arguments)]
pub(super) fn sync_session(
    config: &Config,
    d: &mut Document,
    doc: &str,
    client_id: &str,
    now: Time,
    seq: u64,
    m_ack: u64,
    edits: Vec<Edit>,
    stats: &mut Stats,
) -> SyncOutcome {
    let Document {
        master,
        version,
        merge: strategy,
        sessions,
        log,
        log_base,
    } = d;
    let Some(s) = sessions.get_mut(client_id) else {
        return SyncOutcome::Ignore;
    };
    if seq <= s.last_seq {
        stats.stale_skipped += 1;
        return SyncOutcome::Ignore;
    }
    s.last_seq = seq;
    s.last_active = now;
    let acknowledged_reset = s.awaiting_reset.is_some();
    if let Some(want) = s.awaiting_reset {
        if m_ack != want {
            // The reset was lost or this request crossed it: send it again.
            return SyncOutcome::Reset { error: None };
        }
        s.awaiting_reset = None;
        s.reset_from = None;
    }
    // The store must forget an acknowledged reset, or a reload would send it again.
    let mut dirty = acknowledged_reset;
    // Step 1: a lost reply shows as m_ack == backup's m. Restore before anything else.
    if m_ack == s.shadow.server_version {
    } else if m_ack == s.backup.server_version {
        s.shadow = s.backup.clone();
        s.link = s.backup_link.clone();
        s.pending.clear();
        stats.rollbacks += 1;
        dirty = true;
    } else {
        return SyncOutcome::Reset { error: None };
    }
    // Step 2: server edits tagged v < m_ack are acknowledged.
    s.pending.retain(|e| e.version() >= m_ack);
    let mut master_changed = false;
    let mut new_changes: Vec<(u64, Operation)> = Vec::new();
    let mut refused: Option<(ErrorCode, String)> = None;
    let limits = config.limits;
    // The exact change from this client's shadow to the master, kept up to date below.
    let mut ours = to_master(master, log, *log_base, &s.shadow.text, &s.link, stats);
    for edit in edits {
        let v = edit.version();
        if v < s.shadow.client_version {
            stats.duplicates_skipped += 1;
            continue;
        }
        if v > s.shadow.client_version {
            return SyncOutcome::Reset { error: None };
        }
        let (theirs, checksum) = match edit {
            Edit::Delta {
                delta, checksum, ..
            } => match delta.to_operation(&s.shadow.text) {
                Ok(op) => (op, checksum),
                Err(e) => {
                    tracing::warn!(doc, client = client_id, error = %e, "delta does not fit shadow");
                    if s.bad_streak == 0 {
                        // Maybe damaged in transit: refuse this edit, answer for the rest.
                        s.bad_streak = 1;
                        stats.corrupt_ignored += 1;
                        refused = Some((ErrorCode::BadDelta, format!("edit {v} refused: {e}")));
                        break;
                    }
                    return SyncOutcome::Reset {
                        error: Some((ErrorCode::BadDelta, e.to_string())),
                    };
                }
            },
            Edit::Full { .. } => {
                // Full-text edits go from server to client only (docs/protocol.md): refused,
                // with the rest of the request answered as usual.
                refused = Some((
                    ErrorCode::BadMessage,
                    format!("edit {v} refused: full-text edits go from server to client only"),
                ));
                break;
            }
        };
        // The master holds no `\r`; only text the change inserts can bring one, so only that is
        // scanned (not the whole document).
        let brings_cr = theirs
            .steps()
            .iter()
            .any(|st| matches!(st, Step::Insert(t) if t.contains('\r')));
        // Nothing moved on since this shadow: the change can go into the shadow in place and the
        // master becomes a copy of it. Otherwise it is merged past what the master gained.
        let fast = ours.is_noop() && !brings_cr;
        // Verify the checksum first; the fast path checks it without building the new text.
        let (new, sum) = if fast {
            (None, theirs.result_checksum(&s.shadow.text).map(Checksum))
        } else {
            match theirs.apply(&s.shadow.text) {
                Ok(t) => {
                    let sum = Checksum::of(&t);
                    (Some(t), Ok(sum))
                }
                Err(e) => (None, Err(e)),
            }
        };
        let sum = match sum {
            Ok(c) => c,
            Err(e) => {
                return SyncOutcome::Reset {
                    error: Some((ErrorCode::BadDelta, e.to_string())),
                }
            }
        };
        if sum != checksum {
            tracing::warn!(
                doc,
                client = client_id,
                "checksum mismatch after strict apply"
            );
            if s.bad_streak == 0 {
                // Most likely damaged in transit: refuse this edit, answer for the rest; the
                // client sends it again with its next cycle.
                s.bad_streak = 1;
                stats.corrupt_ignored += 1;
                refused = Some((
                    ErrorCode::BadDelta,
                    format!("edit {v} refused: checksum mismatch after applying it"),
                ));
                break;
            }
            return SyncOutcome::Reset { error: None };
        }
        let too_large = |len: usize| {
            Some((
                ErrorCode::DocumentTooLarge,
                format!(
                    "document would be {len} bytes; the maximum is {}",
                    limits.max_document_bytes
                ),
            ))
        };
        if theirs.target_len() > limits.max_document_bytes {
            return SyncOutcome::Reset {
                error: too_large(theirs.target_len()),
            };
        }
        let Some(new) = new else {
            // Fast path: checked above, so this cannot fail.
            if let Err(e) = theirs.apply_in_place(&mut s.shadow.text) {
                return SyncOutcome::Reset {
                    error: Some((ErrorCode::BadDelta, e.to_string())),
                };
            }
            if !theirs.is_noop() {
                master.clone_from(&s.shadow.text);
                *version += 1;
                new_changes.push((*version, theirs.clone()));
                log.push_back(theirs);
                master_changed = true;
            }
            ours = Operation::identity(s.shadow.text.len());
            s.shadow.client_version += 1;
            stats.edits_applied += 1;
            dirty = true;
            continue;
        };
        let m = merge_ops(
            *strategy,
            &config.fuzzy,
            &s.shadow.text,
            &theirs,
            &new,
            &ours,
            master,
        )
        .unwrap_or_else(|e| {
            tracing::error!(doc, error = %e, "exact merge failed; merging texts");
            stats.merge_fallbacks += 1;
            let out = merge(*strategy, &config.fuzzy, &s.shadow.text, &new, master);
            OpMerge {
                theirs_after: Operation::from_diff(master, &out.text),
                ours_after: Operation::from_diff(&new, &out.text),
                text: out.text,
                patches_dropped: out.patches_dropped,
            }
        });
        stats.patches_dropped += m.patches_dropped as u64;
        let (merged, change, after) =
            match brings_cr.then(|| normalize_newlines(&m.text).into_owned()) {
                Some(o) if o != m.text => {
                    let change = Operation::from_diff(master, &o);
                    let after = Operation::from_diff(&new, &o);
                    (o, change, after)
                }
                _ => (m.text, m.theirs_after, m.ours_after),
            };
        if merged.len() > limits.max_document_bytes {
            return SyncOutcome::Reset {
                error: too_large(merged.len()),
            };
        }
        // An exact change says whether the master moved; comparing texts would cost a scan.
        if !change.is_noop() {
            *master = merged;
            *version += 1;
            new_changes.push((*version, change.clone()));
            log.push_back(change);
            master_changed = true;
        }
        ours = after;
        s.shadow.text = new;
        s.shadow.client_version += 1;
        stats.edits_applied += 1;
        dirty = true;
    }
    // The log is complete for this request: its end is the master's version from here on.
    let log_end = *log_base + log.len() as u64;
    // What this request changed, for the store (master, session, new master changes).
    let persist = |s: &Session, master: &String, changes: Vec<(u64, Operation)>, version: u64| {
        PersistRecord {
            doc: doc.to_string(),
            text: master_changed.then(|| master.clone()),
            version,
            sessions: vec![s.record(client_id, log_end)],
            removed_sessions: Vec::new(),
            changes,
            changes_needed_after: *log_base,
        }
    };
    if let Some(error) = refused {
        s.link = Some(Link {
            op: ours,
            idx: log_end,
        });
        let persist = dirty.then(|| persist(s, master, new_changes, *version));
        return SyncOutcome::Refuse { persist, error };
    }
    s.bad_streak = 0;
    // Step 4: refresh the backup on every accepted message (pitfall 2).
    // Within a session, equal versions mean equal texts: compare the numbers, not the texts.
    let same = (s.backup.client_version, s.backup.server_version)
        == (s.shadow.client_version, s.shadow.server_version);
    if !same {
        s.backup.text.clone_from(&s.shadow.text);
        s.backup.client_version = s.shadow.client_version;
        s.backup.server_version = s.shadow.server_version;
        dirty = true;
    }
    s.backup_link = Some(Link {
        op: ours.clone(),
        idx: log_end,
    });
    // Step 5: send what the master has that this client's shadow lacks.
    // `ours` is the exact change from the shadow to the master: no-op means equal texts.
    if !ours.is_noop() {
        if s.pending.len() >= limits.max_pending_edits {
            return SyncOutcome::Reset { error: None };
        }
        let delta = Delta::from_operation(&ours, &s.shadow.text);
        s.pending.push(Edit::Delta {
            version: s.shadow.server_version,
            delta,
            checksum: Checksum::of(master),
        });
        s.shadow.text.clone_from(master);
        s.shadow.server_version += 1;
        dirty = true;
    }
    s.link = Some(Link {
        op: Operation::identity(master.len()),
        idx: log_end,
    });
    // Step 6: persist, then acknowledge.
    let persist = dirty.then(|| persist(s, master, new_changes, *version));
    let msg = ServerMsg::ServerSync {
        doc: doc.to_string(),
        seq,
        client_version: s.shadow.client_version,
        edits: s.pending.clone(),
    };
    SyncOutcome::Reply { persist, msg }
}
