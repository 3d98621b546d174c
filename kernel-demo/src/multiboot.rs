//! Multiboot v1 information, read with the `multiboot` crate through the boot linear map: the
//! memory map (flags bit 6), the command line, and the extent of the loader's own structures
//! (which QEMU places right after the kernel).

use core::fmt;

use multiboot::information::{MemoryManagement, Multiboot, MultibootInfo, PAddr, SIGNATURE_EAX};

use crate::layout::{phys_to_virt, BOOT_MAP_SIZE};

/// Memory-map entry type of usable RAM.
const MEMORY_AVAILABLE: u32 = 1;

/// Most memory-map entries kept (QEMU reports about six).
pub const MAX_REGIONS: usize = 32;

/// One memory-map entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Entry type: 1 usable RAM, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 bad.
    pub kind: u32,
}

impl MemoryRegion {
    /// Whether the range is usable RAM.
    pub fn is_usable(&self) -> bool {
        self.kind == MEMORY_AVAILABLE
    }

    /// First address past the range.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }
}

impl fmt::Display for MemoryRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            1 => "usable",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "bad RAM",
            _ => "reserved",
        };
        write!(f, "[{:#011x}-{:#011x}) {:>8} KiB {}", self.base, self.end(), self.len / 1024, kind)
    }
}

/// What the kernel keeps from the multiboot information.
#[derive(Debug)]
pub struct BootInfo {
    regions: [MemoryRegion; MAX_REGIONS],
    region_count: usize,
    /// The kernel command line (QEMU passes the kernel path, then `-append`), or `""`.
    cmdline: &'static str,
    /// First physical address past every multiboot structure (info block, memory map, command
    /// line, module list and modules, loader name, symbols), rounded up to a page: the frame
    /// allocator must not hand out anything below it.
    pub structures_end: u32,
}

impl BootInfo {
    /// The memory map, in loader order.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The kernel command line, or `""` (also when it is not UTF-8).
    pub fn cmdline(&self) -> &'static str {
        self.cmdline
    }

    /// Total bytes of usable RAM in the memory map.
    pub fn usable_bytes(&self) -> u64 {
        self.regions().iter().filter(|r| r.is_usable()).map(|r| r.len).sum()
    }
}

/// Why the multiboot information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultibootError {
    /// EAX did not hold the multiboot v1 magic `0x2BADB002`.
    BadMagic(u32),
    /// `flags` bit 6 is clear: no memory map.
    NoMemoryMap,
    /// A structure lies outside the boot linear map, so it cannot be read.
    OutOfReach(u64),
    /// More than [`MAX_REGIONS`] memory-map entries.
    TooManyRegions,
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "not started by a multiboot loader (EAX = {m:#010x})"),
            Self::NoMemoryMap => f.write_str("the loader provided no memory map (flags bit 6)"),
            Self::OutOfReach(pa) => write!(f, "multiboot structures reach {pa:#x}, outside the boot map"),
            Self::TooManyRegions => write!(f, "more than {MAX_REGIONS} memory-map entries"),
        }
    }
}

/// Physical memory as the `multiboot` crate reads it: the boot linear map, bounds-checked,
/// read-only (the kernel never rewrites the loader's information).
struct BootMap;

impl MemoryManagement for BootMap {
    unsafe fn paddr_to_slice(&self, addr: PAddr, length: usize) -> Option<&'static [u8]> {
        let end = addr.checked_add(u64::try_from(length).ok()?)?;
        if end > u64::from(BOOT_MAP_SIZE) {
            return None;
        }
        // SAFETY: `addr..end` lies inside the boot linear map (checked above), which maps
        // 0..BOOT_MAP_SIZE at PAGE_OFFSET for the kernel's whole life; the crate asks only for
        // the loader's structures, which the frame allocator never hands out (they lie below
        // `structures_end`), so the bytes stay as the loader wrote them and nothing writes them.
        Some(unsafe { core::slice::from_raw_parts(phys_to_virt(addr as u32), length) })
    }

    unsafe fn allocate(&mut self, _length: usize) -> Option<(PAddr, &mut [u8])> {
        None
    }

    unsafe fn deallocate(&mut self, _addr: PAddr) {
        unreachable!("the kernel never changes the multiboot information");
    }
}

/// Parses the multiboot information at physical address `info`.
///
/// # Errors
/// [`MultibootError`]: not a multiboot v1 start, no memory map, structures out of reach, or
/// too many memory-map entries.
///
/// # Safety
/// `magic` and `info` must be the EAX and EBX values the loader passed at entry, and the
/// loader's structures must not have been overwritten since.
pub unsafe fn parse(magic: u32, info: u32) -> Result<BootInfo, MultibootError> {
    if magic != SIGNATURE_EAX {
        return Err(MultibootError::BadMagic(magic));
    }
    let mut map = BootMap;
    // SAFETY: `info` is the loader's information block (the caller's contract) and `map`
    // translates physical addresses through the boot linear map, checking the range.
    let mb = unsafe { Multiboot::from_ptr(PAddr::from(info), &mut map) }
        .ok_or(MultibootError::OutOfReach(PAddr::from(info)))?;

    let mut regions = [MemoryRegion::default(); MAX_REGIONS];
    let mut count = 0;
    for entry in mb.memory_regions().ok_or(MultibootError::NoMemoryMap)? {
        let slot = regions.get_mut(count).ok_or(MultibootError::TooManyRegions)?;
        *slot = MemoryRegion { base: entry.base_address(), len: entry.length(), kind: entry.memory_type() as u32 };
        count += 1;
    }
    let cmdline = mb.command_line().map_or("", |s| {
        // SAFETY: the crate built `s` (without checking UTF-8) over a slice `BootMap` returned,
        // which is valid for the kernel's whole life; only its address and length are used here.
        let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(s.as_ptr(), s.len()) };
        core::str::from_utf8(bytes).unwrap_or("")
    });
    let info_end = PAddr::from(info) + core::mem::size_of::<MultibootInfo>() as PAddr;
    let end = mb.find_highest_address().max(info_end.next_multiple_of(4096));
    let structures_end =
        u32::try_from(end).ok().filter(|&e| e <= BOOT_MAP_SIZE).ok_or(MultibootError::OutOfReach(end))?;
    Ok(BootInfo { regions, region_count: count, cmdline, structures_end })
}
