//! Property tests: random edits on several clients over a network that drops, duplicates,
//! reorders and delays at random, then heals.

use proptest::prelude::*;

use dsync_engine::dmp::{self, FuzzySettings};
use dsync_engine::{Config, Delta, Operation};

use crate::harness::Net;

#[derive(Debug, Clone)]
enum Step {
    /// Client edits: insert `text` at a fraction of its length, or delete a span.
    Edit {
        client: usize,
        at: f64,
        del: usize,
        text: String,
    },
    Deliver {
        client: usize,
        up: bool,
    },
    Drop {
        client: usize,
        up: bool,
    },
    Duplicate {
        client: usize,
        up: bool,
    },
    Reorder {
        client: usize,
        up: bool,
    },
    Wait {
        ms: u64,
    },
}

fn step(clients: usize) -> impl Strategy<Value = Step> {
    let c = 0..clients;
    prop_oneof![
        3 => (c.clone(), 0.0..=1.0f64, 0usize..4, "[a-z😀é \n]{0,4}")
            .prop_map(|(client, at, del, text)| Step::Edit { client, at, del, text }),
        4 => (c.clone(), any::<bool>()).prop_map(|(client, up)| Step::Deliver { client, up }),
        1 => (c.clone(), any::<bool>()).prop_map(|(client, up)| Step::Drop { client, up }),
        1 => (c.clone(), any::<bool>()).prop_map(|(client, up)| Step::Duplicate { client, up }),
        1 => (c, any::<bool>()).prop_map(|(client, up)| Step::Reorder { client, up }),
        2 => (0u64..1500).prop_map(|ms| Step::Wait { ms }),
    ]
}

