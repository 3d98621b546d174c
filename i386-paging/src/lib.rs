//! The i386 paging machine below both the guest's page-table code and the hypervisor models.
//!
//! `i386-mm` (the guest kernel's mm) and the backends (`backend-vmi`, `backend-xen`) both read
//! and write page tables in physical memory and walk them as the CPU does; neither may depend
//! on the other, so what they share lives here, on top of `paravirt-core`'s definitions:
//!
//! - [`PhysMem`]: physical memory, an `unsafe trait` whose contract makes the safe accessors
//!   ([`read_entry`], [`alloc_zeroed`]) sound, and [`FaultInject`] for out-of-memory tests;
//! - [`Cpu`]: the processor (CR3, `invlpg`, flushes, probed reads and writes) and [`Fault`];
//! - [`walk`]: one software walker that starts at any table;
//! - [`FrameMap`]: per-frame records in frames of RAM (`mem_map`, Xen's `frame_table`),
//!   sized by the RAM given.
//!
//! `#![no_std]`, no heap.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod cpu;
mod framemap;
mod phys;
pub mod walk;

pub use cpu::{Cpu, Fault, PF_PROT, PF_USER, PF_WRITE};
pub use framemap::{FrameMap, Iter as FrameMapIter, NoFrame, Record, DIRS, LEAVES_PER_DIR, RECORDS_PER_LEAF};
pub use paravirt_core::{
    Entry, Pae, PagingMode, Pfn, PhysAddr, Pmd, PmdSlot, Pte, PteFlags, PteSlot, Pud, PudSlot, Slot, TwoLevel,
    PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE, PAGE_TABLE, PDPT_ALLOWED, TASK_SIZE,
};
pub use phys::{alloc_zeroed, lowmem_va, read_entry, read_raw, slot, zero_frame, FaultInject, PhysMem};
pub use walk::{Level, Translation};
