//! One suite for every store: each test runs against [`SqliteStore`] (in memory: the same SQL as
//! a file) and [`MemStore`], and a property test commits random batches to both and requires
//! that they load back the same.

use dsync_engine::{Operation, PendingReset, PersistRecord, SessionRecord, Shadow};
use dsync_store::{MemStore, SqliteStore, Store};
use proptest::prelude::*;

fn stores() -> Vec<(&'static str, Box<dyn Store>)> {
    vec![
        ("sqlite", Box::new(SqliteStore::open_in_memory().unwrap())),
        ("mem", Box::new(MemStore::new())),
    ]
}

fn session(id: &str, text: &str, v: u64) -> SessionRecord {
    let shadow = Shadow {
        text: text.into(),
        client_version: v,
        server_version: v + 1,
    };
    SessionRecord {
        client_id: id.into(),
        key: Some(dsync_engine::SessionKey([v as u8; 16])),
        backup: shadow.clone(),
        shadow,
        last_seq: v * 10,
        link: Some((Operation::identity(text.chars().count()), v)),
        backup_link: None,
        shadow_is_master: false,
        backup_is_shadow: false,
        reset: None,
    }
}

fn record(doc: &str, text: Option<&str>, version: u64) -> PersistRecord {
    PersistRecord {
        doc: doc.into(),
        text: text.map(Into::into),
        version,
        sessions: vec![],
        removed_sessions: vec![],
        changes: vec![],
        changes_needed_after: 0,
    }
}

#[test]
fn nothing_written_loads_as_none() {
    for (name, mut s) in stores() {
        assert_eq!(s.load("d").unwrap(), None, "{name}");
        s.commit(&[], 0).unwrap();
        assert_eq!(
            s.load("d").unwrap(),
            None,
            "{name}: an empty batch writes nothing"
        );
        assert!(s.documents().unwrap().is_empty(), "{name}");
    }
}

#[test]
fn a_record_without_text_keeps_text_and_version() {
    for (name, mut s) in stores() {
        s.commit(&[record("d", Some("hello"), 3)], 0).unwrap();
        s.commit(&[record("d", None, 9)], 1).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(
            (String::from(&d.text).as_str(), d.version),
            ("hello", 3),
            "{name}"
        );
        // A document first written without text exists, empty, at version 0.
        s.commit(&[record("e", None, 5)], 2).unwrap();
        let e = s.load("e").unwrap().unwrap();
        assert_eq!(
            (String::from(&e.text).as_str(), e.version),
            ("", 0),
            "{name}"
        );
        assert_eq!(s.documents().unwrap(), vec!["d", "e"], "{name}");
    }
}

#[test]
fn texts_left_out_are_filled_from_the_master_and_shadow() {
    for (name, mut s) in stores() {
        let mut r = record("d", Some("the master"), 1);
        let mut a = session("a", "", 1);
        a.shadow_is_master = true;
        a.backup_is_shadow = true;
        r.sessions.push(a);
        s.commit(&[r], 0).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(d.sessions[0].shadow.text, "the master", "{name}");
        assert_eq!(d.sessions[0].backup.text, "the master", "{name}");
        assert!(!d.sessions[0].shadow_is_master && !d.sessions[0].backup_is_shadow);
        // Master unchanged in a later record: the stored master is used; the backup given.
        let mut r = record("d", None, 1);
        let mut a = session("a", "", 2);
        a.shadow_is_master = true;
        a.backup.text = "backup".into();
        r.sessions.push(a);
        s.commit(&[r], 1).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(d.sessions[0].shadow.text, "the master", "{name}");
        assert_eq!(d.sessions[0].backup.text, "backup", "{name}");
    }
}

#[test]
fn sessions_come_back_by_client_id_with_their_pending_reset() {
    for (name, mut s) in stores() {
        let mut r = record("d", Some("m"), 1);
        let mut z = session("z", "zz", 4);
        z.reset = Some(PendingReset {
            version: 7,
            from_text: "before".into(),
            from_link: Some((Operation::identity(6), 2)),
        });
        r.sessions = vec![z.clone(), session("a", "aa", 2), session("m", "mm", 3)];
        s.commit(&[r], 0).unwrap();
        let d = s.load("d").unwrap().unwrap();
        let ids: Vec<_> = d.sessions.iter().map(|x| x.client_id.as_str()).collect();
        assert_eq!(ids, ["a", "m", "z"], "{name}");
        assert_eq!(d.sessions[2], z, "{name}");
    }
}

