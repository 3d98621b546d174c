//! i386 page-table management, generic over the paravirt backend and the paging mode.
//!
//! This crate holds every call site of Linux's "Page allocation hooks for VMI backend" change
//! (2.6.21, `arch/i386/mm/{init,pgtable,pageattr}.c`, `include/asm-i386/pgalloc.h`), each
//! calling the hook in the seed's order:
//!
//! | Linux | here | hook order |
//! | --- | --- | --- |
//! | `pagetable_init` | [`KernelMm::pagetable_init`] | two-level: `alloc_pd(swapper_pg_dir)` |
//! | `one_md_table_init` | [`KernelMm::one_md_table_init`] | `alloc_pd` → `set_pgd` (PAE) |
//! | `one_page_table_init` | [`KernelMm::one_page_table_init`] | `alloc_pt` → `set_pmd` |
//! | `split_large_page` | [`KernelMm::split_large_page`] | `alloc_pt` → `set_pte` × N |
//! | `__change_page_attr` / `revert_page` | [`KernelMm::change_page_attr`] | revert → `release_pt` → deferred free |
//! | `pgd_ctor` | [`KernelMm::pgd_ctor`] | under `pgd_lock`: copy → `alloc_pd_clone` → `pgd_list_add` |
//! | `pgd_dtor` | [`KernelMm::pgd_dtor`] | `release_pd` → `pgd_list_del` under `pgd_lock` |
//! | `pgd_alloc` | [`KernelMm::pgd_alloc`] | PAE: (`alloc_pd` → `set_pgd`) × 3; `out_oom` releases each |
//! | `pgd_free` | [`KernelMm::pgd_free`] | PAE: (`release_pd` → free) × 3 |
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
//! The backend comes from `paravirt-core` ([`PvMmuOps`]); physical memory ([`PhysMem`]) and
//! the processor ([`Cpu`]) are traits too, implemented over real RAM by the kernel demo
//! ([`BootMem`]) and over emulated RAM by the `mm-testkit` crate. The crate is `#![no_std]`
//! and allocates nothing on the heap.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod cpu;
mod entry;
mod error;
mod kernel;
mod kmap;
mod mode;
mod pageattr;
mod pgtable;
mod phys;
pub mod ptdump;
pub mod scenario;
mod space;
mod sync;
pub mod walk;

pub use cpu::{Cpu, Fault, PF_PROT, PF_WRITE};
pub use entry::{entry_flags, entry_present, PteFlags, PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_TABLE, PDPT_ALLOWED};
pub use error::MmError;
pub use kernel::{InitOptions, KernelMm, PgdList, MAX_CPA_TABLES, MAX_PGDS};
pub use mode::{Pae, PagingMode, TwoLevel, PAGE_OFFSET, TASK_SIZE, VMALLOC_END, VMALLOC_START};
pub use pageattr::Kpte;
pub use paravirt_core::{EntrySlot, Pfn, PvMmuOps};
pub use pgtable::{MmuGather, GATHER_PAGES};
pub use phys::{
    alloc_zeroed, lowmem_va, read_entry, slot, zero_frame, BootMem, FaultInject, PhysMem, BOOTMEM_MAX_FRAMES,
};
pub use space::AddressSpace;
pub use walk::Translation;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
