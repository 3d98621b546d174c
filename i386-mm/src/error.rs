//! Typed errors. Every failing operation leaves the page tables, the backend and the frame
//! pool exactly as they were.

use core::fmt;
use paravirt_core::Pfn;

/// Why an `i386-mm` operation was refused. `Debug` shows addresses and flags in hex
/// (`OutOfRange(0xc0000000)`) and frames as pfns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MmError {
    /// No frame could be allocated (`-ENOMEM`); everything allocated so far was given back.
    OutOfMemory,
    /// The virtual address is not 4 KiB aligned.
    Unaligned(u32),
    /// The virtual address is outside the range the operation works on (user space below
    /// `TASK_SIZE`, or the kernel's vmalloc area).
    OutOfRange(u32),
    /// Something is already mapped at the address.
    AlreadyMapped(u32),
    /// Nothing is mapped at the address.
    NotMapped(u32),
    /// The frame is beyond the end of RAM.
    PfnOutOfRange(Pfn),
    /// The flags are not valid for this operation (e.g. `PSE` on a 4 KiB mapping).
    BadFlags(u64),
    /// The kernel's tables cannot be torn down while this many address spaces are alive.
    AddressSpacesAlive(usize),
    /// `change_page_attr` back to `PAGE_KERNEL` on a page that was never changed (Linux `BUG()`s).
    AttrNotChanged(Pfn),
    /// The operation needs the boot page tables (`pagetable_init`) first.
    NotInitialised,
    /// The root is loaded in CR3: it cannot be freed (`shutdown`, `destroy`) until another is.
    RootLoaded(Pfn),
    /// The function exists only in the other paging mode (`one_md_table_init` in two-level
    /// mode, where the pmd is folded into the pgd).
    WrongMode,
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmError::OutOfMemory => f.write_str("out of memory"),
            MmError::Unaligned(va) => write!(f, "address {va:#010x} is not page aligned"),
            MmError::OutOfRange(va) => write!(f, "address {va:#010x} is out of range"),
            MmError::AlreadyMapped(va) => write!(f, "address {va:#010x} is already mapped"),
            MmError::NotMapped(va) => write!(f, "address {va:#010x} is not mapped"),
            MmError::PfnOutOfRange(p) => write!(f, "{p:?} is beyond the end of RAM"),
            MmError::BadFlags(b) => write!(f, "flags {b:#x} are not allowed here"),
            MmError::AddressSpacesAlive(n) => write!(f, "{n} address space(s) still alive"),
            MmError::AttrNotChanged(p) => write!(f, "{p:?} has no changed attribute to restore"),
            MmError::NotInitialised => f.write_str("pagetable_init has not run"),
            MmError::RootLoaded(p) => write!(f, "root {p:?} is loaded in CR3"),
            MmError::WrongMode => f.write_str("not available in this paging mode"),
        }
    }
}

impl fmt::Debug for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmError::OutOfMemory => f.write_str("OutOfMemory"),
            MmError::Unaligned(va) => write!(f, "Unaligned({va:#010x})"),
            MmError::OutOfRange(va) => write!(f, "OutOfRange({va:#010x})"),
            MmError::AlreadyMapped(va) => write!(f, "AlreadyMapped({va:#010x})"),
            MmError::NotMapped(va) => write!(f, "NotMapped({va:#010x})"),
            MmError::PfnOutOfRange(p) => write!(f, "PfnOutOfRange({p:?})"),
            MmError::BadFlags(b) => write!(f, "BadFlags({b:#x})"),
            MmError::AddressSpacesAlive(n) => write!(f, "AddressSpacesAlive({n})"),
            MmError::AttrNotChanged(p) => write!(f, "AttrNotChanged({p:?})"),
            MmError::NotInitialised => f.write_str("NotInitialised"),
            MmError::RootLoaded(p) => write!(f, "RootLoaded({p:?})"),
            MmError::WrongMode => f.write_str("WrongMode"),
        }
    }
}

impl core::error::Error for MmError {}
