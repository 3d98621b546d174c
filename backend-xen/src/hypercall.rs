//! The hypercall surface, with Xen's numbering (`xen/include/public/xen.h`): `mmu_update`,
//! `mmuext_op` and `update_va_mapping` (`do_mmu_update`, `do_mmuext_op`,
//! `do_update_va_mapping` in `xen/arch/x86/mm.c`).
//!
//! Each call takes the hypervisor lock, is counted, traced, and either succeeds or is refused
//! with a typed [`XenError`] naming the frame and the rule.

use crate::error::XenError;
use crate::hypervisor::HvState;
use crate::table::{hv_store, root_type};
use crate::trace::TraceEntry;
use crate::types::PageType;
use crate::xen::Xen;
use bitflags::bitflags;
use i386_mm::{PagingMode, PhysMem};
use paravirt_core::Pfn;

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
/// `MMUEXT_PIN_L4_TABLE` (refused on i386).
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_NEW_BASEPTR`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_INVLPG_LOCAL`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Number of `mmuext_op` commands modelled (`0..=7`).
pub const MMUEXT_OPS: usize = 8;
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

/// One `mmu_update_t` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuUpdate {
    /// Physical address of the entry, with the command in the low bits.
    pub ptr: u64,
    /// The new entry.
    pub val: u64,
}

impl MmuUpdate {
    /// An `MMU_NORMAL_PT_UPDATE` of the entry at physical address `entry_pa`.
    pub const fn normal(entry_pa: u64, val: u64) -> Self {
        MmuUpdate { ptr: entry_pa | MMU_NORMAL_PT_UPDATE, val }
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
    /// `MMUEXT_PIN_L4_TABLE`: refused (no L4 on i386).
    PinL4Table(Pfn),
    /// `MMUEXT_UNPIN_TABLE`.
    UnpinTable(Pfn),
    /// `MMUEXT_NEW_BASEPTR`: load a pinned root.
    NewBaseptr(Pfn),
    /// `MMUEXT_TLB_FLUSH_LOCAL`.
    TlbFlushLocal,
    /// `MMUEXT_INVLPG_LOCAL`.
    InvlpgLocal(u32),
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
        }
    }

    /// Decodes a raw `(cmd, arg1)` pair (`arg1` is a frame number, or a linear address for
    /// `INVLPG_LOCAL`).
    pub fn from_raw(cmd: u32, arg1: u64) -> Result<Self, XenError> {
        let pfn = Pfn(arg1 as u32);
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
            PageType::L2 => Some(MmuextOp::PinL2Table(pfn)),
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
        val: u64,
        /// `UVMF_*` bits.
        flags: u32,
    },
}