fn run(net: &mut Net, steps: &[Step], edit: &mut dyn FnMut(&mut Net, usize, f64, usize, &str)) {
    for s in steps {
        match s {
            Step::Edit {
                client,
                at,
                del,
                text,
            } => edit(net, *client, *at, *del, text),
            Step::Deliver { client, up: true } => {
                net.deliver_up(*client);
            }
            Step::Deliver { client, up: false } => {
                net.deliver_down(*client);
            }
            Step::Drop { client, up: true } => {
                net.drop_up(*client);
            }
            Step::Drop { client, up: false } => {
                net.drop_down(*client);
            }
            Step::Duplicate { client, up: true } => net.duplicate_up(*client),
            Step::Duplicate { client, up: false } => net.duplicate_down(*client),
            Step::Reorder { client, up: true } => net.reorder_up(*client),
            Step::Reorder { client, up: false } => net.reorder_down(*client),
            Step::Wait { ms } => net.advance(*ms),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Anything typed anywhere, any faults: after healing, everything agrees.
    #[test]
    fn converges_after_faults_heal(steps in prop::collection::vec(step(3), 1..120)) {
        let mut net = Net::connected(3, Config::default(), "start text");
        run(&mut net, &steps, &mut |net, c, at, del, text| {
            let len = net.clients[c].engine().text().len_chars();
            let pos = ((len as f64) * at) as usize;
            let end = (pos + del).min(len);
            net.clients[c].delete(pos, end).unwrap();
            net.clients[c].insert(pos, text).unwrap();
        });
        net.settle(120_000);
        prop_assert!(net.converged().is_ok());
    }

    /// Each client edits only its own region: every edit survives exactly once, so each region
    /// ends exactly as its owner last saw it.
    #[test]
    fn disjoint_edits_all_survive(steps in prop::collection::vec(step(3), 1..120)) {
        // Regions are delimited by markers that edits never produce.
        let initial = "\u{1}0\u{1}region zero\u{1}1\u{1}region one\u{1}2\u{1}region two\u{1}E\u{1}";
        let mut net = Net::connected(3, Config::default(), initial);
        let region = |text: &str, c: usize| -> (usize, usize) {
            let open = format!("\u{1}{c}\u{1}");
            let start = text.find(&open).unwrap() + open.len();
            let end = start + text[start..].find('\u{1}').unwrap();
            (text[..start].chars().count(), text[..end].chars().count())
        };
        let mut intended: Vec<Option<String>> = vec![None; 3];
        run(&mut net, &steps, &mut |net, c, at, del, text| {
            let (a, b) = region(&net.clients[c].engine().text().flat(), c);
            let pos = a + (((b - a) as f64) * at) as usize;
            let end = (pos + del).min(b);
            net.clients[c].delete(pos, end).unwrap();
            net.clients[c].insert(pos, text).unwrap();
        });
        for (c, slot) in intended.iter_mut().enumerate() {
            let t = net.clients[c].engine().text().to_string();
            let (a, b) = region(&t, c);
            *slot = Some(t.chars().skip(a).take(b - a).collect());
        }
        net.settle(120_000);
        let master = net.master();
        for (c, want) in intended.iter().enumerate() {
            let (a, b) = region(&master, c);
            let got: String = master.chars().skip(a).take(b - a).collect();
            prop_assert_eq!(Some(got), want.clone(), "region {}", c);
        }
    }

    /// `leaves_unchanged` (which compares only the changed span) says exactly whether the
    /// operation's result is its base, including changes that undo themselves (a delete and
    /// an insert of the same text, a letter swapped and swapped back).
    #[test]
    fn leaves_unchanged_is_result_equals_base(
        base in "[ab😀]{0,12}",
        steps in prop::collection::vec((0u8..3, 0usize..4, "[ab😀]{0,2}"), 0..8),
    ) {
        // Build an operation over `base` from the steps, on char boundaries.
        let chars: Vec<(usize, char)> = base.char_indices().collect();
        let mut op = Operation::new();
        let mut i = 0;
        for (kind, n, text) in &steps {
            let take = (*n).min(chars.len() - i);
            let bytes: usize = chars[i..i + take].iter().map(|(_, c)| c.len_utf8()).sum();
            match kind {
                0 => { op.retain(bytes); i += take; }
                1 => { op.delete(bytes); i += take; }
                _ => { op.insert(text); }
            }
            if *kind == 2 && take > 0 {
                // Sometimes re-insert what is deleted next: a change that undoes itself.
                let same: String = chars[i..i + take].iter().map(|(_, c)| *c).collect();
                op.insert(&same);
                op.delete(bytes);
                i += take;
            }
        }
        let rest: usize = chars[i..].iter().map(|(_, c)| c.len_utf8()).sum();
        op.retain(rest);
        let result = op.apply(&base).unwrap();
        prop_assert_eq!(op.leaves_unchanged(&base), result == base, "{:?} on {:?} gives {:?}", op, base, result);
    }

    /// The delta codec round-trips any pair of texts.
    #[test]
    fn delta_roundtrip(a in "\\PC{0,40}", b in "\\PC{0,40}") {
        let d = Delta::diff(&a, &b);
        let parsed = Delta::parse(&d.to_string(), usize::MAX).unwrap();
        prop_assert_eq!(parsed.apply(&a).unwrap(), b);
    }

    /// Parsing and applying arbitrary delta text never panics.
    #[test]
    fn delta_parse_never_panics(text in "[=+\\-%0-9a-fA-F\\t😀é]{0,30}", target in "\\PC{0,10}") {
        if let Ok(d) = Delta::parse(&text, 1 << 20) {
            let _ = d.apply(&target);
        }
    }

    /// The fuzzy patcher never panics, whatever the texts (every Rust port measured did).
    #[test]
    fn fuzzy_patch_never_panics(base in "[ab😀 ]{0,80}", changed in "[abc😀 ]{0,80}", target in "[abd😀 ]{0,120}") {
        let b: Vec<char> = base.chars().collect();
        let c: Vec<char> = changed.chars().collect();
        let t: Vec<char> = target.chars().collect();
        let patches = dmp::patch_make(&b, &c, &FuzzySettings::default());
        let (out, _) = dmp::patch_apply(&patches, &t, &FuzzySettings::default());
        if t == b {
            prop_assert_eq!(out, c);
        }
    }

    /// Transforming exact changes: a unit survives exactly when neither side deleted it, both
    /// sides' inserted units appear exactly once, and both orders give the same text.
    #[test]
    fn transform_keeps_what_nobody_deleted(
        keep_a in prop::collection::vec(any::<bool>(), 8),
        keep_b in prop::collection::vec(any::<bool>(), 8),
        ins_a in 0usize..9, ins_b in 0usize..9,
    ) {
        let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
        let unit = |w: &str| format!("[{w}]");
        let base: String = words.iter().map(|w| unit(w)).collect();
        // Build each side's exact operation: delete units not kept, insert one unit.
        let side = |keep: &[bool], at: usize, ins: &str| -> Operation {
            let mut op = Operation::new();
            for (i, w) in words.iter().enumerate() {
                if i == at { op.insert(&unit(ins)); }
                if keep[i] { op.retain(unit(w).len()); } else { op.delete(unit(w).len()); }
            }
            if at == words.len() { op.insert(&unit(ins)); }
            op
        };
        let a = side(&keep_a, ins_a, "XRAY");
        let b = side(&keep_b, ins_b, "YANKEE");
        let (a2, b2) = Operation::transform(&a, &b).unwrap();
        let m = b2.apply(&a.apply(&base).unwrap()).unwrap();
        prop_assert_eq!(&m, &a2.apply(&b.apply(&base).unwrap()).unwrap());
        let got: Vec<&str> = m.split(['[', ']']).filter(|w| !w.is_empty()).collect();
        prop_assert_eq!(m.matches('[').count(), got.len(), "malformed {:?}", m);
        for (i, w) in words.iter().enumerate() {
            let expect = keep_a[i] && keep_b[i];
            prop_assert_eq!(got.iter().filter(|g| *g == w).count(), expect as usize, "{} in {:?}", w, m);
        }
        prop_assert_eq!(got.iter().filter(|g| **g == "XRAY").count(), 1, "{:?}", m);
        prop_assert_eq!(got.iter().filter(|g| **g == "YANKEE").count(), 1, "{:?}", m);
    }

    /// Random edits on both sides: transform converges, and compose equals applying in turn.
    #[test]
    fn transform_and_compose_are_consistent(
        base in "[a-c😀é ]{0,12}",
        ea in prop::collection::vec((0.0..=1.0f64, 0usize..3, "[x😀]{0,2}"), 0..4),
        eb in prop::collection::vec((0.0..=1.0f64, 0usize..3, "[y]{0,2}"), 0..4),
    ) {
        let build = |edits: &[(f64, usize, String)]| -> (Operation, String) {
            let mut text = base.clone();
            let mut op = Operation::identity(text.len());
            for (at, del, ins) in edits {
                let chars: Vec<(usize, char)> = text.char_indices().collect();
                let pos = ((chars.len() as f64) * at) as usize;
                let start = chars.get(pos).map_or(text.len(), |c| c.0);
                let end = chars.get(pos + del).map_or(text.len(), |c| c.0);
                let mut e = Operation::new();
                e.retain(start).insert(ins).delete(end - start).retain(text.len() - end);
                text = e.apply(&text).unwrap();
                op = op.compose(&e).unwrap();
            }
            (op, text)
        };
        let (a, ta) = build(&ea);
        let (b, tb) = build(&eb);
        prop_assert_eq!(a.apply(&base).unwrap(), ta.clone());
        let (a2, b2) = Operation::transform(&a, &b).unwrap();
        prop_assert_eq!(b2.apply(&ta).unwrap(), a2.apply(&tb).unwrap());
    }

    /// The fuzzy-patch contract: a change is applied whole or dropped whole, so nothing is
    /// duplicated or invented. Counted per character: the result holds a character at most as
    /// often as the text it was applied to plus what the change added of it.
    #[test]
    fn fuzzy_patch_never_duplicates_or_invents(
        base in "[abv ]{0,16}",
        changed_edits in prop::collection::vec((0.0..=1.0f64, 0usize..3, "[gvy]{0,2}"), 0..4),
        current_edits in prop::collection::vec((0.0..=1.0f64, 0usize..3, "[lv]{0,2}"), 0..4),
    ) {
        let edit = |edits: &[(f64, usize, String)]| -> String {
            let mut text: Vec<char> = base.chars().collect();
            for (at, del, ins) in edits {
                let pos = ((text.len() as f64) * at) as usize;
                let end = (pos + del).min(text.len());
                text.splice(pos..end, ins.chars());
            }
            text.into_iter().collect()
        };
        let (changed, current) = (edit(&changed_edits), edit(&current_edits));
        let out = dsync_engine::merge::merge(
            dsync_engine::MergeStrategy::FuzzyPatch,
            &FuzzySettings::default(),
            &base,
            &changed,
            &current,
        );
        let count = |t: &str, c: char| t.chars().filter(|&x| x == c).count();
        for c in out.text.chars() {
            let inserted = count(&changed, c).saturating_sub(count(&base, c));
            prop_assert!(
                count(&out.text, c) <= count(&current, c) + inserted,
                "{:?} duplicated: base {:?} changed {:?} current {:?} -> {:?}",
                c, base, changed, current, out.text
            );
            prop_assert!(current.contains(c) || changed.contains(c), "{:?} invented", c);
        }
        // Whole or nothing: a drop leaves the current text as it was.
        if out.patches_dropped > 0 {
            prop_assert_eq!(&out.text, &current);
        }
    }
}