#[test]
fn changes_are_kept_by_version_and_trimmed() {
    for (name, mut s) in stores() {
        let mut r = record("d", Some("abc"), 3);
        r.changes = vec![
            (3, Operation::identity(3)),
            (1, Operation::identity(1)),
            (2, Operation::identity(2)),
        ];
        s.commit(&[r], 0).unwrap();
        let versions = |s: &dyn Store| -> Vec<u64> {
            s.load("d")
                .unwrap()
                .unwrap()
                .changes
                .iter()
                .map(|c| c.0)
                .collect()
        };
        assert_eq!(versions(&*s), [1, 2, 3], "{name}");
        let mut r = record("d", None, 3);
        r.changes_needed_after = 2;
        s.commit(&[r], 1).unwrap();
        assert_eq!(versions(&*s), [3], "{name}");
        // A change written in the same record as a trim past it is trimmed too.
        let mut r = record("d", Some("abcd"), 4);
        r.changes = vec![(4, Operation::identity(4))];
        r.changes_needed_after = 4;
        s.commit(&[r], 2).unwrap();
        assert_eq!(versions(&*s), Vec::<u64>::new(), "{name}");
    }
}

#[test]
fn removed_sessions_are_deleted_after_the_record_writes() {
    for (name, mut s) in stores() {
        let mut r = record("d", Some("x"), 1);
        r.sessions = vec![session("a", "x", 1), session("b", "x", 1)];
        s.commit(&[r], 0).unwrap();
        let mut r = record("d", None, 1);
        r.sessions = vec![session("b", "y", 2)];
        r.removed_sessions = vec!["a".into(), "b".into()];
        s.commit(&[r], 1).unwrap();
        assert!(s.load("d").unwrap().unwrap().sessions.is_empty(), "{name}");
    }
}

#[test]
fn later_records_of_a_batch_see_the_earlier_ones() {
    for (name, mut s) in stores() {
        let mut second = record("d", Some("second"), 2);
        let mut a = session("a", "", 2);
        a.shadow_is_master = true;
        second.sessions.push(a);
        s.commit(&[record("d", Some("first"), 1), second], 0)
            .unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(
            (String::from(&d.text).as_str(), d.version),
            ("second", 2),
            "{name}"
        );
        assert_eq!(d.sessions[0].shadow.text, "second", "{name}");
    }
}

fn arb_session() -> impl Strategy<Value = SessionRecord> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        "[xy字]{0,4}",
        "[xy]{0,4}",
        0u64..50,
        any::<(bool, bool, bool, bool)>(),
    )
        .prop_map(|(id, shadow, backup, v, (sm, bs, link, reset))| {
            let mut s = session(id, &shadow, v);
            s.backup.text = backup.into();
            s.shadow_is_master = sm;
            s.backup_is_shadow = bs;
            if !link {
                s.link = None;
                s.backup_link = Some((Operation::identity(2), v + 3));
            }
            if reset {
                s.reset = Some(PendingReset {
                    version: v + 5,
                    from_text: "r".into(),
                    from_link: link.then(|| (Operation::identity(1), v)),
                });
            }
            s
        })
}

