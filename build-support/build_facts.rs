// Build facts for both appliances' `--version`, included by sender/build.rs and receiver/build.rs:
// the git commit (`git rev-parse --short HEAD`, or "unknown" outside a git checkout or without
// git; `DIODE_GIT_COMMIT` overrides both, for builds from a source tarball) and the enabled cargo
// features.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build-support/build_facts.rs");
    println!("cargo:rerun-if-env-changed=DIODE_GIT_COMMIT");
    let commit = match std::env::var("DIODE_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=DIODE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=DIODE_FEATURES={}", features());
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The short commit, and `rerun-if-changed` on the files that move when it does: HEAD (a worktree
/// has its own), the branch HEAD names and packed-refs (both in the common git directory).
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let absolute = |path: String| {
        let path = PathBuf::from(path);
        if path.is_absolute() { path } else { Path::new(env!("CARGO_MANIFEST_DIR")).join(path) }
    };
    let git_dir = git(&["rev-parse", "--git-dir"]).map(absolute)?;
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(absolute).unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(branch));
    }
    // A path that does not exist would make cargo run this script on every build.
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}

/// Enabled features of this package, as cargo names them to build scripts (`CARGO_FEATURE_*`).
fn features() -> String {
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(name, _)| name.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    features.sort();
    if features.is_empty() { "none".to_owned() } else { features.join(",") }
}
