//! Typed refusals and protocol errors, in the spirit of Xen's negative errno returns.
//!
//! Every hypercall the model refuses returns one of these, naming the frame (and, for an
//! entry, the table and index) and the rule broken. The guest-side hooks report the same
//! type when they catch the kernel breaking the hook protocol. [`XenError`] is the backend's
//! [`Rule`]: its [`origin`](Rule::origin) says whether the real Xen refuses the request
//! ([`Origin::Hypervisor`]) or only this project's checker objects ([`Origin::Checker`]).

use crate::types::PageType;
use core::fmt;
use paravirt_core::{Origin, Pfn, Rule};

/// The errno class of a refusal (Xen hypercalls return `-errno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `-EINVAL`: the request breaks a page-type or pinning rule.
    Inval,
    /// `-EPERM`: the domain may not touch that frame (it is not the domain's RAM).
    Perm,
    /// `-ENOMEM`: the frame has no record (the frame table is not set up), or a type count
    /// would overflow.
    NoMem,
    /// `-ENOSYS`: a command the model does not implement.
    NoSys,
    /// `-EBUSY`: Xen's answer when a page-table frame would be mapped writable, and the class
    /// of the guest-side protocol errors the hooks catch (checker rules, see
    /// [`Origin::Checker`]).
    Busy,
}

impl Errno {
    /// Number of errno classes (for per-class counters).
    pub const COUNT: usize = 5;

    /// The negative value Xen would return.
    pub const fn code(self) -> i32 {
        match self {
            Errno::Inval => -22,
            Errno::Perm => -1,
            Errno::NoMem => -12,
            Errno::NoSys => -38,
            Errno::Busy => -16,
        }
    }

    /// The symbolic name (`"EINVAL"`...).
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Inval => "EINVAL",
            Errno::Perm => "EPERM",
            Errno::NoMem => "ENOMEM",
            Errno::NoSys => "ENOSYS",
            Errno::Busy => "EBUSY",
        }
    }

    /// Dense index `0..COUNT`.
    pub const fn index(self) -> usize {
        match self {
            Errno::Inval => 0,
            Errno::Perm => 1,
            Errno::NoMem => 2,
            Errno::NoSys => 3,
            Errno::Busy => 4,
        }
    }

    /// All classes in [`index`](Self::index) order.
    pub const ALL: [Errno; Self::COUNT] = [Errno::Inval, Errno::Perm, Errno::NoMem, Errno::NoSys, Errno::Busy];
}

