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

/// The engine's top-level modules each file under `engine/src` belongs to, and the modules it
/// names through `crate::` (test modules left out).
fn engine_module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = root().join("engine/src");
    let mut graph = std::collections::BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .expect("engine/src is readable")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).expect("under engine/src");
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or("")
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let deps: &mut std::collections::BTreeSet<String> =
                graph.entry(top.clone()).or_default();
            deps.extend(crate_refs(code).into_iter().filter(|d| *d != top));
        }
    }
    graph
}

/// Module names after `crate::`, including those inside `use crate::{a, b::c}`.
fn crate_refs(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            out.extend(inner.split(',').map(|p| ident(p.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    // Items re-exported at the crate root (`crate::EngineError`) are not modules.
    out.retain(|m| m.chars().next().is_some_and(|c| c.is_lowercase()));
    out
}

/// A circle in a module graph, if there is one.
fn circle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        g: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

#[test]
fn engine_modules_import_in_no_circle() {
    let graph = engine_module_graph();
    assert!(graph["op"].contains("diff") && graph["delta"].contains("op"));
    assert_eq!(circle(&graph), None, "{graph:#?}");
    // The check sees a planted circle.
    let mut planted = graph.clone();
    planted.get_mut("op").unwrap().insert("delta".into());
    assert_eq!(
        circle(&planted).map(|c| c.len()),
        Some(3),
        "op → delta → op is a circle"
    );
}

#[test]
fn no_source_file_of_the_engine_or_the_simulator_passes_800_lines() {
    let mut long = Vec::new();
    for (path, text) in text_files() {
        let rel = path.strip_prefix(root()).unwrap_or(&path).to_path_buf();
        let under = rel.starts_with("engine/src") || rel.starts_with("sim/src");
        let lines = text.lines().count();
        if under && rel.extension().is_some_and(|e| e == "rs") && lines > 800 {
            long.push(format!("{} has {lines} lines", rel.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these along their concerns: {long:?}"
    );
}
