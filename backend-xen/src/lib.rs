//! A model of the Xen PV MMU, driven by the paravirt page-table hooks.
//!
//! Xen uses the hooks of Linux's "Page allocation hooks for VMI backend" change to learn the
//! exact moment page tables are created or released: a page table in use must be *pinned*
//! (validated, with Xen's page types and type counts) and mapped read-only in the guest, and
//! every change to it goes through a checked hypercall. No real Xen can run an i386 guest on
//! the machines this project targets (Debian's Xen 4.17 has no 32-bit PV support), so this
//! crate is a **faithful model, not Xen**: a hypervisor side that enforces Xen's page-type
//! rules over the guest's real page tables, and a guest side that does in each hook what
//! Linux's Xen code does. `i386-mm` takes it as its backend like any other.
//!
//! What each item mirrors:
//!
//! | here | Linux (`arch/x86/xen/mmu_pv.c`) / Xen (`xen/arch/x86/mm.c`) |
//! | --- | --- |
//! | [`PvMmuOps::alloc_pt`] / `alloc_pd` on [`Xen`] | `xen_alloc_pt` / `xen_alloc_pd` (`xen_alloc_ptpage`) |
//! | [`PvMmuOps::release_pt`] / `release_pd` | `xen_release_pt` / `xen_release_pd` (`xen_release_ptpage`) |
//! | `alloc_pd_clone` | no hypercall, as in Xen (the two-level pgd is recorded as announced) |
//! | `set_pmd`, `set_pud` | `xen_set_pmd` / `xen_set_pud` (`_hyper` variants when pinned) |
//! | `set_pte*`, `pte_clear`, `pmd_clear` | `xen_set_pte`, `xen_pte_clear`, `xen_pmd_clear` |
//! | `write_cr3` | `xen_write_cr3` with `xen_pgd_pin` for a root not pinned yet |
//! | `exit_mmap` | `xen_exit_mmap` → `xen_pgd_unpin` |
//! | `flush_tlb_*` | `xen_flush_tlb`, `xen_flush_tlb_single` (`MMUEXT_TLB_FLUSH_LOCAL`, `INVLPG_LOCAL`) |
//! | [`Hypervisor::mmu_update`] | `do_mmu_update` (`MMU_NORMAL_PT_UPDATE`: `mod_l1_entry`...) |
//! | [`Hypervisor::mmuext_op`] | `do_mmuext_op` (pin, unpin, `new_guest_cr3`, flushes) |
//! | [`Hypervisor::update_va_mapping`] | `do_update_va_mapping` |
//! | [`Hypervisor`] | Xen's `frame_table` (`type_info`: type, count, pinned), base pointer, `start_info.pt_base` |
//! | [`Xen`] | Linux's Xen MMU code and its `PG_pinned` |
//! | type references | `get_page_type` / `put_page_type`, `alloc_lN_table` / `free_lN_table` |
//!
//! The rules the model enforces, and the simplifications it makes, are listed in the crate's
//! `README.md`. In short: per-frame page types (none, writable, L1, L2, the `PGT_pae_xen_l2` L2
//! of a PAE L3's slot 3, L3) with type counts; validation is recursive; a page-table page may
//! never be mapped writable, and a page mapped writable cannot become a page table; entries
//! obey Xen's flag masks per level; Xen's own L2 slots are not the guest's; `NEW_BASEPTR`
//! validates the root it installs; a direct store into a validated L1 is emulated
//! ([`Hypervisor::ptwr_do_page_fault`]); read-only is real page-table state (the PTE of the page in the kernel's linear map,
//! changed through `update_va_mapping`); refusals are typed [`XenError`]s; protocol
//! violations caught inside hooks panic or are recorded ([`Policy`], [`Violations`]), never
//! ignored, each marked with its [`Origin`]: a refusal of the real Xen, or a rule of this
//! project's checker that the real Xen would let through.
//!
//! Two types, one dependency direction: the [`Hypervisor`] owns its state (the frame table,
//! the base pointer) and its hypercalls and never calls the guest; the guest side, [`Xen`],
//! holds a reference to it and is the paravirt backend (`PvMmuOps<M>` for its own mode only).
//!
//! The crate is `#![no_std]` and allocates nothing: state lives in fixed-capacity tables
//! behind `spin::Mutex`es, so it runs inside the bare-metal kernel demo, where every store the
//! model makes into a pinned table or a linear-map PTE goes through
//! [`PhysMem::privileged`](i386_paging::PhysMem::privileged) (CR0.WP lifted), exactly the
//! privilege a hypervisor has over the guest's page tables. Every entry store, the
//! hypervisor's and the guest's own, is one [`native::set`](paravirt_core::native::set) of the
//! entry's width, so a PAE entry is never visible half-written.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod frames;
mod guest;
mod hooks;
mod hypercall;
mod hypervisor;
mod inspect;
pub mod level4;
mod mmu_pv;
mod stats;
mod table;
mod trace;
mod types;
mod vcpu;
mod xen;

pub use error::{Errno, SetupError, TeardownError, XenError};
pub use hypercall::{
    Hypercall, MmuUpdate, MmuextOp, UvmFlags, HYPERVISOR_MMUEXT_OP, HYPERVISOR_MMU_UPDATE,
    HYPERVISOR_UPDATE_VA_MAPPING, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_NAMES, MMUEXT_NEW_BASEPTR,
    MMUEXT_OPS, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
    MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNPIN_TABLE, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
    MMU_PT_UPDATE_PRESERVE_AD,
};
pub use hypervisor::{hypervisor_virt_start, Hypervisor};
pub use paravirt_core::{HookKind, Inspect, Origin, Policy, PvMmuOps, Rule, Violation, Violations};
pub use stats::XenStats;
pub use trace::{TraceEntry, TRACE_LEN};
pub use types::{PageInfo, PageType, PinnedCounts};
pub use vcpu::MAX_VCPUS;
pub use xen::{Xen, MAX_VIOLATIONS};
