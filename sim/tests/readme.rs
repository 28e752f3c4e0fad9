//! The README's sample outputs are the real ones: each marked block is compared with what the
//! simulator prints today.

use std::process::Command;

/// The fenced block that follows `<!-- readme-sample: NAME ... -->` in the README.
fn sample(name: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the repository root");
    let marker = format!("<!-- readme-sample: {name} ");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no sample marked {name:?}"));
    let block = &readme[start..];
    let open = block
        .find("```\n")
        .expect("a fenced block after the marker")
        + 4;
    let close = block[open..].find("```").expect("the block is closed") + open;
    block[open..close].lines().map(str::to_string).collect()
}

fn sim(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_dsync-sim"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_first_commands_output_is_the_one_shown() {
    let shown = sample("partition-summary");
    let real = sim(&["../scenarios/partition.ron"]);
    assert_eq!(
        shown.len(),
        real.len(),
        "shown:\n{shown:#?}\nreal:\n{real:#?}"
    );
    for (s, r) in shown.iter().zip(&real) {
        if s.starts_with("speed ") {
            // Wall time varies; the line's form does not.
            let simulated = s.split(" simulated s in ").next().unwrap_or("");
            assert!(
                r.starts_with(&format!("{simulated} simulated s in ")),
                "{r}"
            );
        } else {
            assert_eq!(s, r);
        }
    }
}

#[test]
fn the_trace_lines_shown_are_in_the_real_trace() {
    let shown = sample("partition-full");
    assert!(shown.len() >= 5);
    let real = sim(&["../scenarios/partition.ron", "--trace", "full"]);
    for line in shown {
        assert!(real.contains(&line), "not in the real trace: {line}");
    }
}
