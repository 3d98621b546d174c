//! The VMI backend: VMware's Virtual Machine Interface page-type protocol, as a checker over
//! real shadow page tables.
//!
//! A shadow-paging hypervisor must know the exact moment a page becomes a page table and the
//! moment it stops being one; that is what the seed's hooks tell it, and this crate is the
//! hypervisor side, re-created from `arch/i386/kernel/vmi.c` (Linux 2.6.21):
//!
//! | Linux | here |
//! | --- | --- |
//! | `VMI_PAGE_*` flags | [`PageType`] |
//! | `vmi_allocate_pt` | [`Vmi`]'s `PvMmuOps::alloc_pt`: type L1, build the shadow |
//! | `vmi_allocate_pd` | `PvMmuOps::alloc_pd`: type L2 (two-level `swapper_pg_dir`, PAE pmd) |
//! | `vmi_allocate_pd_clone` | `PvMmuOps::alloc_pd_clone`: type `L2 \| CLONE`, clone the source's shadow range |
//! | `vmi_release_pt` / `vmi_release_pd` | `PvMmuOps::release_pt` / `release_pd`: back to `NORMAL`, free the shadow |
//! | `vmi_set_page_type`, `vmi_check_page_type` (`CONFIG_DEBUG_PAGE_TYPE`) | the checks of [`Vmi::allocate_page`] / [`Vmi::release_page`]; their `BUG_ON`s are the [`VmiRule`]s of [`Origin::Hypervisor`] |
//! | the ROM's `AllocatePage` / `ReleasePage` | [`Vmi::allocate_page`] / [`Vmi::release_page`] |
//! | `vmi_set_pte*`, `vmi_set_pmd`, `vmi_set_pud`, `vmi_pte_clear`, `vmi_pmd_clear` | entry hooks: written natively, then mirrored into the shadow |
//! | `vmi_write_cr3` / `vmi_read_cr3` | `PvMmuOps::write_cr3` returns the shadow root; `read_cr3` maps it back |
//!
//! Every announced table gets a shadow frame (from a pool reserved from the [`PhysMem`] at
//! construction); directory entries in a shadow link the shadows of the tables they link,
//! so the CPU, whose CR3 holds what `write_cr3` returned, walks shadows only. A hook the
//! kernel forgot therefore shows as a [`Violation`] at the very write that needed it, or as
//! a [`Divergence`] from [`Vmi::verify_each`], or in the kernel demo as a real page fault,
//! never as a silent pass.
//!
//! Reporting is paravirt-core's: each broken rule is a [`VmiRule`] (a [`Rule`] that says
//! whether VMI itself `BUG_ON`s it, [`Origin::Hypervisor`], or only this project's shadow
//! pager objects, [`Origin::Checker`]), reported with the hook that was running as a
//! [`Violation`] into a [`paravirt_core::Violations`] log under the [`Policy`] chosen at
//! construction: panic like `BUG()` (`vmi: <hook>: <rule> [...]`), or record and carry on.
//!
//! Every store into a guest entry or a shadow entry is one [`paravirt_core::native`] store of
//! the entry's width, so the CPU walking either never sees a PAE entry half-written; entries
//! are decoded only through the typed [`Pte`](paravirt_core::Pte) /
//! [`Pmd`](paravirt_core::Pmd) / [`Pud`](paravirt_core::Pud) methods.
//!
//! The crate is `#![no_std]`, allocates nothing on the heap (its records and shadows live in
//! frames of the [`PhysMem`] it is given, reserved at construction and sized from RAM: see
//! [`default_shadow_frames`]), uses no floating point, and runs inside the bare-metal i686 kernel
//! demo as well as over `mm-testkit`'s emulated RAM. It depends on `paravirt-core` and
//! `i386-paging` only (not on the guest's `i386-mm`), and is generic over the paging mode
//! ([`TwoLevel`](paravirt_core::TwoLevel), [`Pae`](paravirt_core::Pae)) and physical memory.
//!
//! [`PhysMem`]: i386_paging::PhysMem
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

// Dependencies run one way (a module uses only modules named before it):
//   types, stats (leaves) → rule (VmiRule, reporting) → shadow (tracking table, pool, typed
//   entry stores) → state (what sits behind the lock) → mirror → rom; state → root →
//   accessed, verify (operations on the state, never on `Vmi`) → backend (`Vmi`: the lock,
//   construction, ROM calls, accessors) → hooks, inspect.
mod accessed;
mod backend;
mod hooks;
mod inspect;
mod mirror;
mod rom;
mod root;
mod rule;
mod shadow;
mod state;
mod stats;
mod types;
mod vcpu;
mod verify;

pub use backend::{default_shadow_frames, InitError, TeardownError, Vmi, MIN_SHADOW_FRAMES, RAM_FRAMES_PER_SHADOW};
pub use inspect::VERIFY_REPORT_LINES;
/// The shared reporting types, re-exported: the [`Policy`] a [`Vmi`] is built with, and the
/// [`Violation`]s (hook + [`VmiRule`]) its log keeps.
pub use paravirt_core::{Origin, Policy, Rule, Violation};
pub use rule::{VmiRule, RECORDED_VIOLATIONS};
pub use stats::{Check, Stats};
pub use types::PageType;
pub use vcpu::MAX_VCPUS;
pub use verify::Divergence;

/// The README's example, compiled and run as a doc test (it uses the dev-dependencies).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