fn arb_record() -> impl Strategy<Value = PersistRecord> {
    (
        prop::sample::select(vec!["d", "e"]),
        prop::option::of("[ab漢]{0,6}"),
        0u64..20,
        prop::collection::vec(arb_session(), 0..3),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..2),
        prop::collection::vec(0u64..20, 0..3),
        0u64..20,
    )
        .prop_map(
            |(doc, text, version, sessions, removed, changes, needed)| PersistRecord {
                doc: doc.into(),
                text: text.map(Into::into),
                version,
                sessions,
                removed_sessions: removed.into_iter().map(Into::into).collect(),
                changes: changes
                    .into_iter()
                    .map(|v| (v, Operation::identity(v as usize)))
                    .collect(),
                changes_needed_after: needed,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any sequence of batches leaves both stores with the same content.
    #[test]
    fn both_stores_load_back_the_same(
        batches in prop::collection::vec(prop::collection::vec(arb_record(), 0..3), 1..6)
    ) {
        let mut sql = SqliteStore::open_in_memory().unwrap();
        let mut mem = MemStore::new();
        for (t, batch) in batches.iter().enumerate() {
            sql.commit(batch, t as u64).unwrap();
            mem.commit(batch, t as u64).unwrap();
            prop_assert_eq!(sql.documents().unwrap(), mem.documents().unwrap());
            for doc in ["d", "e"] {
                prop_assert_eq!(sql.load(doc).unwrap(), mem.load(doc).unwrap(), "doc {}", doc);
            }
        }
    }
}

/// An engine-like history: one document edited thousands of times by records that carry the
/// text and its exact change, sessions brought up to the master now and then, some left behind
/// for good (gone clients), the SQLite file reopened along the way (a cold store reads its last
/// text back). Snapshots, the chain and session references must load back exactly what the
/// in-memory store holds.
#[test]
fn long_histories_load_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let mut sql = SqliteStore::open(&path).unwrap();
    let mut mem = MemStore::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut text = String::from("hello, world\n");
    let end = 3_000u64;
    for version in 1..=end {
        let before = text.clone();
        let mut at = next(text.len() as u64 + 1) as usize;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut del = (next(4) as usize).min(text.len() - at);
        while !text.is_char_boundary(at + del) {
            del += 1;
        }
        let ins = ["a", "é", "\n", "xyz", ""][next(5) as usize];
        let mut op = Operation::new();
        op.retain(at)
            .insert(ins)
            .delete(del)
            .retain(text.len() - at - del);
        text.replace_range(at..at + del, ins);
        let mut r = record("d", Some(&text), version);
        r.changes = vec![(version, op)];
        r.changes_needed_after = version.saturating_sub(40);
        for k in 0..12u64 {
            // Clients 0..4 stop syncing (gone) at versions 400, 800, …
            if k < 4 && version > 400 * (k + 1) {
                continue;
            }
            if next(8) == 0 {
                let mut s = session(&format!("c{k}"), "", version);
                s.shadow_is_master = true;
                s.backup_is_shadow = next(2) == 0;
                if !s.backup_is_shadow {
                    s.backup.text = before.as_str().into();
                }
                r.sessions.push(s);
            }
        }
        if next(500) == 0 {
            r.removed_sessions.push(format!("c{}", next(12)));
        }
        sql.commit(std::slice::from_ref(&r), version).unwrap();
        mem.commit(&[r], version).unwrap();
        if version % 700 == 0 {
            drop(sql);
            sql = SqliteStore::open(&path).unwrap();
        }
        if version % 250 == 0 || version == end {
            assert_eq!(
                sql.load("d").unwrap(),
                mem.load("d").unwrap(),
                "at version {version}"
            );
        }
    }
    drop(sql);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.load("d").unwrap(), mem.load("d").unwrap());
    drop(reopened);
    // The machinery was used: the snapshot moved on, the gone clients' texts are kept once per
    // version, the chain stays short.
    let db = rusqlite::Connection::open(&path).unwrap();
    let one = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert!(one("SELECT text_version FROM documents") > 1_000);
    assert!(one("SELECT COUNT(*) FROM texts") >= 1);
    assert!(one("SELECT COUNT(*) FROM chain") <= 1_300);
    assert!(one("SELECT COUNT(*) FROM sessions WHERE shadow_at IS NOT NULL") >= 8);
    // The file holds far less than a text per session and commit (3,000 commits of ~1 KB).
    let bytes = std::fs::metadata(&path).unwrap().len();
    assert!(bytes < 400_000, "{bytes} bytes");
}

/// A record whose changes do not lead to its text (a bookkeeping bug in a driver) is written as
/// a whole text: the store never trusts a change it has not replayed to the record's text.
#[test]
fn a_text_its_changes_do_not_make_is_stored_whole() {
    for (name, mut s) in stores() {
        s.commit(&[record("d", Some("abc"), 1)], 0).unwrap();
        // Right length, wrong content: "abc" → "abx" claimed to be "aby".
        let mut op = Operation::new();
        op.retain(2).insert("x").delete(1);
        let mut r = record("d", Some("aby"), 2);
        r.changes = vec![(2, op.clone())];
        s.commit(&[r], 1).unwrap();
        assert_eq!(s.load("d").unwrap().unwrap().text, "aby", "{name}");
        // And a right one is taken as it is.
        let mut r = record("d", Some("abyz"), 3);
        let mut op = Operation::new();
        op.retain(3).insert("z");
        r.changes = vec![(3, op)];
        s.commit(&[r], 2).unwrap();
        assert_eq!(s.load("d").unwrap().unwrap().text, "abyz", "{name}");
    }
}