impl<M: PagingMode, P: PhysMem, const N: usize> Xen<'_, M, P, N> {
    /// `HYPERVISOR_mmu_update(req, count, &success_count)`: applies the requests in order,
    /// stopping at the first refusal. `success_count` is set to the number applied.
    ///
    /// `MMU_NORMAL_PT_UPDATE` on a validated table re-validates the new entry against the
    /// table's level (taking its type references), stores it, then drops the old entry's
    /// references. On a frame that is not a validated table it is a plain store, as in Xen
    /// (the frame is an ordinary page).
    #[doc(alias = "do_mmu_update")]
    pub fn mmu_update(&self, reqs: &[MmuUpdate], success_count: &mut usize) -> Result<(), XenError> {
        *success_count = 0;
        for r in reqs {
            self.mmu_update_one(*r)?;
            *success_count += 1;
        }
        Ok(())
    }

    pub(crate) fn mmu_update_one(&self, r: MmuUpdate) -> Result<(), XenError> {
        let mut hv = self.table.hv.lock();
        hv.stats.mmu_update += 1;
        let res = (|| {
            let esz = M::ENTRY_SIZE as u64;
            let cmd = r.ptr & (esz - 1);
            if cmd != MMU_NORMAL_PT_UPDATE {
                return Err(XenError::BadCommand { cmd: cmd as u32 });
            }
            let pa = r.ptr & !(esz - 1);
            let table = Pfn::from_phys(pa);
            let index = ((pa & 0xfff) / esz) as u32;
            hv.check_frame(&self.mem, table)?;
            match hv.validated(table) {
                Some(ty) => hv.update_entry::<M, P>(&self.mem, table, ty, index, r.val),
                None => {
                    hv_store::<M, P>(&self.mem, table, index, r.val);
                    Ok(())
                }
            }
        })();
        self.finish(&mut hv, Hypercall::MmuUpdate(r), res)
    }

    /// `HYPERVISOR_mmuext_op(ops, count, &success_count)`: performs the operations in order,
    /// stopping at the first refusal.
    ///
    /// Pinning validates the table recursively (an L2 entry must reference a page that
    /// validates as L1, an L3 entry an L2; an L1 entry may map any frame of the domain but
    /// never a page-table page writable) and refuses a page that is mapped writable.
    /// `NEW_BASEPTR` needs a root pinned at the root level (L2 two-level, L3 PAE).
    #[doc(alias = "do_mmuext_op")]
    pub fn mmuext_op(&self, ops: &[MmuextOp], success_count: &mut usize) -> Result<(), XenError> {
        *success_count = 0;
        for op in ops {
            self.mmuext_one(*op)?;
            *success_count += 1;
        }
        Ok(())
    }

    pub(crate) fn mmuext_one(&self, op: MmuextOp) -> Result<(), XenError> {
        let mut hv = self.table.hv.lock();
        hv.stats.mmuext[op.cmd() as usize] += 1;
        let mem = &self.mem;
        let res = match op {
            MmuextOp::PinL1Table(p) => hv.pin::<M, P>(mem, p, PageType::L1),
            MmuextOp::PinL2Table(p) => hv.pin::<M, P>(mem, p, PageType::L2),
            MmuextOp::PinL3Table(p) if M::PAE => hv.pin::<M, P>(mem, p, PageType::L3),
            MmuextOp::PinL3Table(pfn) => Err(XenError::BadLevel { pfn, level: 3 }),
            MmuextOp::PinL4Table(pfn) => Err(XenError::BadLevel { pfn, level: 4 }),
            MmuextOp::UnpinTable(p) => hv.unpin::<M, P>(mem, p),
            MmuextOp::NewBaseptr(p) => hv.new_baseptr::<M, P>(mem, p),
            MmuextOp::TlbFlushLocal => Ok(()),
            MmuextOp::InvlpgLocal(va) => {
                if let Some(f) = self.invlpg {
                    f(va);
                }
                Ok(())
            }
        };
        self.finish(&mut hv, Hypercall::MmuextOp(op), res)
    }

    /// `HYPERVISOR_update_va_mapping(va, val, flags)`: replaces the PTE that maps `va` in the
    /// linear map (the tree of the domain's initial page table, [`set_pt_base`](Self::set_pt_base)).
    ///
    /// When that PTE's L1 is validated the update is checked like `mmu_update` (so a page-table
    /// page can never be made writable); before the tables are pinned it is a plain store.
    /// `UVMF_INVLPG` / `UVMF_TLB_FLUSH` run the vCPU's `invlpg` hook afterwards, if one was
    /// given ([`Xen::with_invlpg`]).
    #[doc(alias = "do_update_va_mapping")]
    pub fn update_va_mapping(&self, va: u32, val: u64, flags: UvmFlags) -> Result<(), XenError> {
        let mut hv = self.table.hv.lock();
        hv.stats.update_va_mapping += 1;
        let res = (|| {
            let (l1, index) = hv.linear_slot::<M, P>(&self.mem, va)?;
            match hv.validated(l1) {
                Some(ty) => hv.update_entry::<M, P>(&self.mem, l1, ty, index, val),
                None => {
                    hv_store::<M, P>(&self.mem, l1, index, val);
                    Ok(())
                }
            }
        })();
        if res.is_ok() && flags.intersects(UvmFlags::INVLPG | UvmFlags::TLB_FLUSH) {
            if let Some(f) = self.invlpg {
                f(va);
            }
        }
        self.finish(&mut hv, Hypercall::UpdateVaMapping { va, val, flags: flags.bits() }, res)
    }

    /// Records the domain's initial page table: the model's stand-in for the domain builder
    /// handing `start_info.pt_base` over. Its kernel range holds the linear map that
    /// [`update_va_mapping`](Self::update_va_mapping) edits. The guest side calls it with
    /// the first root it loads (`swapper_pg_dir` after `pagetable_init`); it is forgotten
    /// when that root is torn down (`exit_mmap`).
    pub fn set_pt_base(&self, root: Pfn) -> Result<(), XenError> {
        let mut hv = self.table.hv.lock();
        let res = match hv.pt_base {
            Some(pfn) => Err(XenError::PtBaseAlreadySet { pfn }),
            None => hv.check_frame(&self.mem, root).map(|_| hv.pt_base = Some(root)),
        };
        if let Err(e) = res {
            hv.stats.refusals[e.errno().index()] += 1;
        }
        res
    }

    /// Counts a refusal and traces the call.
    fn finish(&self, hv: &mut HvState<N>, call: Hypercall, res: Result<(), XenError>) -> Result<(), XenError> {
        if let Err(e) = res {
            hv.stats.refusals[e.errno().index()] += 1;
        }
        hv.trace.push(TraceEntry { call, error: res.err() });
        res
    }

    /// The root level in this paging mode (L2 two-level, L3 PAE).
    pub fn root_level(&self) -> PageType {
        root_type::<M>()
    }
}
