//! Build-script support for the fixture crates whose tests need artifacts
//! built by a *nested* cargo: wasm guests (`guests/`, `guests-legacy/`,
//! `examples/`) and native plugins (`plugins/`).
//!
//! The nested cargo runs with an environment stripped of everything the outer
//! cargo (or clippy, or a wrapper like sccache) exported: those variables
//! describe the *outer* build and would make the inner one use the wrong
//! target directory, flags, wrapper or jobserver. Its target directory sits
//! beside the outer one (derived from `OUT_DIR`, never inside the sources),
//! so repeated builds are incremental and nothing is written to the tree.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables the outer build sets that must not leak into the nested build.
const STRIPPED_VARS: &[&str] = &[
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_RUSTC_CURRENT_DIR",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_LINKER",
    "MAKEFLAGS",
    "MFLAGS",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

/// Prefixes of variable families the outer build sets (`CARGO_PKG_NAME`,
/// `CARGO_CFG_TARGET_OS`, `CARGO_FEATURE_*`, `CARGO_BUILD_TARGET`, ...).
const STRIPPED_PREFIXES: &[&str] = &[
    "CARGO_BUILD_",
    "CARGO_PKG_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PROFILE_",
    "CARGO_TARGET_",
    "CARGO_ENCODED_",
    "DEP_",
];

/// An environment variable cargo sets for build scripts.
pub fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set; run this through cargo"))
}

/// The repository root: two levels above a crate in `crates/`.
pub fn repo_root(manifest_dir: &Path) -> Result<PathBuf, String> {
    manifest_dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| "cannot find the repository root above CARGO_MANIFEST_DIR".to_string())
}

/// The outer target directory: `OUT_DIR` is
/// `<target-dir>/[<triple>/]<profile>/build/<pkg>-<hash>/out`.
pub fn target_root(out_dir: &Path) -> Result<PathBuf, String> {
    let layout = || format!("unexpected OUT_DIR layout: {}", out_dir.display());
    let build_dir = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .ok_or_else(layout)?;
    let mut root = build_dir
        .parent()
        .and_then(Path::parent)
        .ok_or_else(layout)?;
    // A cross build adds `<triple>/` between the target dir and the profile.
    if let Ok(target) = env::var("TARGET")
        && root.file_name().is_some_and(|n| n == target.as_str())
        && let Some(parent) = root.parent()
    {
        root = parent;
    }
    Ok(root.to_path_buf())
}

/// Emits `rerun-if-changed` for every source file under `dir`, skipping build output.
pub fn rerun_if_changed_tree(dir: &Path) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_tree(&path)?;
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Ok(())
}

/// `cargo build --release --locked --target <target>` of the workspace at
/// `manifest`, into `target_dir`, with a clean environment.
pub fn cargo_build(manifest: &Path, target: &str, target_dir: &Path) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", target])
        .arg("--manifest-path")
        .arg(manifest);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if STRIPPED_VARS.contains(&key) || STRIPPED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    // Set after the sweep above removed the outer value.
    cmd.env("CARGO_TARGET_DIR", target_dir);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo for {}: {e}", manifest.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the workspace {} failed ({status}); see the cargo output above",
            manifest.display()
        ))
    }
}
