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