/// Why the hypervisor model refused a request, or what protocol error the guest side caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenError {
    /// The frame is not RAM of this domain (at or beyond `max_pfn`).
    ForeignFrame {
        /// The frame.
        pfn: Pfn,
    },
    /// The frame has no record: the hypervisor's frame table is not set up
    /// ([`Hypervisor::init_frametable`](crate::Hypervisor::init_frametable), or after
    /// [`Hypervisor::free_frametable`](crate::Hypervisor::free_frametable)), or the guest's
    /// per-page flags are not ([`Xen::init`](crate::Xen::init)). Once both are set up every
    /// frame of RAM has a record, and a frame beyond RAM is [`XenError::ForeignFrame`].
    Capacity {
        /// The frame.
        pfn: Pfn,
    },
    /// `get_page_type`: the frame already holds another type with live references.
    TypeConflict {
        /// The frame.
        pfn: Pfn,
        /// The type asked for.
        want: PageType,
        /// The type it has.
        has: PageType,
        /// References holding that type.
        count: u32,
    },
    /// A frame mapped writable (writable type count > 0) cannot become a page table.
    MappedWritable {
        /// The frame.
        pfn: Pfn,
        /// Writable mappings of it in validated L1s.
        mappings: u32,
    },
    /// An L1 entry would map a page-table page writable.
    WritablePageTable {
        /// The L1 holding the entry.
        table: Pfn,
        /// The entry's index.
        index: u32,
        /// The page-table page it would map.
        target: Pfn,
        /// That page's type.
        target_type: PageType,
    },
    /// A directory entry maps a large page: Xen PV guests run without PSE.
    LargePage {
        /// The directory.
        table: Pfn,
        /// The entry's index.
        index: u32,
    },
    /// An entry sets flag bits Xen forbids at its level (`l1_disallow_mask`,
    /// `L2_DISALLOW_MASK`, `L3_DISALLOW_MASK` in `get_page_from_l1e` / `l2e` / `l3e` and
    /// `mod_lN_entry`: "Bad L1 flags").
    DisallowedFlags {
        /// The table.
        table: Pfn,
        /// The entry's index.
        index: u32,
        /// The table's level.
        level: PageType,
        /// The forbidden bits the entry sets (raw entry bits).
        bits: u64,
    },
    /// A guest update of one of Xen's own slots at the top of an L2 (`mod_l2_entry`: "Illegal
    /// L2 update attempt in Xen-private area"): the slots from `HYPERVISOR_VIRT_START` up in
    /// every two-level L2, and in the PAE L2 of slot 3.
    XenPrivateSlot {
        /// The L2.
        table: Pfn,
        /// The entry's index.
        index: u32,
    },
    /// A PAE L3 whose slot 3 is empty (`create_pae_xen_mappings`: "PAE L3 3rd slot is empty"):
    /// Xen's own mappings live in the L2 there.
    PaeL3SlotEmpty {
        /// The L3.
        table: Pfn,
    },
    /// The L2 in slot 3 of a PAE L3 is referenced by another L3 too
    /// (`create_pae_xen_mappings`: "PAE L3 3rd slot is shared"): Xen's private mappings in it
    /// include the L3's own linear mappings, so it cannot serve two roots.
    PaeL3SlotShared {
        /// The L3 being validated.
        table: Pfn,
        /// The L2 in its slot 3.
        l2: Pfn,
    },
    /// A guest update of slot 3 of a validated PAE L3 (`mod_l3_entry`: "Disallow updates to
    /// final L3 slot").
    PaeL3Slot3Update {
        /// The L3.
        table: Pfn,
    },
    /// `update_va_mapping` of an address whose L1 is not a validated page table
    /// (`do_update_va_mapping` through `guest_map_l1e` and `mod_l1_entry`).
    UnvalidatedL1 {
        /// The virtual address.
        va: u32,
        /// The page table that maps it.
        l1: Pfn,
    },
    /// A write fault the hypervisor does not emulate (`ptwr_do_page_fault` bails out): the
    /// address is not mapped read-only, or not onto a validated L1. The fault goes to the
    /// guest.
    NotPtwr {
        /// The faulting virtual address.
        va: u32,
    },
    /// The entry index lies beyond the table (e.g. a PDPT index ≥ 4).
    BadIndex {
        /// The table.
        table: Pfn,
        /// The index.
        index: u32,
    },
    /// A type count would overflow.
    CountOverflow {
        /// The frame.
        pfn: Pfn,
    },
    /// `MMUEXT_PIN_*` of a frame that is already pinned.
    AlreadyPinned {
        /// The frame.
        pfn: Pfn,
    },
    /// `MMUEXT_UNPIN_TABLE` of a frame that is not pinned.
    NotPinned {
        /// The frame.
        pfn: Pfn,
    },
    /// An unknown or unmodelled command number.
    BadCommand {
        /// The command.
        cmd: u32,
    },
    /// `update_va_mapping` before the domain's initial page table (`pt_base`) is known.
    NoLinearMap,
    /// `update_va_mapping` of an address no 4 KiB PTE maps in the linear map.
    NotMapped {
        /// The virtual address.
        va: u32,
    },
    /// The domain's initial page table was set twice.
    PtBaseAlreadySet {
        /// The root already recorded.
        pfn: Pfn,
    },
    /// A validated table's contents changed without `mmu_update`: a write bypassed the
    /// hypervisor (detected at unpin or by `verify`).
    TableModified {
        /// The table.
        table: Pfn,
        /// Its level.
        level: PageType,
    },
    /// Guest side: `alloc_pt`/`alloc_pd` of a frame that is still pinned, so it was freed
    /// without its `release_*` hook.
    AllocWhilePinned {
        /// The frame.
        pfn: Pfn,
    },
    /// Guest side: `alloc_pt`/`alloc_pd` of a frame already announced and not released.
    AlreadyAnnounced {
        /// The frame.
        pfn: Pfn,
    },
    /// Guest side: a table reached while pinning a tree was never announced with
    /// `alloc_pt`/`alloc_pd`.
    NotAnnounced {
        /// The frame.
        pfn: Pfn,
        /// The level it was reached at.
        level: PageType,
    },
    /// Guest side: `release_pt`/`release_pd` of a frame that was never announced with
    /// `alloc_pt`/`alloc_pd`/`alloc_pd_clone` (or was already released).
    ReleaseNotAnnounced {
        /// The frame.
        pfn: Pfn,
    },
    /// Guest side: `MMUEXT_UNPIN_TABLE` of a root that another vCPU's base pointer still holds
    /// (Linux's `xen_exit_mmap` makes every CPU leave the mm first, `xen_drop_mm_ref`).
    UnpinLoaded {
        /// The root.
        pfn: Pfn,
        /// The vCPU still running on it.
        vcpu: u32,
    },
}

