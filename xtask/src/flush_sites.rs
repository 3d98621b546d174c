//! `cargo xtask flush-sites`: every TLB flush of i386-mm is needed.
//!
//! Removes each flush call site of `i386-mm/src` in turn (one statement, found by its exact
//! text), runs i386-mm's tests against the host CPU's TLB (built without debug info, the
//! oracle's proptest cut to 16 cases, stopping at the first test binary that fails), restores
//! the file, and reports which tests caught the removal. Fails if any removal goes unnoticed.

use crate::{cargo, root};
use std::path::{Path, PathBuf};

/// One flush call site: the file, the text around it, and the same text without the call.
struct Site {
    name: &'static str,
    file: &'static str,
    with: &'static str,
    without: &'static str,
}

const SITES: &[Site] = &[
    Site {
        name: "unmap: flush_tlb_single (table stays)",
        file: "space.rs",
        with: "} else if self.active_root() == Some(mm.pgd) {\n            self.flush_tlb_single(va);\n",
        without: "} else if self.active_root() == Some(mm.pgd) {\n",
    },
    Site {
        name: "protect: flush_tlb_single",
        file: "space.rs",
        with: "PteFlags::PRESENT));\n        if self.active_root() == Some(mm.pgd) {\n            self.flush_tlb_single(va);\n",
        without: "PteFlags::PRESENT));\n        if self.active_root() == Some(mm.pgd) {\n",
    },
    Site {
        name: "unmap_kernel_page: flush_tlb_single (table stays)",
        file: "vmalloc.rs",
        with: "        } else {\n            self.flush_tlb_single(va);\n",
        without: "        } else {\n",
    },
    Site {
        name: "unmap_kernel_page: flush_tlb_kernel (table freed)",
        file: "vmalloc.rs",
        with: "            self.flush_tlb_kernel();\n            self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n",
        without: "            self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n",
    },
    Site {
        name: "unmap_kernel_page: flush_tlb_others (table freed)",
        file: "vmalloc.rs",
        with: "            self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n            self.pv().release_pt(pt);",
        without: "            self.pv().release_pt(pt);",
    },
    Site {
        name: "unmap_kernel_page: flush_tlb_others (table stays)",
        file: "vmalloc.rs",
        with: "            self.flush_tlb_single(va);\n            self.flush_tlb_others(va);\n",
        without: "            self.flush_tlb_single(va);\n",
    },
    Site {
        name: "unmap_kernel_pages: flush_tlb_kernel",
        file: "vmalloc.rs",
        with: "        self.flush_tlb_kernel();\n        self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n        for &pt",
        without: "        self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n        for &pt",
    },
    Site {
        name: "unmap_kernel_pages: flush_tlb_others",
        file: "vmalloc.rs",
        with: "        self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n        for &pt",
        without: "        for &pt",
    },
    Site {
        name: "change_page_attr: flush_tlb_single",
        file: "pageattr.rs",
        with: "        drop(st);\n        self.flush_tlb_single(va);\n",
        without: "        drop(st);\n",
    },
    Site {
        name: "global_flush_tlb: flush_tlb_kernel",
        file: "pageattr.rs",
        with: "        let mut st = self.kernel_lock.lock();\n        self.flush_tlb_kernel();\n",
        without: "        let mut st = self.kernel_lock.lock();\n",
    },
    Site {
        name: "global_flush_tlb: flush_tlb_others",
        file: "pageattr.rs",
        with: "        self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);\n        let mut cur",
        without: "        let mut cur",
    },
    Site {
        name: "change_page_attr: flush_tlb_others",
        file: "pageattr.rs",
        with: "        self.flush_tlb_others(va);\n        Ok(CpaFlush",
        without: "        Ok(CpaFlush",
    },
    Site {
        name: "flush_tlb_others: the hook or the IPIs",
        file: "kernel.rs",
        with: "        if mask != 0 && !self.pv().flush_tlb_others(mask, addr) {\n            self.cpu.flush_tlb_others(mask, addr);\n        }\n",
        without: "        let _ = (mask, addr);\n",
    },
    Site {
        name: "CpaFlush::flush: global_flush_tlb",
        file: "pageattr.rs",
        with: "        k.global_flush_tlb();\n",
        without: "        let _ = k;\n",
    },
    Site {
        name: "tlb_flush_mmu (the gather): flush_tlb_user",
        file: "pgtable.rs",
        with: "        self.flush_tlb_user();\n        for &p",
        without: "        for &p",
    },
    Site {
        name: "pte_free_tlb: flush of a full gather",
        file: "pgtable.rs",
        with: "        if tlb.n == GATHER_PAGES {\n            self.tlb_flush_mmu(tlb);\n        }\n",
        without: "",
    },
    Site {
        name: "free_kernel_tables (shutdown): global_flush_tlb",
        file: "kernel.rs",
        with: "        self.global_flush_tlb();\n        if !M::PAE {\n            self.pv().release_pd(swapper);",
        without: "        if !M::PAE {\n            self.pv().release_pd(swapper);",
    },
    Site {
        name: "flush_tlb_single: the hook",
        file: "kernel.rs",
        with: "        self.pv().flush_tlb_single(va);\n",
        without: "",
    },
    Site { name: "flush_tlb_single: invlpg", file: "kernel.rs", with: "        self.cpu.invlpg(va);\n", without: "" },
    Site { name: "flush_tlb_user: the hook", file: "kernel.rs", with: "        self.pv().flush_tlb_user();\n", without: "" },
    Site { name: "flush_tlb_user: CR3 reload", file: "kernel.rs", with: "        self.cpu.flush_tlb();\n", without: "" },
    Site {
        name: "flush_tlb_kernel: the hook",
        file: "kernel.rs",
        with: "        self.pv().flush_tlb_kernel();\n        self.cpu.flush_tlb_global();",
        without: "        self.cpu.flush_tlb_global();",
    },
    Site {
        name: "flush_tlb_kernel: CR4.PGE toggle",
        file: "kernel.rs",
        with: "        self.cpu.flush_tlb_global();\n",
        without: "",
    },
];

