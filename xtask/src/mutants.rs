//! `cargo xtask mutants`: mutation testing of i386-mm's call-site files with cargo-mutants.
//!
//! The files are listed in `.cargo/mutants.toml`. Each mutant is tested against i386-mm's
//! tests (lib and integration tests: the hook-order, TLB, bad-input, fault, kernel-range and
//! oracle tests, the last under native, VMI and Xen), built without debug info (a hang past cargo-mutants' timeout, set from the unmutated
//! run, counts as caught) and with the
//! oracle's proptest cut to `MM_PROPTEST_CASES` cases per mode and backend from one fixed seed
//! (`PROPTEST_RNG_SEED`), two at a time.
//! A mutant the tests miss must be listed, with the reason it changes no behaviour, in
//! `mutants-equivalent.md`; any other miss fails the command.

use crate::{cargo, root, run};
use std::collections::BTreeMap;
use std::path::Path;

/// Proptest cases per mode and backend in a mutant's test run.
const PROPTEST_CASES: &str = "16";

/// The least time, in seconds, a mutant's test run gets before it counts as a hang.
const MIN_TEST_TIMEOUT_S: &str = "45";

/// The proptest seed of every mutant's test run: the same cases run for every mutant and on
/// every machine, so the verdict does not change from one run to the next.
const PROPTEST_SEED: &str = "1836408680";

/// Installs cargo-mutants with `cargo install` when `cargo mutants` is missing.
fn ensure_cargo_mutants() -> Result<(), String> {
    let present = cargo().args(["mutants", "--version"]).output().is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!("xtask: cargo-mutants is missing; installing it (cargo install cargo-mutants)");
    run(cargo().args(["install", "--locked", "cargo-mutants"]))
}

/// A mutant's name without its line and column (`file: replace ... in fn`), so the list of
/// equivalent mutants survives edits elsewhere in the file.
fn key(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    let file = parts.next().unwrap_or("");
    let _line = parts.next();
    let _col = parts.next();
    format!("{file}:{}", parts.next().unwrap_or("").trim_end())
}

/// The equivalent mutants: each line `` - `key`: reason `` of `mutants-equivalent.md`, with
/// how many mutants share the key.
fn equivalents(path: &Path) -> Result<BTreeMap<String, usize>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("- `") else { continue };
        let Some((k, reason)) = rest.split_once("`:") else {
            return Err(format!("{}: no reason given: {l}", path.display()));
        };
        if reason.trim().is_empty() {
            return Err(format!("{}: no reason given: {l}", path.display()));
        }
        *out.entry(k.to_string()).or_insert(0) += 1;
    }
    Ok(out)
}

fn lines(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Runs cargo-mutants and prints caught / missed / equivalent; fails on a missed mutant that
/// is not listed as equivalent.
pub fn mutants() -> Result<(), String> {
    ensure_cargo_mutants()?;
    let out_dir = root().join("target").join("mutants");
    let mut c = cargo();
    c.env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("MM_PROPTEST_CASES", PROPTEST_CASES)
        .env("PROPTEST_RNG_SEED", PROPTEST_SEED)
        .args(["mutants", "--no-shuffle", "--jobs", "2", "--test-package", "i386-mm"])
        // A test run slower than this is a hang (counted as caught): far above the unmutated
        // run (3 s on two idle cores), so a busy machine does not turn a slow run into a catch.
        .args(["--minimum-test-timeout", MIN_TEST_TIMEOUT_S, "--output"]);
    c.arg(&out_dir).args(["--", "--tests"]);
    // cargo-mutants exits non-zero when a mutant is missed: the verdict is made below.
    let _ = run(&mut c);
    let res = out_dir.join("mutants.out");
    let caught = lines(&res, "caught.txt");
    let timeouts = lines(&res, "timeout.txt");
    let missed = lines(&res, "missed.txt");
    let unviable = lines(&res, "unviable.txt");
    if caught.is_empty() && missed.is_empty() {
        return Err(format!("no mutant outcomes in {}", res.display()));
    }
    let mut equivalent = equivalents(&root().join("mutants-equivalent.md"))?;
    let mut not_equivalent = vec![];
    let mut eq = 0;
    for m in &missed {
        match equivalent.get_mut(&key(m)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                eq += 1;
            }
            _ => not_equivalent.push(m.clone()),
        }
    }
    for (k, n) in &equivalent {
        if *n > 0 {
            println!("mutants: listed as equivalent but not missed (caught, or gone): {k}");
        }
    }
    for m in &not_equivalent {
        println!("MISSED  {m}");
    }
    println!(
        "mutants: {} caught ({} by a test failing, {} by a hang), {} missed, {eq} equivalent, {} unviable",
        caught.len() + timeouts.len(),
        caught.len(),
        timeouts.len(),
        not_equivalent.len(),
        unviable.len()
    );
    if not_equivalent.is_empty() {
        Ok(())
    } else {
        Err(format!("{} mutant(s) missed by the tests", not_equivalent.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn a_mutant_key_drops_line_and_column() {
        assert_eq!(
            key("i386-mm/src/kernel.rs:346:46: replace | with ^ in KernelMm<M, B, P, C>::for_each_dir_entry"),
            "i386-mm/src/kernel.rs: replace | with ^ in KernelMm<M, B, P, C>::for_each_dir_entry"
        );
    }
}