impl XenError {
    /// The errno class.
    pub const fn errno(&self) -> Errno {
        match self {
            // Xen 4.17 (the oracle): `mmu_update` with `ptr` in a frame the domain does not own
            // is -EINVAL; an entry that would map a page-table frame writable is -EBUSY
            // (`get_page_type` of a frame with another type, in `get_page_from_l1e`).
            XenError::ForeignFrame { .. } => Errno::Inval,
            XenError::WritablePageTable { .. } => Errno::Busy,
            XenError::Capacity { .. } | XenError::CountOverflow { .. } => Errno::NoMem,
            XenError::BadCommand { .. } => Errno::NoSys,
            XenError::AllocWhilePinned { .. }
            | XenError::AlreadyAnnounced { .. }
            | XenError::NotAnnounced { .. }
            | XenError::ReleaseNotAnnounced { .. }
            | XenError::UnpinLoaded { .. } => Errno::Busy,
            _ => Errno::Inval,
        }
    }

    /// The frame the error is about (the table, for entry errors), if any.
    pub const fn frame(&self) -> Option<Pfn> {
        match *self {
            XenError::ForeignFrame { pfn }
            | XenError::Capacity { pfn }
            | XenError::TypeConflict { pfn, .. }
            | XenError::MappedWritable { pfn, .. }
            | XenError::CountOverflow { pfn }
            | XenError::AlreadyPinned { pfn }
            | XenError::NotPinned { pfn }
            | XenError::PtBaseAlreadySet { pfn }
            | XenError::AllocWhilePinned { pfn }
            | XenError::AlreadyAnnounced { pfn }
            | XenError::NotAnnounced { pfn, .. }
            | XenError::ReleaseNotAnnounced { pfn }
            | XenError::UnpinLoaded { pfn, .. } => Some(pfn),
            XenError::WritablePageTable { table, .. }
            | XenError::LargePage { table, .. }
            | XenError::DisallowedFlags { table, .. }
            | XenError::XenPrivateSlot { table, .. }
            | XenError::PaeL3SlotEmpty { table }
            | XenError::PaeL3SlotShared { table, .. }
            | XenError::PaeL3Slot3Update { table }
            | XenError::BadIndex { table, .. }
            | XenError::TableModified { table, .. } => Some(table),
            XenError::UnvalidatedL1 { l1, .. } => Some(l1),
            XenError::BadCommand { .. }
            | XenError::NoLinearMap
            | XenError::NotMapped { .. }
            | XenError::NotPtwr { .. } => None,
        }
    }

