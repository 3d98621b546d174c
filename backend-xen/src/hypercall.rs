//! The hypercall ABI, with Xen's numbering (`xen/include/public/xen.h`): the requests of
//! `mmu_update`, `mmuext_op` and `update_va_mapping`, and the record of one call.
//!
//! The calls themselves are methods of [`Hypervisor`](crate::Hypervisor); this module only
//! describes them, so both sides (and the trace) can name them.

use crate::error::XenError;
use crate::types::PageType;
use bitflags::bitflags;
use paravirt_core::{Pfn, PhysAddr, Pte};

/// `__HYPERVISOR_mmu_update`.
pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
/// `__HYPERVISOR_update_va_mapping`.
pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
/// `__HYPERVISOR_mmuext_op`.
pub const HYPERVISOR_MMUEXT_OP: u32 = 26;

/// `MMU_NORMAL_PT_UPDATE`: a checked `*ptr = val` (the command sits in `ptr`'s low bits).
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `MMU_MACHPHYS_UPDATE` (not modelled: refused with `ENOSYS`).
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `MMU_PT_UPDATE_PRESERVE_AD` (not modelled: refused with `ENOSYS`).
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;

/// `MMUEXT_PIN_L1_TABLE`.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// `MMUEXT_PIN_L2_TABLE`.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// `MMUEXT_PIN_L3_TABLE`.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// `MMUEXT_PIN_L4_TABLE` (ignored for a 32-bit guest).
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_NEW_BASEPTR`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_INVLPG_LOCAL`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// `MMUEXT_TLB_FLUSH_MULTI`: flush the TLBs of the vCPUs in a mask.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// `MMUEXT_INVLPG_MULTI`: invalidate one address in the TLBs of the vCPUs in a mask.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Number of `mmuext_op` commands modelled (`0..=9`).
pub const MMUEXT_OPS: usize = 10;
/// Names of the modelled `mmuext_op` commands, by number.
pub const MMUEXT_NAMES: [&str; MMUEXT_OPS] = [
    "pin_l1_table",
    "pin_l2_table",
    "pin_l3_table",
    "pin_l4_table",
    "unpin_table",
    "new_baseptr",
    "tlb_flush_local",
    "invlpg_local",
    "tlb_flush_multi",
    "invlpg_multi",
];

bitflags! {
    /// `update_va_mapping` flags (`UVMF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct UvmFlags: u32 {
        /// `UVMF_TLB_FLUSH`: flush the TLB after the update.
        const TLB_FLUSH = 1;
        /// `UVMF_INVLPG`: invalidate the one address after the update.
        const INVLPG = 2;
    }
}

/// One `mmu_update_t` request, as the ABI lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuUpdate {
    /// Physical address of the entry, with the command in the low bits.
    pub ptr: u64,
    /// The new entry's raw value (its level is the level of the table it lands in).
    pub val: u64,
}

impl MmuUpdate {
    /// An `MMU_NORMAL_PT_UPDATE` of the entry at physical address `entry` (a
    /// [`Slot::phys`](paravirt_core::Slot::phys)) to the raw value `val`.
    pub const fn normal(entry: PhysAddr, val: u64) -> Self {
        MmuUpdate { ptr: entry.as_u64() | MMU_NORMAL_PT_UPDATE, val }
    }

    /// The command in the low bits of [`ptr`](Self::ptr), for entries of `entry_size` bytes.
    pub const fn cmd(&self, entry_size: u32) -> u64 {
        self.ptr & (entry_size as u64 - 1)
    }

    /// The physical address of the entry, for entries of `entry_size` bytes.
    pub const fn entry(&self, entry_size: u32) -> PhysAddr {
        PhysAddr::new(self.ptr & !(entry_size as u64 - 1))
    }
}

/// One `struct mmuext_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuextOp {
    /// `MMUEXT_PIN_L1_TABLE`: validate and pin a page table.
    PinL1Table(Pfn),
    /// `MMUEXT_PIN_L2_TABLE`: validate and pin a two-level pgd or a PAE pmd.
    PinL2Table(Pfn),
    /// `MMUEXT_PIN_L3_TABLE`: validate and pin a PAE root.
    PinL3Table(Pfn),
    /// `MMUEXT_PIN_L4_TABLE`: ignored (no L4 on i386).
    PinL4Table(Pfn),
    /// `MMUEXT_UNPIN_TABLE`.
    UnpinTable(Pfn),
    /// `MMUEXT_NEW_BASEPTR`: load a root (validated if it is not yet).
    NewBaseptr(Pfn),
    /// `MMUEXT_TLB_FLUSH_LOCAL`.
    TlbFlushLocal,
    /// `MMUEXT_INVLPG_LOCAL` of a virtual address.
    InvlpgLocal(u32),
    /// `MMUEXT_TLB_FLUSH_MULTI`: every vCPU in `vcpumask` (bit `n` = vCPU `n`) flushes its
    /// whole TLB before the hypercall returns (`do_mmuext_op` → `flush_tlb_mask`).
    TlbFlushMulti {
        /// The vCPUs (Xen reads the mask through a guest pointer, `arg2.vcpumask`).
        vcpumask: u32,
    },
    /// `MMUEXT_INVLPG_MULTI`: every vCPU in `vcpumask` drops the translation of `va`.
    InvlpgMulti {
        /// The virtual address.
        va: u32,
        /// The vCPUs.
        vcpumask: u32,
    },
}

