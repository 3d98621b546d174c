//! `cargo xtask bench`: the criterion benches of `benches/`, each variant's median and its
//! ratio to the baseline, and whether the order of the variants repeats from run to run.
//!
//! The call-site groups are built twice: without the `paravirt` feature (the `paravirt-off`
//! variant: every hook compiled out) and with it (`native-static`, `native-ops-table`, `vmi`,
//! `xen`). The scaling groups compare parameters (live address spaces or tables) of one
//! variant. Medians come from criterion's own files (`target/criterion/**/new/`).

use crate::{cargo, root, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The baseline of the ratios in a call-site group.
const BASELINE: &str = "native-static";

/// One measurement: group, bench id (variant, or variant/parameter), median in ns.
type Medians = BTreeMap<String, BTreeMap<String, f64>>;

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// Every `new/benchmark.json` + `new/estimates.json` pair under `dir`.
fn collect(dir: &Path, out: &mut Medians) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if p.file_name().is_some_and(|n| n == "new") {
            let (Some(b), Some(est)) = (read_json(&p.join("benchmark.json")), read_json(&p.join("estimates.json")))
            else {
                continue;
            };
            let group = b["group_id"].as_str().unwrap_or("?").to_string();
            let id = match (b["function_id"].as_str(), b["value_str"].as_str()) {
                (Some(f), Some(v)) => format!("{f}/{v}"),
                (Some(f), None) => f.to_string(),
                (None, Some(v)) => v.to_string(),
                (None, None) => "?".into(),
            };
            if let Some(m) = est["median"]["point_estimate"].as_f64() {
                out.entry(group).or_default().insert(id, m);
            }
        } else {
            collect(&p, out);
        }
    }
}

/// Runs the benches once (`filter`: criterion's name filter) and returns the medians.
fn run_once(filter: Option<&str>) -> Result<Medians, String> {
    let dir = root().join("target").join("criterion");
    let _ = std::fs::remove_dir_all(&dir);
    let with_filter = |c: &mut std::process::Command| {
        if let Some(f) = filter {
            c.args(["--", f]);
        }
    };
    let mut off = cargo();
    off.args(["bench", "-p", "benches", "--no-default-features", "--bench", "call_sites"]);
    with_filter(&mut off);
    run(&mut off)?;
    let mut on = cargo();
    on.args(["bench", "-p", "benches"]);
    with_filter(&mut on);
    run(&mut on)?;
    let mut m = Medians::new();
    collect(&dir, &mut m);
    if m.is_empty() {
        return Err(format!("no criterion results under {}", dir.display()));
    }
    Ok(m)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The group's ids ordered by median.
fn order(g: &BTreeMap<String, f64>) -> Vec<String> {
    let mut v: Vec<_> = g.iter().collect();
    v.sort_by(|a, b| a.1.total_cmp(b.1));
    v.into_iter().map(|(k, _)| k.clone()).collect()
}

/// The baseline of a group: `native-static`, or for a scaling group its smallest parameter of
/// the same variant.
fn baseline<'a>(g: &'a BTreeMap<String, f64>, id: &str) -> Option<(&'a str, f64)> {
    if let Some(v) = g.get(BASELINE) {
        return Some((BASELINE, *v));
    }
    let variant = id.split('/').next()?;
    g.iter()
        .filter(|(k, _)| k.split('/').next() == Some(variant))
        .min_by_key(|(k, _)| k.split('/').nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(u64::MAX))
        .map(|(k, v)| (k.as_str(), *v))
}

/// Runs the benches `runs` times; prints per group each id's median (last run), its ratio to
/// the baseline, the spread of the medians over the runs, and whether the order of the ids
/// was the same in every run. Fails only if a run fails.
pub fn bench(runs: u32, filter: Option<&str>) -> Result<(), String> {
    let runs = runs.max(1);
    let mut all: Vec<Medians> = vec![];
    for i in 1..=runs {
        println!("xtask: bench run {i} of {runs}");
        all.push(run_once(filter)?);
    }
    let last = all.last().expect("at least one run");
    let mut unstable = 0;
    for (group, ids) in last {
        println!("\n{group}");
        for (id, med) in ids {
            let ratio = baseline(ids, id).map_or(String::new(), |(b, v)| format!("{:>6.2}× {b}", med / v));
            let meds: Vec<f64> = all.iter().filter_map(|m| m.get(group)?.get(id).copied()).collect();
            let (lo, hi) = meds.iter().fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let spread =
                if meds.len() > 1 { format!("  spread {:.1}%", (hi - lo) / lo * 100.0) } else { String::new() };
            println!("  {id:<28} {:>12}  {ratio}{spread}", fmt_ns(*med));
        }
        if runs > 1 {
            let orders: Vec<Vec<String>> = all.iter().filter_map(|m| m.get(group)).map(order).collect();
            let same = orders.windows(2).all(|w| w[0] == w[1]);
            if !same {
                unstable += 1;
            }
            println!("  order over {runs} runs: {}", if same { "the same" } else { "CHANGED" });
        }
    }
    if runs > 1 {
        println!("\nbench: {} groups, order of variants changed in {unstable}", last.len());
    }
    Ok(())
}
