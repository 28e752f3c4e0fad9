//! The sync step: one `client_sync` against one session, as the steps of `docs/protocol.md`
//! (guaranteed-delivery DS, server side):
//!
//! 1. [`admit`]: a stale request is ignored; an outstanding reset must be acknowledged.
//! 2. [`restore_or_reset`]: a lost reply shows as `m_ack` equal to the backup's m (restore), and
//!    server edits below `m_ack` are acknowledged.
//! 3. [`apply_edit`], for each client edit: decoded against the shadow, checked (checksum,
//!    size), then taken into the shadow and the master (in place when nothing moved on, by an
//!    exact merge otherwise).
//! 4. [`reply`]: the backup is refreshed, what the master has that the shadow lacks is sent,
//!    and the persist record comes with the reply (persist, then acknowledge).
//!
//! A step returns `Err(Stop)` to end the request early (ignore it, or reset the session).

use super::*;

/// One `client_sync`, as the sync step reads it.
pub(super) struct SyncRequest<'a> {
    pub(super) doc: &'a str,
    pub(super) client_id: &'a str,
    pub(super) now: Time,
    pub(super) seq: u64,
    pub(super) m_ack: u64,
    pub(super) edits: Vec<Edit>,
}

/// The master side of a document, as one request changes it.
struct MasterState<'d> {
    text: &'d mut Rope,
    version: &'d mut u64,
    log: &'d mut VecDeque<Operation>,
    log_base: u64,
    strategy: MergeStrategy,
    /// Master changes this request made, by version (for the store).
    changes: Vec<(u64, Operation)>,
}

impl MasterState<'_> {
    fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Record `change` as the master's next version.
    fn push(&mut self, change: Operation) {
        *self.version += 1;
        self.changes.push((*self.version, change.clone()));
        self.log.push_back(change);
    }
}

/// Why a request ends before its reply: it is ignored, or the session is reset (with the error
/// to send first, if any).
enum Stop {
    Ignore,
    Reset(Option<(ErrorCode, String)>),
}

/// What one client edit came to.
enum EditOutcome {
    /// Taken into the shadow (and the master).
    Applied,
    /// Already applied before (a retransmission).
    Duplicate,
    /// Refused for now (maybe damaged in transit): the rest of the request is not read.
    Refused((ErrorCode, String)),
}

/// Handle one `client_sync` against its session (see the module docs).
pub(super) fn sync_session(
    config: &Config,
    d: &mut Document,
    req: SyncRequest<'_>,
    stats: &mut Stats,
) -> SyncOutcome {
    match sync_steps(config, d, req, stats) {
        Ok(outcome) => outcome,
        Err(Stop::Ignore) => SyncOutcome::Ignore,
        Err(Stop::Reset(error)) => SyncOutcome::Reset { error },
    }
}

