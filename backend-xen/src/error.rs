//! Typed refusals and protocol errors, in the spirit of Xen's negative errno returns.
//!
//! Every hypercall the model refuses returns one of these, naming the frame (and, for an
//! entry, the table and index) and the rule broken. The guest-side hooks report the same
//! type when they catch the kernel breaking the hook protocol.

use crate::types::PageType;
use core::fmt;
use paravirt_core::Pfn;

/// The errno class of a refusal (Xen hypercalls return `-errno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `-EINVAL`: the request breaks a page-type or pinning rule.
    Inval,
    /// `-EPERM`: the domain may not touch that frame (it is not the domain's RAM).
    Perm,
    /// `-ENOMEM`: the model's fixed capacity (its frame table) is exhausted.
    NoMem,
    /// `-ENOSYS`: a command the model does not implement.
    NoSys,
    /// `-EBUSY`: a guest-side protocol error caught by the hooks (no hypercall refused it).
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
    /// The frame lies beyond the model's fixed frame table.
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
    /// An entry sets bits its level forbids (a PAE PDPT entry may hold only PRESENT, PWT, PCD).
    ReservedBits {
        /// The table.
        table: Pfn,
        /// The entry's index.
        index: u32,
        /// The value refused.
        val: u64,
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
    /// A pin at a level this paging mode does not have (L3 in two-level mode, L4 on i386).
    BadLevel {
        /// The frame.
        pfn: Pfn,
        /// The level asked for (3 for L3 in two-level mode, 4 for L4).
        level: u8,
    },
    /// `MMUEXT_NEW_BASEPTR` to a root that is not pinned at the root level (L2 two-level, L3 PAE).
    BaseNotPinned {
        /// The root.
        pfn: Pfn,
        /// The level a root must have.
        want: PageType,
        /// What it has.
        has: PageType,
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
    /// Guest side: `exit_mmap` of the root currently loaded (it is switched away first).
    ExitActiveRoot {
        /// The root.
        pfn: Pfn,
    },
}

impl XenError {
    /// The errno class.
    pub const fn errno(&self) -> Errno {
        match self {
            XenError::ForeignFrame { .. } => Errno::Perm,
            XenError::Capacity { .. } | XenError::CountOverflow { .. } => Errno::NoMem,
            XenError::BadCommand { .. } => Errno::NoSys,
            XenError::AllocWhilePinned { .. }
            | XenError::AlreadyAnnounced { .. }
            | XenError::NotAnnounced { .. }
            | XenError::ExitActiveRoot { .. } => Errno::Busy,
            _ => Errno::Inval,
        }
    }

    /// The frame the error is about (the table, for entry errors), if any.
    pub const fn pfn(&self) -> Option<Pfn> {
        match *self {
            XenError::ForeignFrame { pfn }
            | XenError::Capacity { pfn }
            | XenError::TypeConflict { pfn, .. }
            | XenError::MappedWritable { pfn, .. }
            | XenError::CountOverflow { pfn }
            | XenError::AlreadyPinned { pfn }
            | XenError::NotPinned { pfn }
            | XenError::BadLevel { pfn, .. }
            | XenError::BaseNotPinned { pfn, .. }
            | XenError::PtBaseAlreadySet { pfn }
            | XenError::AllocWhilePinned { pfn }
            | XenError::AlreadyAnnounced { pfn }
            | XenError::NotAnnounced { pfn, .. }
            | XenError::ExitActiveRoot { pfn } => Some(pfn),
            XenError::WritablePageTable { table, .. }
            | XenError::LargePage { table, .. }
            | XenError::ReservedBits { table, .. }
            | XenError::BadIndex { table, .. }
            | XenError::TableModified { table, .. } => Some(table),
            XenError::BadCommand { .. } | XenError::NoLinearMap | XenError::NotMapped { .. } => None,
        }
    }

    /// The rule broken, in a few words.
    pub const fn rule(&self) -> &'static str {
        match self {
            XenError::ForeignFrame { .. } => "frame is not RAM of the domain",
            XenError::Capacity { .. } => "frame beyond the model's frame table",
            XenError::TypeConflict { .. } => "page already has another type",
            XenError::MappedWritable { .. } => "a page mapped writable cannot become a page table",
            XenError::WritablePageTable { .. } => "a page-table page may never be mapped writable",
            XenError::LargePage { .. } => "no PSE mappings in a PV guest",
            XenError::ReservedBits { .. } => "entry sets bits its level forbids",
            XenError::BadIndex { .. } => "entry index beyond the table",
            XenError::CountOverflow { .. } => "type count overflow",
            XenError::AlreadyPinned { .. } => "table is already pinned",
            XenError::NotPinned { .. } => "unpin of a table that is not pinned",
            XenError::BadLevel { .. } => "no such page-table level in this paging mode",
            XenError::BaseNotPinned { .. } => "new base pointer must be a root pinned at the root level",
            XenError::BadCommand { .. } => "unknown or unmodelled command",
            XenError::NoLinearMap => "the domain's initial page table is not known yet",
            XenError::NotMapped { .. } => "address not mapped by a 4 KiB PTE",
            XenError::PtBaseAlreadySet { .. } => "initial page table already set",
            XenError::TableModified { .. } => "validated table changed without mmu_update",
            XenError::AllocWhilePinned { .. } => "page announced while still pinned (freed without release)",
            XenError::AlreadyAnnounced { .. } => "page announced twice",
            XenError::NotAnnounced { .. } => "page table linked without alloc_pt/alloc_pd",
            XenError::ExitActiveRoot { .. } => "exit_mmap of the loaded root",
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errno().name(), self.rule())?;
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
            XenError::ReservedBits { table, index, val } => write!(f, " ({table}[{index}] = {val:#x})"),
            XenError::BadIndex { table, index } => write!(f, " ({table}[{index}])"),
            XenError::BadLevel { pfn, level } => write!(f, " (pfn {pfn} as l{level})"),
            XenError::BaseNotPinned { pfn, want, has } => {
                write!(f, " (pfn {pfn} is {has}, a root must be a pinned {want})")
            }
            XenError::BadCommand { cmd } => write!(f, " (command {cmd})"),
            XenError::NotMapped { va } => write!(f, " (va {va:#010x})"),
            XenError::TableModified { table, level } => write!(f, " ({level} table {table})"),
            XenError::NotAnnounced { pfn, level } => write!(f, " (pfn {pfn} reached as {level})"),
            XenError::NoLinearMap => Ok(()),
            _ => match self.pfn() {
                Some(p) => write!(f, " (pfn {p})"),
                None => Ok(()),
            },
        }
    }
}
