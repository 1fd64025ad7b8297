//! The shape of the code, checked: layers point down only (ARCHITECTURE.md), the agent's
//! library never links the simulator, no decision parses stored text, and a source file
//! longer than 400 lines says at its top why.

use std::path::{Path, PathBuf};

/// The library's top-level modules by layer: a module may use its own layer and those
/// below (a lower number), never one above.
const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("secret", 1),
    ("clock", 1),
    ("logging", 1),
    ("tls", 1),
    ("process", 1),
    ("metrics", 1),
    ("output", 1),
    ("terminal", 1),
    ("runtime", 1),
    ("config", 2),
    ("redact", 2),
    ("store", 3),
    ("server_api", 3),
    ("quota", 4),
    ("alert", 4),
    ("heartbeat", 4),
    ("scheduler", 4),
    ("lead", 4),
    ("jobs", 5),
    ("http", 5),
    ("report", 5),
    ("agent", 6),
    ("app", 6),
    ("cli", 6),
    ("commands", 6),
];

/// Source files of the binary only (they may use the simulator).
const BINARY_ONLY: &[&str] = &["main.rs", "demo", "sim_command.rs"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's files, with the top-level module each belongs to.
fn library_files() -> Vec<(String, PathBuf, String)> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&src).ok()?.to_path_buf();
            let first = relative
                .components()
                .next()?
                .as_os_str()
                .to_str()?
                .to_string();
            if BINARY_ONLY.contains(&first.as_str()) || first == "lib.rs" {
                return None;
            }
            let module = first.trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).ok()?;
            Some((module, relative, text))
        })
        .collect()
}

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level modules a file's code (not its comments) names as `crate::<module>`.
fn crate_paths(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| {
            line.match_indices("crate::").map(move |(at, _)| {
                line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
        })
        .collect()
}

#[test]
fn every_library_module_has_a_layer() {
    for (module, path, _) in library_files() {
        assert!(
            layer(&module).is_some(),
            "{}: module {module} is in no layer of tests/architecture.rs (and ARCHITECTURE.md)",
            path.display()
        );
    }
}

#[test]
fn imports_point_down_only() {
    let mut upward = Vec::new();
    for (module, path, text) in library_files() {
        let Some(own) = layer(&module) else { continue };
        for used in crate_paths(&text) {
            if let Some(theirs) = layer(&used)
                && theirs > own
            {
                upward.push(format!(
                    "{} ({module}, layer {own}) uses crate::{used} (layer {theirs})",
                    path.display()
                ));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_vocabulary_depends_on_nothing_inside_the_crate() {
    for (module, path, text) in library_files() {
        if module == "model" {
            let used: Vec<String> = crate_paths(&text)
                .into_iter()
                .filter(|m| m != "model")
                .collect();
            assert!(used.is_empty(), "{}: uses {used:?}", path.display());
        }
    }
}

#[test]
fn the_library_does_not_use_the_simulator() {
    for (_, path, text) in library_files() {
        assert!(
            !text.contains("keywarden_sim"),
            "{}: the agent's library must not use the simulator (only the binary's demo and sim)",
            path.display()
        );
    }
    let manifest = std::fs::read_to_string(root().join("sim/Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("keywarden ="),
        "the simulator must not depend on keywarden"
    );
}

#[test]
fn no_decision_parses_stored_text() {
    // The acceptance grep of issue 12.
    let patterns = ["split(':')", "split_once(\": \")", "nth(1)"];
    let mut found = Vec::new();
    for (module, path, text) in library_files() {
        if !["jobs", "quota", "store"].contains(&module.as_str()) {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            if patterns.iter().any(|p| line.contains(p)) {
                found.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn long_files_say_why_at_the_top() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("sim/src"), &mut files);
    let mut silent = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        if text.lines().count() <= 400 {
            continue;
        }
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        if !header.contains("Longer than 400 lines") {
            silent.push(path.display().to_string());
        }
    }
    assert!(
        silent.is_empty(),
        "over 400 lines without a top comment saying why: {silent:?}"
    );
}

/// The words after each `marker` in `text` (table or column names).
fn names_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .map(|(at, _)| {
            text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn the_state_store_doc_names_every_table_and_added_column() {
    let schema = std::fs::read_to_string(root().join("src/store/schema.rs")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/state-store.md")).unwrap();
    let mut names = names_after(&schema, "CREATE TABLE ");
    names.extend(names_after(&schema, "ADD COLUMN "));
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/state-store.md does not mention {missing:?}"
    );
}