fn sync_steps(
    config: &Config,
    d: &mut Document,
    mut req: SyncRequest<'_>,
    stats: &mut Stats,
) -> Result<SyncOutcome, Stop> {
    let Document {
        master,
        version,
        merge: strategy,
        sessions,
        log,
        log_base,
        presence: _,
    } = d;
    let s = sessions.get_mut(req.client_id).ok_or(Stop::Ignore)?;
    // The store must forget an acknowledged reset, or a reload would send it again.
    let mut dirty = admit(s, &req, stats)?;
    dirty |= restore_or_reset(s, req.m_ack, stats)?;
    let mut m = MasterState {
        text: master,
        version,
        log,
        log_base: *log_base,
        strategy: *strategy,
        changes: Vec::new(),
    };
    // The exact change from this client's shadow to the master, kept up to date below.
    let mut ours = to_master(m.text, m.log, m.log_base, &s.shadow.text, &s.link, stats);
    let mut refused = None;
    let edits = std::mem::take(&mut req.edits);
    for edit in edits {
        match apply_edit(config, &mut m, s, &mut ours, edit, &req, stats)? {
            EditOutcome::Applied => dirty = true,
            EditOutcome::Duplicate => stats.duplicates_skipped += 1,
            EditOutcome::Refused(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    // The log is complete for this request: its end is the master's version from here on.
    let log_end = m.log_base + m.log.len() as u64;
    let persist = |s: &Session, m: &MasterState<'_>, dirty: bool| {
        dirty.then(|| PersistRecord {
            doc: req.doc.to_string(),
            text: m.changed().then(|| m.text.clone()),
            version: *m.version,
            sessions: vec![s.record(req.client_id, log_end)],
            removed_sessions: Vec::new(),
            changes: m.changes.clone(),
            changes_needed_after: m.log_base,
        })
    };
    if let Some(error) = refused {
        dirty |= link_moves(&s.link, log_end);
        s.link = Some(Link {
            op: ours,
            idx: log_end,
        });
        let persist = persist(s, &m, dirty);
        return Ok(SyncOutcome::Refuse { persist, error });
    }
    dirty |= reply(&m, s, ours, log_end)?;
    let persist = persist(s, &m, dirty);
    let msg = ServerMsg::ServerSync {
        doc: req.doc.to_string(),
        seq: req.seq,
        client_version: s.shadow.client_version,
        edits: s.pending.iter().cloned().collect(),
    };
    Ok(SyncOutcome::Reply { persist, msg })
}

/// Step 1: a request older than the last one is ignored; a request that crossed an outstanding
/// reset gets the reset again. Returns whether the session changed in a way the store keeps.
fn admit(s: &mut Session, req: &SyncRequest<'_>, stats: &mut Stats) -> Result<bool, Stop> {
    if req.seq <= s.last_seq {
        stats.stale_skipped += 1;
        return Err(Stop::Ignore);
    }
    s.last_seq = req.seq;
    s.last_active = req.now;
    let Some(reset) = &s.reset else {
        return Ok(false);
    };
    if req.m_ack != reset.version {
        // The reset was lost or this request crossed it: send it again.
        return Err(Stop::Reset(None));
    }
    s.reset = None;
    Ok(true)
}

/// Step 2: restore the backup when the client never got our last reply; reset when `m_ack`
/// matches neither shadow. Server edits below `m_ack` are acknowledged.
fn restore_or_reset(s: &mut Session, m_ack: u64, stats: &mut Stats) -> Result<bool, Stop> {
    let mut restored = false;
    if m_ack == s.shadow.server_version {
    } else if m_ack == s.backup.server_version {
        s.shadow = s.backup.clone();
        s.link = s.backup_link.clone();
        s.pending = None;
        stats.rollbacks += 1;
        restored = true;
    } else {
        return Err(Stop::Reset(None));
    }
    // Equal to the shadow's m (restored or not): the last reply's edit, if any, arrived.
    debug_assert_eq!(m_ack, s.shadow.server_version);
    s.pending = None;
    Ok(restored)
}

/// Step 3, one client edit: decode, check, apply (in place or by an exact merge).
fn apply_edit(
    config: &Config,
    m: &mut MasterState<'_>,
    s: &mut Session,
    ours: &mut Operation,
    edit: Edit,
    req: &SyncRequest<'_>,
    stats: &mut Stats,
) -> Result<EditOutcome, Stop> {
    let v = edit.version();
    if v < s.shadow.client_version {
        return Ok(EditOutcome::Duplicate);
    }
    if v > s.shadow.client_version {
        return Err(Stop::Reset(None));
    }
    let (theirs, checksum) = match decode_edit(s, edit, req, stats)? {
        Ok(x) => x,
        Err(refusal) => return Ok(EditOutcome::Refused(refusal)),
    };
    // The master holds no `\r`; only text the change inserts can bring one, so only that is
    // scanned (not the whole document).
    let brings_cr = theirs
        .steps()
        .iter()
        .any(|st| matches!(st, Step::Insert(t) if t.contains('\r')));
    // Nothing moved on since this shadow: the new shadow is also the master. Otherwise the
    // change is merged past what the master gained.
    let fast = ours.is_noop() && !brings_cr;
    // The new shadow shares every chunk the change leaves alone, and its checksum is combined
    // from theirs: O(edit), whatever the document's size.
    let new = theirs
        .apply_to(&s.shadow.text)
        .map_err(|e| Stop::Reset(Some((ErrorCode::BadDelta, e.to_string()))))?;
    let sum = Checksum::of(&new);
    if sum != checksum {
        tracing::warn!(
            doc = req.doc,
            client = req.client_id,
            "checksum mismatch after strict apply"
        );
        // Most likely damaged in transit: refuse this edit, answer for the rest; the client
        // sends it again with its next cycle. Twice in a row: the shadows diverged.
        let why = format!("edit {v} refused: checksum mismatch after applying it");
        return Ok(EditOutcome::Refused(damaged(s, stats, why, None)?));
    }
    let limit = config.limits.max_document_bytes;
    check_size(theirs.target_len(), limit)?;
    if fast {
        take_as_master(m, s, ours, theirs, new);
    } else {
        merge_into_master(config, m, s, ours, &theirs, new, brings_cr, req, stats)?;
    }
    s.shadow.client_version += 1;
    stats.edits_applied += 1;
    Ok(EditOutcome::Applied)
}

/// The client's change as an exact operation on the shadow, with the checksum it claims; or a
/// refusal (a first damaged edit, a full-text edit from a client).
#[allow(clippy::type_complexity)]
fn decode_edit(
    s: &mut Session,
    edit: Edit,
    req: &SyncRequest<'_>,
    stats: &mut Stats,
) -> Result<Result<(Operation, Checksum), (ErrorCode, String)>, Stop> {
    let v = edit.version();
    match edit {
        Edit::Delta {
            delta, checksum, ..
        } => match delta.to_operation(&s.shadow.text) {
            Ok(op) => Ok(Ok((op, checksum))),
            Err(e) => {
                tracing::warn!(doc = req.doc, client = req.client_id, error = %e, "delta does not fit shadow");
                let why = format!("edit {v} refused: {e}");
                let reset = Some((ErrorCode::BadDelta, e.to_string()));
                Ok(Err(damaged(s, stats, why, reset)?))
            }
        },
        // Full-text edits go from server to client only (docs/protocol.md): refused, with the
        // rest of the request answered as usual.
        Edit::Full { .. } => Ok(Err((
            ErrorCode::BadMessage,
            format!("edit {v} refused: full-text edits go from server to client only"),
        ))),
    }
}

/// An edit that does not fit or check: the first in a row is refused (maybe damaged in
/// transit; the client resends) with the error returned here, the next one resets the session
/// with `reset_error`.
fn damaged(
    s: &mut Session,
    stats: &mut Stats,
    why: String,
    reset_error: Option<(ErrorCode, String)>,
) -> Result<(ErrorCode, String), Stop> {
    if s.bad_streak == 0 {
        s.bad_streak = 1;
        stats.corrupt_ignored += 1;
        return Ok((ErrorCode::BadDelta, why));
    }
    Err(Stop::Reset(reset_error))
}

/// A document may not pass the size limit.
fn check_size(len: usize, limit: usize) -> Result<(), Stop> {
    if len <= limit {
        return Ok(());
    }
    let message = format!("document would be {len} bytes; the maximum is {limit}");
    Err(Stop::Reset(Some((ErrorCode::DocumentTooLarge, message))))
}

/// Nothing moved on since the shadow: the new shadow is the master (one tree, shared).
fn take_as_master(
    m: &mut MasterState<'_>,
    s: &mut Session,
    ours: &mut Operation,
    theirs: Operation,
    new: Rope,
) {
    if !theirs.is_noop() {
        *m.text = new.clone();
        m.push(theirs);
    }
    s.shadow.text = new;
    *ours = Operation::identity(s.shadow.text.len());
}

/// The master moved on since the shadow: merge the client's change past what it gained,
/// exactly (falling back to texts only if the exact merge fails, counted as a bug).
#[allow(clippy::too_many_arguments)]
fn merge_into_master(
    config: &Config,
    m: &mut MasterState<'_>,
    s: &mut Session,
    ours: &mut Operation,
    theirs: &Operation,
    new: Rope,
    brings_cr: bool,
    req: &SyncRequest<'_>,
    stats: &mut Stats,
) -> Result<(), Stop> {
    let (strategy, fuzzy) = (m.strategy, &config.fuzzy);
    let shadow = &s.shadow.text;
    let merged =
        merge_ops(strategy, fuzzy, shadow, theirs, &new, ours, m.text).unwrap_or_else(|e| {
            tracing::error!(doc = req.doc, error = %e, "exact merge failed; merging texts");
            stats.merge_fallbacks += 1;
            let (master, changed) = (m.text.flat(), new.flat());
            let out = merge(strategy, fuzzy, &shadow.flat(), &changed, &master);
            OpMerge {
                theirs_after: Operation::from_diff(&master, &out.text),
                ours_after: Operation::from_diff(&changed, &out.text),
                text: Rope::from(out.text),
                patches_dropped: out.patches_dropped,
            }
        });
    stats.patches_dropped += merged.patches_dropped as u64;
    // Text the client inserted may bring `\r`: the master holds none, so the merge's result is
    // normalised, and both exact changes are composed with the normalisation's own exact
    // change (linear; never a diff).
    let normalised = brings_cr
        .then(|| Operation::normalize_newlines(&merged.text.flat()))
        .flatten();
    let (text, change, after) = match normalised {
        Some((norm, text)) => {
            let compose = |op: &Operation| {
                op.compose(&norm)
                    .map_err(|e| Stop::Reset(Some((ErrorCode::Internal, e.to_string()))))
            };
            (
                Rope::from(text),
                compose(&merged.theirs_after)?,
                compose(&merged.ours_after)?,
            )
        }
        None => (merged.text, merged.theirs_after, merged.ours_after),
    };
    check_size(text.len(), config.limits.max_document_bytes)?;
    // An exact change says whether the master moved; comparing texts would cost a scan.
    if !change.is_noop() {
        *m.text = text;
        m.push(change);
    }
    *ours = after;
    s.shadow.text = new;
    Ok(())
}

/// Whether a link set now (to index `log_end`) differs from the one the store holds. A moved
/// link must be written: `trim_log` lets the store forget the changes below the links in
/// memory, so a stored link left behind points before the stored log after a restart, and a
/// diff stands in for the exact change (swarm seed 309224: a change and its undo left an idle
/// client's shadow equal to the master, so its poll changed nothing but its link's index;
/// scenarios/regressions/unsaved-link-min.ron).
fn link_moves(link: &Option<Link>, log_end: u64) -> bool {
    link.as_ref().is_none_or(|l| l.idx != log_end)
}

/// Step 4: refresh the backup on every accepted message (pitfall 2), and queue what the master
/// has that the shadow lacks. Returns whether the session changed in a way the store keeps.
fn reply(
    m: &MasterState<'_>,
    s: &mut Session,
    ours: Operation,
    log_end: u64,
) -> Result<bool, Stop> {
    s.bad_streak = 0;
    let mut dirty = link_moves(&s.link, log_end) || link_moves(&s.backup_link, log_end);
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
    // `ours` is the exact change from the shadow to the master: no-op means equal texts.
    if !ours.is_noop() {
        let delta = Delta::from_operation(&ours, &s.shadow.text);
        s.pending = Some(Edit::Delta {
            version: s.shadow.server_version,
            delta,
            checksum: Checksum::of(m.text),
        });
        s.shadow.text.clone_from(m.text);
        s.shadow.server_version += 1;
        dirty = true;
    }
    s.link = Some(Link {
        op: Operation::identity(m.text.len()),
        idx: log_end,
    });
    Ok(dirty)
}
