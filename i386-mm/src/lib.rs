//! i386 page-table management, generic over the paravirt backend and the paging mode.
//!
//! This crate holds every call site of Linux's "Page allocation hooks for VMI backend" change
//! (2.6.21, `arch/i386/mm/{init,pgtable,pageattr}.c`, `include/asm-i386/pgalloc.h`), each
//! calling the hook in the seed's order:
//!
//! | Linux | here | hook order |
//! | --- | --- | --- |
//! | `pagetable_init` | [`KernelMm::pagetable_init`] | two-level: `alloc_pd(swapper_pg_dir)` |
//! | `one_md_table_init` | [`KernelMm::one_md_table_init`] | `alloc_pd` → `set_pgd` (PAE only; two-level: `WrongMode`) |
//! | `one_page_table_init` | [`KernelMm::one_page_table_init`] | `alloc_pt` → `set_pmd` |
//! | `split_large_page` | [`KernelMm::split_large_page`] | `alloc_pt` → `set_pte` × N |
//! | `__change_page_attr` / `revert_page` | [`KernelMm::change_page_attr`] | revert → `release_pt` → deferred free after [`CpaFlush`] |
//! | `pgd_ctor` | [`KernelMm::pgd_ctor`] | under `pgd_lock`: copy → `alloc_pd_clone` → `pgd_list_add` (PAE with an unshared kernel pmd: `pgd_list_add` only) |
//! | `pgd_dtor` | [`KernelMm::pgd_dtor`] | `pgd_list_del` under `pgd_lock` → `release_pd` (the seed has the reverse; fixed as in later kernels) |
//! | `pgd_alloc` | [`KernelMm::pgd_alloc`] | PAE: (`alloc_pd` → `set_pgd`) × 3; `out_oom` releases each. Unshared kernel pmd (Xen): under `pgd_lock`, `pgd_list_add`, then (copy of the kernel pmd for slot 3, `alloc_pd` → `set_pgd`) × 4 |
//! | `pgd_free` | [`KernelMm::pgd_free`] | PAE: (`release_pd` → free) × 3; unshared kernel pmd: `pgd_list_del` under `pgd_lock`, then × 4 |
//! | `pmd_populate[_kernel]` | [`KernelMm::pmd_populate`] | `alloc_pt` → `set_pmd` |
//! | `__pte_free_tlb` | [`KernelMm::pte_free_tlb`] | `release_pt` → gather → free after flush |
//!
//! On top sits an address-space API ([`KernelMm::create`], [`map`](KernelMm::map),
//! [`unmap`](KernelMm::unmap), [`protect`](KernelMm::protect),
//! [`translate`](KernelMm::translate), [`activate`](KernelMm::activate),
//! [`destroy`](KernelMm::destroy)) and kernel-range mappings
//! ([`map_kernel_page`](KernelMm::map_kernel_page)) whose directory updates reach every pgd on
//! `pgd_list` under `pgd_lock`.
//!
//! Whether PAE pgds share `swapper_pg_dir`'s kernel pmd is the backend's answer
//! ([`PvMmuOps::shared_kernel_pmd`], Linux's `SHARED_KERNEL_PMD`): bare metal and VMI share it;
//! Xen does not (it refuses an L2 shared between the third slots of two L3s), so each PAE pgd
//! then gets its own copy, made under `pgd_lock`, and joins `pgd_list` like a two-level pgd.
//!
//! The Linux-named low-level call sites take tables and entry slots from their caller and write
//! through them, so they are `unsafe fn` with `# Safety` sections (Linux semantics: the caller
//! owns the tables); the address-space API on top is safe and returns typed errors.
//!
//! The backend comes from `paravirt-core` ([`PvMmuOps`], generic over the paging mode, so a
//! backend of the other mode does not compile); physical memory ([`PhysMem`]) and the
//! processor ([`Cpu`]) come from `i386-paging`, implemented over real RAM by the kernel demo
//! ([`BootMem`]) and over emulated RAM by the `mm-testkit` crate. The crate is `#![no_std]`
//! and allocates nothing on the heap.
//!
//! ```compile_fail
//! // A backend built for PAE cannot serve a two-level kernel:
//! use i386_mm::{KernelMm, Pae, PagingMode, PvMmuOps, TwoLevel};
//! struct PaeOnly;
//! impl PvMmuOps<Pae> for PaeOnly {}
//! fn two_level<B: PvMmuOps<TwoLevel>>() {}
//! two_level::<PaeOnly>();
//! ```
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod bootmem;
mod error;
mod flags;
mod kernel;
mod layout;
mod memmap;
mod pageattr;
mod pgtable;
pub mod ptdump;
mod space;
mod vmalloc;

pub use bootmem::{BootMem, FRAMES_PER_REGION};
pub use error::MmError;
pub use i386_paging::{
    alloc_zeroed, lowmem_va, read_entry, read_raw, slot, walk, zero_frame, Cpu, Entry, Fault, FaultInject, Level, Pae,
    PagingMode, Pfn, PhysAddr, PhysMem, Pmd, PmdSlot, Pte, PteFlags, PteSlot, Pud, PudSlot, Slot, Translation,
    TwoLevel, PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_OFFSET, PAGE_SIZE, PAGE_TABLE, PDPT_ALLOWED, PF_PROT, PF_USER,
    PF_WRITE, TASK_SIZE,
};
pub use kernel::{InitOptions, KernelMm};
pub use layout::{vmalloc_start, MAXMEM, VMALLOC_END, VMALLOC_OFFSET, VMALLOC_RESERVE};
pub use pageattr::{CpaFlush, Kpte};
pub use paravirt_core::PvMmuOps;
pub use pgtable::{MmuGather, GATHER_PAGES};
pub use space::AddressSpace;
pub use vmalloc::UNMAP_BATCH;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