impl MmuextOp {
    /// The command number.
    pub const fn cmd(&self) -> u32 {
        match self {
            MmuextOp::PinL1Table(_) => MMUEXT_PIN_L1_TABLE,
            MmuextOp::PinL2Table(_) => MMUEXT_PIN_L2_TABLE,
            MmuextOp::PinL3Table(_) => MMUEXT_PIN_L3_TABLE,
            MmuextOp::PinL4Table(_) => MMUEXT_PIN_L4_TABLE,
            MmuextOp::UnpinTable(_) => MMUEXT_UNPIN_TABLE,
            MmuextOp::NewBaseptr(_) => MMUEXT_NEW_BASEPTR,
            MmuextOp::TlbFlushLocal => MMUEXT_TLB_FLUSH_LOCAL,
            MmuextOp::InvlpgLocal(_) => MMUEXT_INVLPG_LOCAL,
            MmuextOp::TlbFlushMulti { .. } => MMUEXT_TLB_FLUSH_MULTI,
            MmuextOp::InvlpgMulti { .. } => MMUEXT_INVLPG_MULTI,
        }
    }

    /// Decodes a raw `(cmd, arg1)` pair (`arg1` is a frame number, or a virtual address for
    /// `INVLPG_LOCAL`).
    ///
    /// # Errors
    /// [`XenError::BadCommand`] for a command number the model does not know, and for the
    /// `*_MULTI` commands, whose vCPU mask is a second argument.
    pub fn from_raw(cmd: u32, arg1: u64) -> Result<Self, XenError> {
        let pfn = Pfn::new(arg1 as u32);
        Ok(match cmd {
            MMUEXT_PIN_L1_TABLE => MmuextOp::PinL1Table(pfn),
            MMUEXT_PIN_L2_TABLE => MmuextOp::PinL2Table(pfn),
            MMUEXT_PIN_L3_TABLE => MmuextOp::PinL3Table(pfn),
            MMUEXT_PIN_L4_TABLE => MmuextOp::PinL4Table(pfn),
            MMUEXT_UNPIN_TABLE => MmuextOp::UnpinTable(pfn),
            MMUEXT_NEW_BASEPTR => MmuextOp::NewBaseptr(pfn),
            MMUEXT_TLB_FLUSH_LOCAL => MmuextOp::TlbFlushLocal,
            MMUEXT_INVLPG_LOCAL => MmuextOp::InvlpgLocal(arg1 as u32),
            _ => return Err(XenError::BadCommand { cmd }),
        })
    }

    /// The pin command for a table of type `ty` (`None` for a non-table type).
    pub const fn pin(ty: PageType, pfn: Pfn) -> Option<Self> {
        match ty {
            PageType::L1 => Some(MmuextOp::PinL1Table(pfn)),
            PageType::L2 | PageType::PaeXenL2 => Some(MmuextOp::PinL2Table(pfn)),
            PageType::L3 => Some(MmuextOp::PinL3Table(pfn)),
            _ => None,
        }
    }
}

/// A hypercall, as the trace records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// One `mmu_update` request.
    MmuUpdate(MmuUpdate),
    /// One `mmuext_op` operation.
    MmuextOp(MmuextOp),
    /// `update_va_mapping(va, val, flags)`.
    UpdateVaMapping {
        /// The virtual address whose PTE changes.
        va: u32,
        /// The new PTE.
        val: Pte,
        /// `UVMF_*` bits.
        flags: UvmFlags,
    },
    /// Not a hypercall: a direct store into a read-only mapping of a validated L1 that faulted
    /// and that the hypervisor emulated (`ptwr_do_page_fault`).
    Ptwr {
        /// The faulting virtual address.
        va: u32,
        /// The value stored (its low `bytes` bytes).
        val: u64,
        /// The store's width in bytes.
        bytes: u32,
    },
}