    /// The rule broken, in a few words.
    pub const fn summary(&self) -> &'static str {
        match self {
            XenError::ForeignFrame { .. } => "frame is not RAM of the domain",
            XenError::Capacity { .. } => "frame without a record (frame table not set up)",
            XenError::TypeConflict { .. } => "page already has another type",
            XenError::MappedWritable { .. } => "a page mapped writable cannot become a page table",
            XenError::WritablePageTable { .. } => "a page-table page may never be mapped writable",
            XenError::LargePage { .. } => "no PSE mappings in a PV guest",
            XenError::DisallowedFlags { .. } => "entry sets flags Xen forbids at its level",
            XenError::XenPrivateSlot { .. } => "illegal L2 update attempt in Xen-private area",
            XenError::PaeL3SlotEmpty { .. } => "PAE L3 3rd slot is empty",
            XenError::PaeL3SlotShared { .. } => "PAE L3 3rd slot is shared",
            XenError::PaeL3Slot3Update { .. } => "update of the final slot of a PAE L3",
            XenError::UnvalidatedL1 { .. } => "update_va_mapping through a page table that is not a validated l1",
            XenError::NotPtwr { .. } => "write fault not on a read-only mapping of a validated l1 (not emulated)",
            XenError::BadIndex { .. } => "entry index beyond the table",
            XenError::CountOverflow { .. } => "type count overflow",
            XenError::AlreadyPinned { .. } => "table is already pinned",
            XenError::NotPinned { .. } => "unpin of a table that is not pinned",
            XenError::BadCommand { .. } => "unknown or unmodelled command",
            XenError::NoLinearMap => "the domain's initial page table is not known yet",
            XenError::NotMapped { .. } => "address not mapped by a 4 KiB PTE",
            XenError::PtBaseAlreadySet { .. } => "initial page table already set",
            XenError::TableModified { .. } => "validated table changed without mmu_update",
            XenError::AllocWhilePinned { .. } => "page announced while still pinned (freed without release)",
            XenError::AlreadyAnnounced { .. } => "page announced twice",
            XenError::NotAnnounced { .. } => "page table linked without alloc_pt/alloc_pd",
            XenError::ReleaseNotAnnounced { .. } => "page released that was never announced",
            XenError::UnpinLoaded { .. } => "root unpinned while another vCPU runs on it",
        }
    }
}

