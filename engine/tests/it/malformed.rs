//! A corpus of malformed deltas: each is an error, never a panic or a silent misapply.

use dsync_engine::{Delta, DeltaError};

#[test]
fn malformed_deltas_are_errors() {
    type Check = fn(&DeltaError) -> bool;
    let parse_errors: &[(&str, Check)] = &[
        ("*3", |e| matches!(e, DeltaError::BadOperation(_))),
        ("3", |e| matches!(e, DeltaError::BadOperation(_))),
        ("=", |e| matches!(e, DeltaError::BadCount(_))),
        ("=-1", |e| matches!(e, DeltaError::BadCount(_))),
        ("=+1", |e| matches!(e, DeltaError::BadCount(_))),
        ("= 1", |e| matches!(e, DeltaError::BadCount(_))),
        ("=1.5", |e| matches!(e, DeltaError::BadCount(_))),
        ("=99999999999999999999", |e| {
            matches!(e, DeltaError::BadCount(_))
        }),
        ("-x", |e| matches!(e, DeltaError::BadCount(_))),
        ("+%", |e| matches!(e, DeltaError::BadEscape(_))),
        ("+%4", |e| matches!(e, DeltaError::BadEscape(_))),
        ("+%zz", |e| matches!(e, DeltaError::BadEscape(_))),
        ("+%C3", |e| matches!(e, DeltaError::BadUtf8)),
        ("+%ED%A0%80", |e| matches!(e, DeltaError::BadUtf8)), // a lone surrogate in UTF-8
        ("+%FF", |e| matches!(e, DeltaError::BadUtf8)),
    ];
    for (text, check) in parse_errors {
        let e = Delta::parse(text, 1000).expect_err(text);
        assert!(check(&e), "{text:?} gave {e:?}");
        assert!(!e.to_string().is_empty());
    }
    assert!(matches!(
        Delta::parse(&"=1\t".repeat(100), 50),
        Err(DeltaError::TooLarge { .. })
    ));

    let apply_errors: &[(&str, &str)] = &[
        ("=4", "abc"),          // too long
        ("=2", "abc"),          // too short
        ("-4", "abc"),          // delete past the end
        ("=1\t-1", "a😀"),      // splits a surrogate pair (delete)
        ("=2", "a😀"),          // splits a surrogate pair (keep)
        ("+x", "abc"),          // covers nothing
        ("=1\t+x\t=1", "ab😀"), // counts sum short
    ];
    for (delta, text) in apply_errors {
        let d = Delta::parse(delta, 1000).unwrap();
        assert!(d.apply(text).is_err(), "{delta:?} on {text:?}");
    }
}
