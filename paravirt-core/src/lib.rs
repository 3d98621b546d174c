//! Paravirtualized MMU hooks for i386 page-table management.
//!
//! A paravirtualized kernel must tell its hypervisor the exact moment a page becomes a page
//! table ([`alloc_pt`](PvMmuOps::alloc_pt), [`alloc_pd`](PvMmuOps::alloc_pd),
//! [`alloc_pd_clone`](PvMmuOps::alloc_pd_clone)) and the moment before it stops being one
//! ([`release_pt`](PvMmuOps::release_pt), [`release_pd`](PvMmuOps::release_pd)). Shadow-paging
//! hypervisors (VMware's VMI) need those moments to keep shadow copies; Xen needs them to pin
//! tables and make them read-only. Bare metal needs nothing, so there the hooks cost nothing.
//!
//! This crate owns:
//! - [`PvMmuOps`], the hook trait. Every method has an `#[inline(always)]` default that is the
//!   native behaviour (a no-op for the five page-type hooks, a plain store for entry writes), so
//!   a backend that overrides nothing *is* bare metal and monomorphisation removes every hook:
//!   the Rust equivalent of Linux patching a `paravirt_ops` call site into NOPs.
//! - [`pv`], the call-site layer used by `i386-mm`. With the `paravirt` feature (default) each
//!   wrapper dispatches statically to the backend; without it each wrapper compiles to nothing
//!   or to a plain store, like Linux's non-`CONFIG_PARAVIRT` stubs in `asm-i386/pgalloc.h`.
//! - [`Recorder`], an adapter that wraps any backend and records every call in a fixed-capacity
//!   log (no heap): the tool for hook-order tests and traces.
//! - [`ParavirtOps`], a run-time table of function pointers like Linux's `struct paravirt_ops`:
//!   one kernel image can choose its backend at boot, and benches measure what static dispatch
//!   saves over it.
//!
//! Backends live in their own crates (`backend-native`, `backend-vmi`, `backend-xen`); the call
//! sites live in `i386-mm`.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod inspect;
mod ops;
mod pfn;
pub mod pv;
mod record;
mod slot;
mod table;
mod with_inspect;

pub use inspect::Inspect;
pub use ops::PvMmuOps;
pub use pfn::{Pfn, PAGE_SHIFT, PAGE_SIZE};
pub use record::{Event, Hook, Recorder};
pub use slot::{native, EntrySlot};
pub use table::ParavirtOps;
pub use with_inspect::WithInspect;
