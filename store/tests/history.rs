//! The SQLite store's history: every master change with its commit time, the text as of any
//! kept version, a fresh start where the changes do not lead to the master, and the retention
//! and count limits folding the oldest changes into the base.

use dsync_engine::{Operation, PersistRecord};
use dsync_store::{HistoryLimits, SqliteStore, Store, FOLD_BATCH};

/// The record that takes `doc` from `old` (version `version - 1`) to `new`, with its change.
fn change(doc: &str, old: &str, new: &str, version: u64) -> PersistRecord {
    PersistRecord {
        doc: doc.into(),
        text: Some(new.into()),
        version,
        sessions: vec![],
        removed_sessions: vec![],
        changes: vec![(version, Operation::from_diff(old, new))],
        changes_needed_after: 0,
    }
}

/// A record that writes `text` whole at `version`, with no change leading to it.
fn whole(doc: &str, text: &str, version: u64) -> PersistRecord {
    PersistRecord {
        changes: vec![],
        ..change(doc, "", text, version)
    }
}

fn text_as_of(s: &SqliteStore, v: u64) -> Option<String> {
    s.text_as_of("d", v).unwrap().map(|t| t.to_string())
}

#[test]
fn changes_are_kept_with_their_times_and_any_kept_version_can_be_read() {
    let mut s = SqliteStore::open_in_memory().unwrap();
    s.commit(&[whole("d", "ab", 1)], 1_000).unwrap();
    s.commit(&[change("d", "ab", "abc", 2)], 2_000).unwrap();
    // Two changes in one commit, and one in a batch with another document.
    let mut two = change("d", "abc", "xabc", 4);
    two.changes
        .insert(0, (3, Operation::from_diff("abc", "xabc")));
    two.changes[1] = (4, Operation::from_diff("xabc", "xab"));
    two.text = Some("xab".into());
    s.commit(&[two, whole("other", "o", 1)], 3_000).unwrap();

    let h = s.history("d", 0, 100).unwrap().unwrap();
    assert_eq!((h.base_version, h.base_at_ms, h.latest), (1, 1_000, 4));
    let kept: Vec<(u64, u64)> = h.changes.iter().map(|c| (c.version, c.at_ms)).collect();
    assert_eq!(kept, vec![(2, 2_000), (3, 3_000), (4, 3_000)]);
    assert_eq!(text_as_of(&s, 1).as_deref(), Some("ab"));
    assert_eq!(text_as_of(&s, 2).as_deref(), Some("abc"));
    assert_eq!(text_as_of(&s, 3).as_deref(), Some("xabc"));
    assert_eq!(text_as_of(&s, 4).as_deref(), Some("xab"));
    assert_eq!(text_as_of(&s, 0), None, "before the base");
    assert_eq!(text_as_of(&s, 5), None, "not yet written");
    // Pages: after a version, at most a limit.
    let page = s.history("d", 2, 1).unwrap().unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].version, 3);
    assert_eq!(s.history("nothing", 0, 10).unwrap(), None);

    // Changes that do not lead to the record's text are not kept: the history starts again
    // at that text (the store writes it whole, too).
    let mut wrong = change("d", "xab", "xa!", 5);
    wrong.text = Some("zzz".into());
    s.commit(&[wrong], 3_500).unwrap();
    let h = s.history("d", 0, 100).unwrap().unwrap();
    assert_eq!((h.base_version, h.latest, h.changes.len()), (5, 5, 0));
    assert_eq!(text_as_of(&s, 5).as_deref(), Some("zzz"));
    // A master the kept changes do not lead to starts the history again there.
    s.commit(&[whole("d", "new start", 9)], 4_000).unwrap();
    let h = s.history("d", 0, 100).unwrap().unwrap();
    assert_eq!((h.base_version, h.latest, h.changes.len()), (9, 9, 0));
    assert_eq!(text_as_of(&s, 9).as_deref(), Some("new start"));
    assert_eq!(text_as_of(&s, 4), None);
    // The document itself is as the records say.
    assert_eq!(s.load("d").unwrap().unwrap().text, "new start");
}

#[test]
fn history_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut s = SqliteStore::open(&path).unwrap();
    s.commit(&[whole("d", "a", 1)], 10).unwrap();
    s.commit(&[change("d", "a", "ab", 2)], 20).unwrap();
    s.close().unwrap();
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(text_as_of(&s, 1).as_deref(), Some("a"));
    assert_eq!(text_as_of(&s, 2).as_deref(), Some("ab"));
    assert_eq!(s.history("d", 0, 10).unwrap().unwrap().changes[0].at_ms, 20);
}

#[test]
fn retention_and_the_count_limit_fold_the_oldest_changes_into_the_base() {
    let mut s = SqliteStore::open_in_memory().unwrap();
    s.set_history_limits(HistoryLimits {
        retention_ms: Some(1_000),
        max_changes: 10,
    });
    s.commit(&[whole("d", "", 1)], 0).unwrap();
    let mut text = String::new();
    for v in 2..=5 {
        let next = format!("{text}{v}");
        s.commit(&[change("d", &text, &next, v)], v * 1_000)
            .unwrap();
        text = next;
    }
    // At 4,500 ms, changes committed before 3,500 ms (versions 2 and 3) are past retention.
    assert_eq!(s.collect_history(4_500).unwrap(), 2);
    let h = s.history("d", 0, 100).unwrap().unwrap();
    assert_eq!((h.base_version, h.base_at_ms, h.latest), (3, 3_000, 5));
    assert_eq!(text_as_of(&s, 3).as_deref(), Some("23"));
    assert_eq!(text_as_of(&s, 5).as_deref(), Some("2345"));
    assert_eq!(text_as_of(&s, 2), None);
    assert_eq!(s.collect_history(4_500).unwrap(), 0, "nothing more is due");

    // Past the most kept changes (plus a fold batch), the oldest are folded.
    let mut s = SqliteStore::open_in_memory().unwrap();
    s.set_history_limits(HistoryLimits {
        retention_ms: None,
        max_changes: 10,
    });
    s.commit(&[whole("d", "", 1)], 0).unwrap();
    let mut text = String::new();
    let last = 2 + 10 + FOLD_BATCH;
    for v in 2..=last {
        let next = format!("{text}{}", v % 10);
        s.commit(&[change("d", &text, &next, v)], v).unwrap();
        text = next;
    }
    let h = s.history("d", 0, 100_000).unwrap().unwrap();
    assert_eq!((h.base_version, h.latest), (last - 10, last));
    assert_eq!(h.changes.len(), 10);
    assert_eq!(text_as_of(&s, last), Some(text.clone()));
    assert_eq!(
        text_as_of(&s, last - 10).map(|t| t.len()),
        Some(text.len() - 10)
    );
    assert_eq!(
        s.collect_history(u64::MAX / 2).unwrap(),
        0,
        "no retention set"
    );

    // max_changes 0 keeps no history.
    let mut s = SqliteStore::open_in_memory().unwrap();
    s.set_history_limits(HistoryLimits {
        retention_ms: None,
        max_changes: 0,
    });
    s.commit(&[whole("d", "x", 1)], 0).unwrap();
    assert_eq!(s.history("d", 0, 10).unwrap(), None);
}