impl Rule for XenError {
    /// A short stable name (`"writable-page-table"`...).
    fn name(&self) -> &'static str {
        match self {
            XenError::ForeignFrame { .. } => "foreign-frame",
            XenError::Capacity { .. } => "capacity",
            XenError::TypeConflict { .. } => "type-conflict",
            XenError::MappedWritable { .. } => "mapped-writable",
            XenError::WritablePageTable { .. } => "writable-page-table",
            XenError::LargePage { .. } => "large-page",
            XenError::DisallowedFlags { .. } => "disallowed-flags",
            XenError::XenPrivateSlot { .. } => "xen-private-slot",
            XenError::PaeL3SlotEmpty { .. } => "pae-l3-slot-empty",
            XenError::PaeL3SlotShared { .. } => "pae-l3-slot-shared",
            XenError::PaeL3Slot3Update { .. } => "pae-l3-slot3-update",
            XenError::UnvalidatedL1 { .. } => "unvalidated-l1",
            XenError::NotPtwr { .. } => "not-ptwr",
            XenError::BadIndex { .. } => "bad-index",
            XenError::CountOverflow { .. } => "count-overflow",
            XenError::AlreadyPinned { .. } => "already-pinned",
            XenError::NotPinned { .. } => "not-pinned",
            XenError::BadCommand { .. } => "bad-command",
            XenError::NoLinearMap => "no-linear-map",
            XenError::NotMapped { .. } => "not-mapped",
            XenError::PtBaseAlreadySet { .. } => "pt-base-already-set",
            XenError::TableModified { .. } => "table-modified",
            XenError::AllocWhilePinned { .. } => "alloc-while-pinned",
            XenError::AlreadyAnnounced { .. } => "already-announced",
            XenError::NotAnnounced { .. } => "not-announced",
            XenError::ReleaseNotAnnounced { .. } => "release-not-announced",
            XenError::UnpinLoaded { .. } => "unpin-loaded",
        }
    }

    /// The frame the error is about ([`frame`](XenError::frame)); pfn 0 for the few errors
    /// about no frame (a command number, a virtual address, the missing linear map).
    fn pfn(&self) -> Pfn {
        match self.frame() {
            Some(pfn) => pfn,
            None => Pfn::new(0),
        }
    }

    /// [`Origin::Hypervisor`] for what the real Xen refuses (its hypercalls fail the same
    /// way); [`Origin::Checker`] for what the real Xen lets through and this project reports:
    /// the guest-side protocol errors (`EBUSY`), a change the model's checksum caught, and the
    /// model's own `set_pt_base`.
    fn origin(&self) -> Origin {
        match *self {
            XenError::AllocWhilePinned { .. }
            | XenError::AlreadyAnnounced { .. }
            | XenError::NotAnnounced { .. }
            | XenError::ReleaseNotAnnounced { .. }
            | XenError::UnpinLoaded { .. }
            | XenError::TableModified { .. }
            | XenError::PtBaseAlreadySet { .. } => Origin::Checker,
            _ => Origin::Hypervisor,
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errno().name(), self.summary())?;
        match *self {
            XenError::TypeConflict { pfn, want, has, count } => {
                write!(f, " (pfn {pfn} wanted {want}, is {has} with {count} reference(s))")
            }
            XenError::MappedWritable { pfn, mappings } => {
                write!(f, " (pfn {pfn} has {mappings} writable mapping(s))")
            }
            XenError::WritablePageTable { table, index, target, target_type } => {
                write!(f, " (l1 {table}[{index}] maps {target_type} page {target} writable)")
            }
            XenError::LargePage { table, index } => write!(f, " ({table}[{index}])"),
            XenError::DisallowedFlags { table, index, level, bits } => {
                write!(f, " ({level} {table}[{index}] sets {bits:#x})")
            }
            XenError::XenPrivateSlot { table, index } => write!(f, " ({table}[{index}])"),
            XenError::PaeL3SlotShared { table, l2 } => write!(f, " (l3 {table}: l2 {l2} is another l3's too)"),
            XenError::UnvalidatedL1 { va, l1 } => write!(f, " (va {va:#010x}, l1 {l1})"),
            XenError::NotPtwr { va } => write!(f, " (va {va:#010x})"),
            XenError::BadIndex { table, index } => write!(f, " ({table}[{index}])"),
            XenError::BadCommand { cmd } => write!(f, " (command {cmd})"),
            XenError::NotMapped { va } => write!(f, " (va {va:#010x})"),
            XenError::TableModified { table, level } => write!(f, " ({level} table {table})"),
            XenError::NotAnnounced { pfn, level } => write!(f, " (pfn {pfn} reached as {level})"),
            XenError::UnpinLoaded { pfn, vcpu } => write!(f, " (pfn {pfn}, vCPU {vcpu})"),
            XenError::NoLinearMap => Ok(()),
            _ => match self.frame() {
                Some(p) => write!(f, " (pfn {p})"),
                None => Ok(()),
            },
        }
    }
}

/// Why a frame table ([`Hypervisor::init_frametable`](crate::Hypervisor::init_frametable)) or
/// the guest's per-page flags ([`Xen::init`](crate::Xen::init)) could not be set up. Nothing
/// was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The domain's memory cannot supply the records' frames.
    OutOfMemory,
    /// They are set up already.
    AlreadySetUp,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::OutOfMemory => f.write_str("xen: out of memory for the per-frame records"),
            SetupError::AlreadySetUp => f.write_str("xen: per-frame records set up twice"),
        }
    }
}

impl core::error::Error for SetupError {}

/// Why [`Hypervisor::free_frametable`](crate::Hypervisor::free_frametable) or
/// [`Xen::teardown`](crate::Xen::teardown) refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeardownError {
    /// Frames still have a type, a pin or a guest flag (or the base pointer is set).
    FramesHeld {
        /// How many.
        held: usize,
    },
    /// There is nothing to give back.
    NotSetUp,
}

impl fmt::Display for TeardownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TeardownError::FramesHeld { held } => write!(f, "xen: teardown with {held} frame(s) still held"),
            TeardownError::NotSetUp => f.write_str("xen: teardown of per-frame records never set up"),
        }
    }
}

impl core::error::Error for TeardownError {}
