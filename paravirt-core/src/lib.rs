//! Paravirtualized MMU hooks for i386 page-table management, and the paging definitions they
//! speak in.
//!
//! A paravirtualized kernel must tell its hypervisor the exact moment a page becomes a page
//! table ([`alloc_pt`](PvMmuOps::alloc_pt), [`alloc_pd`](PvMmuOps::alloc_pd),
//! [`alloc_pd_clone`](PvMmuOps::alloc_pd_clone)) and the moment before it stops being one
//! ([`release_pt`](PvMmuOps::release_pt), [`release_pd`](PvMmuOps::release_pd)). Shadow-paging
//! hypervisors (VMware's VMI) need those moments to keep shadow copies; Xen needs them to pin
//! tables and make them read-only. Bare metal needs nothing, so there the hooks cost nothing.
//!
//! This crate is the bottom of the workspace. It owns:
//! - the paging definitions the hooks are written in (Linux's `paravirt.h` gets `pte_t` the
//!   same way): [`Pfn`] and [`PhysAddr`]; the modes [`TwoLevel`] and [`Pae`] as types
//!   ([`PagingMode`]); [`PteFlags`]; entries typed per level ([`Pte`], [`Pmd`], [`Pud`]) and
//!   their locations ([`Slot`]), with the [`native`] stores;
//! - [`PvMmuOps`], the hook trait, generic over the paging mode. The hook list is written once
//!   (`hooks.rs`, like Linux's `struct pv_mmu_ops`) and the trait, the call-site layer [`pv`],
//!   the [`Recorder`], [`Hook`]/[`HookKind`] and the run-time [`ParavirtOps`] table are
//!   generated from it. Every method has an `#[inline(always)]` default that is the native
//!   behaviour, so a backend that overrides nothing *is* bare metal and monomorphisation
//!   removes every hook: the Rust equivalent of Linux patching a call site into NOPs;
//! - [`pv`], the call-site layer used by `i386-mm`: with the `paravirt` feature (default) each
//!   call dispatches statically to the backend; without it each compiles to nothing or to a
//!   plain store, like Linux's non-`CONFIG_PARAVIRT` stubs in `asm-i386/pgalloc.h`;
//! - [`Recorder`], which wraps any backend and records every call in a fixed-capacity log,
//!   and [`Gated`], which wraps any backend and lets a [`Gate`] drop chosen calls (a kernel
//!   that forgets a hook, for tests);
//! - what checking backends share: [`Policy`], [`Violation`], [`Violations`], [`Rule`],
//!   [`Origin`], and [`Inspect`] (what a backend reports about itself).
//!
//! | Linux | here |
//! | --- | --- |
//! | `struct pv_mmu_ops` | [`PvMmuOps`] (generated from `hooks.rs`) |
//! | `paravirt_ops` filled at boot | [`ParavirtOps`] |
//! | `native_set_pte`, `set_64bit` | [`native::set`] (one store of the entry's width) |
//! | `pte_t`, `pmd_t`, `pud_t` | [`Pte`], [`Pmd`], [`Pud`] |
//! | `pte_t *` | [`PteSlot`] (and [`PmdSlot`], [`PudSlot`]) |
//! | `CONFIG_X86_PAE` | [`Pae`] vs [`TwoLevel`] |
//!
//! Backends live in their own crates (`backend-native`, `backend-vmi`, `backend-xen`); the
//! physical-memory and processor interfaces and the walker in `i386-paging`; the call sites in
//! `i386-mm`.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod addr;
mod entry;
mod flags;
mod gate;
mod hooks;
mod inspect;
mod mode;
mod native_ops;
mod ops;
pub mod pv;
mod record;
mod report;
mod slot;
pub mod sync;
mod table;
mod with_inspect;

pub use addr::{Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};

/// The `addr` of [`PvMmuOps::flush_tlb_others`] that asks for every TLB entry, global ones
/// included (Linux's `TLB_FLUSH_ALL`, `-1UL`).
pub const TLB_FLUSH_ALL: u32 = u32::MAX;
pub use entry::{Entry, Pmd, Pte, Pud};
pub use flags::{PteFlags, PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_TABLE, PDPT_ALLOWED};
pub use gate::{Gate, Gated};
pub use inspect::Inspect;
pub use mode::{Pae, PagingMode, TwoLevel, PAGE_OFFSET, TASK_SIZE};
pub use native_ops::NativeOps;
pub use ops::PvMmuOps;
pub use record::{Event, Hook, HookKind, Recorded, Recorder, UnknownHook};
pub use report::{Origin, Policy, Rule, Violation, Violations};
pub use slot::{native, EntryRef, PmdSlot, PteSlot, PudSlot, Slot};
pub use table::ParavirtOps;
pub use with_inspect::WithInspect;
