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
//! | `vmi_set_page_type`, `vmi_check_page_type` (`CONFIG_DEBUG_PAGE_TYPE`) | the checks of [`Vmi::allocate_page`] / [`Vmi::release_page`], reported as [`Violation`]s |
//! | the ROM's `AllocatePage` / `ReleasePage` | [`Vmi::allocate_page`] / [`Vmi::release_page`] |
//! | `vmi_set_pte*`, `vmi_set_pmd`, `vmi_set_pud`, `vmi_pte_clear`, `vmi_pmd_clear` | entry hooks: written natively, then mirrored into the shadow |
//! | `vmi_write_cr3` / `vmi_read_cr3` | `PvMmuOps::write_cr3` returns the shadow root; `read_cr3` maps it back |
//!
//! Every announced table gets a shadow frame (from a pool reserved from the [`PhysMem`] at
//! construction); directory entries in a shadow link the shadows of the tables they link,
//! so the CPU, whose CR3 holds what `write_cr3` returned, walks shadows only. A hook the
//! kernel forgot therefore shows as a [`Violation`] at the very write that needed it, or as
//! a [`Divergence`] from [`Vmi::verify_each`], or in the kernel demo as a real page fault,
//! never as a silent pass. What happens on a violation is the [`Policy`]: panic like
//! `BUG()`, or record and carry on.
//!
//! The crate is `#![no_std]`, allocates nothing on the heap (fixed capacity `MAX`, default
//! [`DEFAULT_CAPACITY`]), uses no floating point, and runs inside the bare-metal i686 kernel
//! demo as well as over `mm-testkit`'s emulated RAM. It is generic over the paging mode
//! ([`i386_mm::TwoLevel`], [`i386_mm::Pae`]) and physical memory.
//!
//! [`PhysMem`]: i386_mm::PhysMem
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod accessed;
mod backend;
mod hooks;
mod inspect;
mod rom;
mod root;
mod shadow;
mod stats;
mod types;
mod verify;
mod violation;

pub use backend::{InitError, Vmi, DEFAULT_CAPACITY};
pub use inspect::VERIFY_REPORT_LINES;
pub use stats::{Check, HookKind, Stats};
pub use types::PageType;
pub use verify::Divergence;
pub use violation::{Policy, Violation, RECORDED_VIOLATIONS};
