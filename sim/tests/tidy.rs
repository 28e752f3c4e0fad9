//! Repository hygiene, in the manner of rust-analyzer's tidy tests: checks over the tracked
//! text files that keep a fresh clone self-contained.

use std::path::{Path, PathBuf};

/// The repository root (this crate lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the sim crate sits inside the repository")
        .to_path_buf()
}

/// Every source, script and documentation file of the repository (outside build output,
/// VCS data and hidden folders but `.ci`), in path order.
fn text_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && name != ".ci" {
                continue;
            }
            if p.is_dir() {
                if name != "target" && name != "node_modules" && name != "swarm-failures" {
                    walk(&p, out);
                }
            } else {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root(), &mut paths);
    paths
        .into_iter()
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            matches!(
                ext,
                "rs" | "md" | "toml" | "ron" | "sh" | "py" | "html" | "js"
            ) || p
                .parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == ".ci")
        })
        .filter_map(|p| {
            let text = String::from_utf8(std::fs::read(&p).ok()?).ok()?;
            Some((p, text))
        })
        .collect()
}

/// Lines of `files` that refer to the folder that sat beside the checkout where the project
/// was first written, as `path:line: text`.
fn outside_references(files: &[(PathBuf, String)]) -> Vec<String> {
    // Spelled in pieces so this file does not match itself.
    let needles = [
        concat!("..", "/shared"),
        concat!("shared", "/guide"),
        concat!("shared", "/traces"),
    ];
    let mut hits = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle)) {
                hits.push(format!(
                    "{}:{}: {}",
                    path.strip_prefix(root()).unwrap_or(path).display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    hits
}

/// Markdown file names (`name.md`) that `files` cite but the repository does not hold.
fn missing_citations(files: &[(PathBuf, String)]) -> Vec<String> {
    let held: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str().map(str::to_string))
        .collect();
    let mut missing = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find(".md") {
                let before = &rest[..i];
                let name_start = before
                    .char_indices()
                    .rev()
                    .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .map_or(0, |(j, c)| j + c.len_utf8());
                let after = rest[i + 3..].chars().next();
                let stem = &before[name_start..];
                if !stem.is_empty() && !after.is_some_and(|c| c.is_ascii_alphanumeric()) {
                    let name = format!("{stem}.md");
                    if !held.contains(&name) {
                        missing.push(format!(
                            "{}:{}: {name}",
                            path.strip_prefix(root()).unwrap_or(path).display(),
                            n + 1
                        ));
                    }
                }
                rest = &rest[i + 3..];
            }
        }
    }
    missing
}

/// Users clone this repository alone: nothing in it may read (or send readers to) the
/// folder that sat beside the checkout where it was first written.
#[test]
fn nothing_refers_outside_the_repository() {
    let hits = outside_references(&text_files());
    assert!(
        hits.is_empty(),
        "files refer to a folder outside the repository (copy what is needed into it):\n{}",
        hits.join("\n")
    );
}

/// Every `NAME.md` that code or docs cite is a file of the repository.
#[test]
fn cited_documents_exist() {
    let mut files = text_files();
    // This file names made-up documents on purpose.
    files.retain(|(p, _)| !p.ends_with("sim/tests/tidy.rs"));
    let missing = missing_citations(&files);
    assert!(
        missing.is_empty(),
        "files cite documents the repository does not hold:\n{}",
        missing.join("\n")
    );
}

/// Both checks see a planted offence (so they can fail), and read the real files.
#[test]
fn the_checks_see_planted_offences() {
    let planted = vec![
        (
            root().join("x.rs"),
            format!("// see {}/guide/protocol.md", concat!("..", "/shared")),
        ),
        (
            root().join("y.rs"),
            "// pitfall 3 of nowhere.md".to_string(),
        ),
        (root().join("README.md"), "fine".to_string()),
        (root().join("docs/protocol.md"), "held".to_string()),
    ];
    assert_eq!(outside_references(&planted).len(), 1);
    assert_eq!(missing_citations(&planted), vec!["y.rs:1: nowhere.md"]);
    assert!(text_files()
        .iter()
        .any(|(p, t)| p.ends_with("README.md") && t.contains("cargo test --workspace")));
}

/// The simulator has no unseeded random source to call: `rand` is built without its default
/// features, so `rand::rng()`, `rand::random()` and `SeedableRng::from_os_rng` do not exist in
/// it (only seeded `rand_chacha` streams). This keeps that true.
#[test]
fn rand_is_built_without_an_unseeded_source() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("rand ="))
        .expect("rand in [workspace.dependencies]");
    assert!(line.contains("default-features = false"), "{line}");
    for feature in ["thread_rng", "os_rng", "std_rng", "getrandom"] {
        assert!(!line.contains(feature), "{line} enables {feature}");
    }
    for krate in ["engine", "sim"] {
        let m = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        for l in m.lines().filter(|l| l.trim_start().starts_with("rand")) {
            assert!(
                !l.contains("features") && !l.contains("default-features = true"),
                "{krate}/Cargo.toml: {l}"
            );
        }
    }
}