/// Puts a file's text back when dropped, whatever happened in between.
struct Restore {
    path: PathBuf,
    text: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.text) {
            eprintln!("xtask: could not restore {}: {e}", self.path.display());
        }
    }
}

/// Names of the failed tests in cargo test's output.
fn failed_tests(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... FAILED")))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn run_tests(target: &Path) -> Result<(bool, String), String> {
    let out = cargo()
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("MM_PROPTEST_CASES", "16")
        .args(["test", "-p", "i386-mm", "--tests"])
        .output()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Removes each flush site in turn and runs i386-mm's tests; every removal must fail a test.
pub fn check() -> Result<(), String> {
    let target = root().join("target").join("flush-sites");
    let (ok, out) = run_tests(&target)?;
    if !ok {
        return Err(format!("i386-mm's tests fail with every flush in place:\n{out}"));
    }
    let mut missed = vec![];
    for s in SITES {
        let path = root().join("i386-mm").join("src").join(s.file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.matches(s.with).count() != 1 {
            return Err(format!("flush site `{}` not found exactly once in {}", s.name, s.file));
        }
        let guard = Restore { path: path.clone(), text: text.clone() };
        std::fs::write(&path, text.replacen(s.with, s.without, 1)).map_err(|e| format!("{}: {e}", path.display()))?;
        let (ok, out) = run_tests(&target)?;
        drop(guard);
        if ok {
            println!("NOT CAUGHT  {}", s.name);
            missed.push(s.name);
        } else {
            let failed = failed_tests(&out);
            if failed.is_empty() {
                return Err(format!("removing `{}` broke the build:\n{out}", s.name));
            }
            println!("caught      {} ({} tests failed, e.g. {})", s.name, failed.len(), failed[0]);
        }
    }
    println!("flush sites: {} removed, {} caught", SITES.len(), SITES.len() - missed.len());
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} flush site(s) removable without a failing test: {}", missed.len(), missed.join(", ")))
    }
}
