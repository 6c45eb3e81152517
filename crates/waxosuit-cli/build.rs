//! Embeds the project templates of `waxosuit new` (the repository's
//! `templates/<lang>/`) in the binary, so scaffolding needs neither the
//! source tree nor the network.
//!
//! Writes `$OUT_DIR/templates.rs`: one `Template` per language directory,
//! each file as (path relative to the language directory, `include_str!`
//! of it). `src/new.rs` includes it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Output of trying a template in place (`npm ci`, `cargo build`, `npm run
/// build`), never template content.
const SKIPPED_DIRS: &[&str] = &["node_modules", "target", "build"];

/// What trying a template in place leaves that must never be embedded: the
/// keys its README generates (`keys/`, seeds in `*.nk`). Found, they stop
/// the build: skipping them quietly would leave seeds in the source tree.
const SECRET_DIRS: &[&str] = &["keys"];
const SECRET_SUFFIX: &str = ".nk";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let templates = manifest_dir.join("../../templates");
    // A directory makes cargo watch everything under it, so a file added to
    // a template (or a new language) is picked up too.
    println!("cargo:rerun-if-changed={}", templates.display());

    let mut langs: Vec<PathBuf> = read_dir_sorted(&templates)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    langs.retain(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });

    let mut code = String::from("&[\n");
    for lang in &langs {
        let name =
            lang.file_name().unwrap().to_str().unwrap_or_else(|| {
                panic!("template directory {} is not valid UTF-8", lang.display())
            });
        let mut files = Vec::new();
        collect(lang, lang, &mut files);
        writeln!(code, "    Template {{ lang: {name:?}, files: &[").unwrap();
        for (relative, absolute) in files {
            writeln!(
                code,
                "        ({relative:?}, include_str!({:?})),",
                absolute.display().to_string()
            )
            .unwrap();
        }
        code.push_str("    ] },\n");
    }
    code.push(']');

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("run by cargo")).join("templates.rs");
    fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "cannot list the templates of `waxosuit new` in {}: {e}",
            dir.display()
        )
    });
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    // Sorted: the generated file, and so the binary, must not depend on
    // the order the file system lists entries in.
    paths.sort();
    paths
}

/// Every file under `dir`, as (`/`-separated path relative to `root`,
/// canonical absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for path in read_dir_sorted(dir) {
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let file_type = fs::symlink_metadata(&path).unwrap().file_type();
        let secret = if file_type.is_dir() {
            SECRET_DIRS.contains(&file_name.as_str())
        } else {
            file_name.ends_with(SECRET_SUFFIX)
        };
        assert!(
            !secret,
            "{} looks like key material (a keys directory or an nkeys seed file) inside the \
             templates of `waxosuit new`; it would be compiled into the binary and copied into \
             every new project. Delete it (and any build output) from templates/ and build again.",
            path.display()
        );
        if file_type.is_dir() {
            if !SKIPPED_DIRS.contains(&file_name.as_str()) {
                collect(root, &path, files);
            }
            continue;
        }
        // A link could point outside the repository; templates hold plain files.
        assert!(
            file_type.is_file(),
            "template entry {} is not a regular file",
            path.display()
        );
        let relative = path.strip_prefix(root).unwrap();
        let relative: Vec<&str> = relative
            .components()
            .map(|c| {
                c.as_os_str().to_str().unwrap_or_else(|| {
                    panic!("template path {} is not valid UTF-8", path.display())
                })
            })
            .collect();
        // `include_str!` would fail too, but without naming the file's purpose.
        if let Err(e) = std::str::from_utf8(&fs::read(&path).unwrap()) {
            panic!(
                "template file {} is not UTF-8 text ({e}); templates are text with placeholders",
                path.display()
            );
        }
        files.push((relative.join("/"), fs::canonicalize(&path).unwrap()));
    }
}
