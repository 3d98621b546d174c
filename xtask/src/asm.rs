//! `cargo xtask asm-check`: the zero-cost claim, measured.
//!
//! Builds the `benches` probes (i386-mm call sites over the native backend) for the kernel's
//! target twice, with the `paravirt` feature and without it, and compares the assembly of every
//! probe after normalising local labels. Identical listings mean the hooks, the `pv` call-site
//! layer and the backend's defaults cost nothing on bare metal.

use crate::{cargo, root, run};
use std::collections::BTreeMap;
use std::path::Path;

const TARGET: &str = "i686-unknown-linux-gnu";

fn build(features: &[&str], dir: &str) -> Result<String, String> {
    let target_dir = root().join("target").join("asm-check").join(dir);
    let mut c = cargo();
    c.env_remove("RUSTFLAGS").env("CARGO_TARGET_DIR", &target_dir).args([
        "rustc",
        "-p",
        "benches",
        "--lib",
        "--release",
        "--target",
        TARGET,
        "--no-default-features",
    ]);
    if !features.is_empty() {
        c.args(["--features", &features.join(",")]);
    }
    c.args(["--", "--emit=asm", "-C", "debuginfo=0", "-C", "relocation-model=static"]);
    run(&mut c)?;
    let deps = target_dir.join(TARGET).join("release").join("deps");
    newest_asm(&deps)
}

fn newest_asm(deps: &Path) -> Result<String, String> {
    let mut best: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    for e in std::fs::read_dir(deps).map_err(|e| format!("{}: {e}", deps.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("benches-") && name.ends_with(".s") {
            let t = p.metadata().and_then(|m| m.modified()).map_err(|e| e.to_string())?;
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, p));
            }
        }
    }
    let (_, p) = best.ok_or_else(|| format!("no benches-*.s in {}", deps.display()))?;
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Removes the crate-hash suffix of mangled symbols (`17h0123456789abcdefE`): the two builds
/// have different feature sets, so their crates hash differently.
fn strip_hashes(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"17h")
            && i + 20 <= b.len()
            && b[i + 19] == b'E'
            && b[i + 3..i + 19].iter().all(u8::is_ascii_hexdigit)
        {
            out.push_str("17hHASHE");
            i += 20;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Splits an assembly listing into functions (label → normalised instruction lines).
fn functions(asm: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(String, Vec<String>)> = None;
    let mut aliases = Vec::new();
    for line in asm.lines() {
        let t = line.trim();
        // Identical functions are emitted once, the others as `alias = original`.
        if let Some((alias, original)) = t.split_once(" = ") {
            if !alias.starts_with('.') {
                aliases.push((alias.trim().to_string(), original.trim().to_string()));
                continue;
            }
        }
        if let Some(name) = t.strip_suffix(':').filter(|n| !n.starts_with('.') && !n.contains(' ')) {
            if let Some((n, body)) = cur.take() {
                out.insert(n, body);
            }
            cur = Some((name.to_string(), Vec::new()));
            continue;
        }
        let Some((_, body)) = cur.as_mut() else { continue };
        if t.is_empty() || t.starts_with('#') || t.starts_with(".cfi") || t.starts_with(".p2align") {
            continue;
        }
        if t.starts_with(".Lfunc_end") {
            if let Some((n, body)) = cur.take() {
                out.insert(n, body);
            }
            continue;
        }
        body.push(strip_hashes(t.split('#').next().unwrap_or("").trim()));
    }
    if let Some((n, body)) = cur.take() {
        out.insert(n, body);
    }
    for (alias, original) in aliases {
        if let Some(body) = out.get(&original).cloned() {
            out.insert(alias, body);
        }
    }
    // Local labels are numbered per file: rename them in order of appearance per function.
    for body in out.values_mut() {
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for l in body.iter_mut() {
            let mut s = String::new();
            for tok in l.split_inclusive(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
                let (word, sep) = match tok.char_indices().last() {
                    Some((i, c)) if !(c.is_alphanumeric() || c == '_' || c == '.') => tok.split_at(i),
                    _ => (tok, ""),
                };
                if word.starts_with(".L") {
                    let n = names.len();
                    let alias = names.entry(word.to_string()).or_insert_with(|| format!(".L{n}"));
                    s.push_str(alias);
                } else {
                    s.push_str(word);
                }
                s.push_str(sep);
            }
            *l = s;
        }
    }
    out
}

/// Builds both variants and compares every probe.
pub fn asm_check() -> Result<(), String> {
    let probes: Vec<String> = {
        let src = std::fs::read_to_string(root().join("benches/src/lib.rs")).map_err(|e| e.to_string())?;
        src.lines()
            .filter_map(|l| l.trim().strip_prefix("probe_"))
            .filter_map(|l| l.split('(').next())
            .map(|n| format!("probe_{n}"))
            .collect()
    };
    let on = functions(&build(&["paravirt"], "paravirt")?);
    let off = functions(&build(&[], "no-paravirt")?);
    println!("\nprobe                                  paravirt  no-paravirt  (instructions)");
    let mut differ = Vec::new();
    for p in &probes {
        let a = on.get(p).ok_or_else(|| format!("{p} missing from the paravirt build"))?;
        let b = off.get(p).ok_or_else(|| format!("{p} missing from the no-paravirt build"))?;
        let count = |v: &Vec<String>| v.iter().filter(|l| !l.ends_with(':') && !l.starts_with('.')).count();
        let same = a == b;
        println!("{p:<38} {:>8}  {:>11}  {}", count(a), count(b), if same { "identical" } else { "DIFFERENT" });
        if !same {
            differ.push(p.clone());
        }
    }
    for (ops, probe) in
        [("ops_pmd_populate_2level", "probe_pmd_populate_2level"), ("ops_pgd_ctor_2level", "probe_pgd_ctor_2level")]
    {
        let count = |v: Option<&Vec<String>>| {
            v.map_or(0, |v| v.iter().filter(|l| !l.ends_with(':') && !l.starts_with('.')).count())
        };
        let calls = |v: Option<&Vec<String>>| v.map_or(0, |v| v.iter().filter(|l| l.starts_with("call")).count());
        println!(
            "baseline {ops}: {} instructions, {} calls (static native: {}, {} calls)",
            count(on.get(ops)),
            calls(on.get(ops)),
            count(on.get(probe)),
            calls(on.get(probe))
        );
    }
    if differ.is_empty() {
        println!("asm-check: {} probes, machine code identical with and without paravirt hooks", probes.len());
        Ok(())
    } else {
        Err(format!("generated code differs for {}", differ.join(", ")))
    }
}
