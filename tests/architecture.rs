//! Keeps `ARCHITECTURE.md`'s code map honest: every path it names exists, and every module
//! file under `src/` and `actors/src/` is named in it.
//!
//! How the map is read: inside the fenced block under `## Code map`, a line indented by fewer
//! than [`DESCRIPTION_INDENT`] spaces starts an entry. Its first column (up to two spaces in a
//! row) holds one or more comma-separated paths, each relative to the nearest less-indented
//! directory entry above it (two spaces per level). Files named in a directory entry's
//! description (`gcra.rs (the math…)`) belong to that directory. A directory entry covers its
//! own `mod.rs` (and a crate root's `lib.rs`); `tests.rs` unit-test modules need no entry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lines indented at least this far continue the previous entry's description.
const DESCRIPTION_INDENT: usize = 12;

/// The roots whose module files must all appear in the map.
const MODULE_ROOTS: &[&str] = &["src", "actors/src"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced block under `## Code map`, each line with its line number in the file.
fn code_map(text: &str) -> Vec<(usize, &str)> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .skip_while(|(_, line)| *line != "## Code map");
    assert!(
        lines.next().is_some(),
        "ARCHITECTURE.md has a `## Code map` section"
    );
    let mut lines = lines.skip_while(|(_, line)| !line.starts_with("```"));
    lines.next();
    lines
        .take_while(|(_, line)| !line.starts_with("```"))
        .collect()
}

/// Every path the map names (as written, relative to the repository root), with the line of
/// ARCHITECTURE.md that names it.
fn named_paths(map: &[(usize, &str)]) -> Vec<(String, usize)> {
    let mut named = Vec::new();
    // The directory entry at each depth, and the last entry (for its description lines).
    let mut parents: Vec<String> = Vec::new();
    let mut last_directory: Option<String> = None;
    for &(number, line) in map {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        let description = if indent >= DESCRIPTION_INDENT {
            trimmed
        } else {
            let depth = indent / 2;
            parents.truncate(depth);
            let (column, description) = match trimmed.find("  ") {
                Some(at) => (&trimmed[..at], &trimmed[at..]),
                None => (trimmed, ""),
            };
            let base = parents.last().cloned().unwrap_or_default();
            last_directory = None;
            for name in column.split(", ").map(str::trim).filter(|n| !n.is_empty()) {
                let path = format!("{base}{name}");
                if path.ends_with('/') {
                    last_directory = Some(path.clone());
                }
                named.push((path, number));
            }
            if let Some(directory) = &last_directory {
                parents.push(directory.clone());
            }
            description
        };
        if let Some(directory) = &last_directory {
            for file in rust_files_in(description) {
                named.push((format!("{directory}{file}"), number));
            }
        }
    }
    named
}

/// `name.rs` tokens in a description (possibly with a relative folder, `grpc/convert.rs`).
fn rust_files_in(description: &str) -> Vec<&str> {
    description
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-')))
        .map(|token| token.trim_end_matches('.'))
        .filter(|token| token.ends_with(".rs") && token.len() > 3 && !token.starts_with('.'))
        .collect()
}

/// Every `.rs` file under `dir`, as a path relative to the repository root.
fn rust_files_under(root: &Path, dir: &str, found: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{dir}/{name}");
        if entry.file_type().expect("file type").is_dir() {
            rust_files_under(root, &path, found);
        } else if name.ends_with(".rs") {
            found.insert(path);
        }
    }
}

/// Whether the map accounts for `file`: named itself, or the `mod.rs`/`lib.rs` of a named
/// directory, or a unit-test module.
fn covered(file: &str, named: &BTreeSet<String>) -> bool {
    if named.contains(file) {
        return true;
    }
    let (parent, name) = file.rsplit_once('/').unwrap_or(("", file));
    match name {
        "tests.rs" => true,
        "mod.rs" => named.contains(&format!("{parent}/")),
        // A crate root is covered by its crate's folder (`src/` or `actors/src/`).
        "lib.rs" => named.contains(&format!("{parent}/")),
        _ => false,
    }
}

#[test]
fn the_code_map_names_every_module_and_nothing_that_is_gone() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let map = code_map(&text);
    let named = named_paths(&map);

    let stale: Vec<String> = named
        .iter()
        .filter(|(path, _)| !root.join(path).exists())
        .map(|(path, line)| format!("  {path}   (ARCHITECTURE.md line {line})"))
        .collect();

    let names: BTreeSet<String> = named.into_iter().map(|(path, _)| path).collect();
    let mut files = BTreeSet::new();
    for dir in MODULE_ROOTS {
        rust_files_under(&root, dir, &mut files);
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|file| !covered(file, &names))
        .map(|file| format!("  {file}"))
        .collect();

    let mut problems = String::new();
    if !missing.is_empty() {
        problems += &format!(
            "module files ARCHITECTURE.md's code map does not name (add a line for each, or name \
             it in its folder's description):\n{}\n",
            missing.join("\n")
        );
    }
    if !stale.is_empty() {
        problems += &format!(
            "paths ARCHITECTURE.md's code map names that do not exist (moved or removed?):\n{}\n",
            stale.join("\n")
        );
    }
    assert!(problems.is_empty(), "\n{problems}");
}

/// The reader itself: nesting, comma lists, description files and continuation lines.
#[test]
fn the_map_reader_resolves_nesting_and_descriptions() {
    let map = [
        "src/                      the binary",
        "  main.rs, cli.rs         entry points",
        "  config/                 raw.rs (what files say), env.rs",
        "                          (names); load.rs, see also 1.5 and x.",
        "    validate/             checks",
        "  handlers/admin.rs       /admin",
        "actors/src/               the core",
        "  pool/                   handle.rs: the handle",
        "  ewma.rs                 not a folder: load.rs here is prose",
    ];
    let map: Vec<(usize, &str)> = map.into_iter().enumerate().collect();
    let named: Vec<String> = named_paths(&map).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        named,
        [
            "src/",
            "src/main.rs",
            "src/cli.rs",
            "src/config/",
            "src/config/raw.rs",
            "src/config/env.rs",
            "src/config/load.rs",
            "src/config/validate/",
            "src/handlers/admin.rs",
            "actors/src/",
            "actors/src/pool/",
            "actors/src/pool/handle.rs",
            "actors/src/ewma.rs",
        ]
    );
    let names: BTreeSet<String> = named.into_iter().collect();
    assert!(covered("src/config/validate/mod.rs", &names));
    assert!(covered("actors/src/lib.rs", &names));
    assert!(covered("src/pipeline/grpc/convert/tests.rs", &names));
    assert!(!covered("src/pipeline/mod.rs", &names));
    assert!(!covered("src/config/validate/auth.rs", &names));
}
