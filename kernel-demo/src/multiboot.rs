//! Multiboot v1 information: the memory map (flags bit 6) and the extent of
//! the loader's own structures (which QEMU places right after the kernel).

use core::fmt;

use crate::layout::{phys_to_virt, BOOT_MAP_SIZE};

/// Value of EAX at entry when a multiboot v1 loader started the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// `flags` bit 0: `mem_lower`/`mem_upper` are valid.
const FLAG_MEM: u32 = 1 << 0;
/// `flags` bit 2: `cmdline` is valid.
const FLAG_CMDLINE: u32 = 1 << 2;
/// `flags` bit 3: `mods_count`/`mods_addr` are valid.
const FLAG_MODS: u32 = 1 << 3;
/// `flags` bit 6: `mmap_length`/`mmap_addr` are valid.
const FLAG_MMAP: u32 = 1 << 6;
/// `flags` bit 9: `boot_loader_name` is valid.
const FLAG_LOADER_NAME: u32 = 1 << 9;

/// Size of the fixed multiboot information structure.
const INFO_SIZE: u32 = 116;

/// Memory-map entry type of usable RAM.
pub const MEMORY_AVAILABLE: u32 = 1;

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
            2 => "reserved",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "bad RAM",
            _ => "unknown",
        };
        write!(f, "[{:#011x}-{:#011x}) {:>8} KiB {}", self.base, self.end(), self.len / 1024, kind)
    }
}

/// What the kernel keeps from the multiboot information.
#[derive(Debug)]
pub struct BootInfo {
    /// Raw `flags` word.
    pub flags: u32,
    /// KiB of low memory (below 1 MiB), if `flags` bit 0.
    pub mem_lower_kib: Option<u32>,
    /// KiB of memory above 1 MiB, if `flags` bit 0.
    pub mem_upper_kib: Option<u32>,
    regions: [MemoryRegion; MAX_REGIONS],
    region_count: usize,
    /// Physical address and length (without the NUL) of the command line, if
    /// `flags` bit 2.
    cmdline: Option<(u32, u32)>,
    /// First physical address past every multiboot structure (info block,
    /// memory map, command line, module list and modules, loader name): the
    /// frame allocator must not hand out anything below it.
    pub structures_end: u32,
}

impl BootInfo {
    /// The memory map, in loader order.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The kernel command line (QEMU passes the kernel path, then `-append`),
    /// or `""`. Non-UTF-8 command lines read as `""`.
    pub fn cmdline(&self) -> &'static str {
        let Some((pa, len)) = self.cmdline else {
            return "";
        };
        // SAFETY: `parse` checked the string (NUL included) lies inside the boot
        // linear map, which is never unmapped, and the frame allocator never
        // hands out memory below `structures_end`, so the bytes stay as the
        // loader wrote them.
        let bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(pa), len as usize) };
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Total bytes of usable RAM in the memory map.
    pub fn usable_bytes(&self) -> u64 {
        self.regions().iter().filter(|r| r.is_usable()).map(|r| r.len).sum()
    }
}

/// Why the multiboot information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultibootError {
    /// EAX did not hold [`BOOTLOADER_MAGIC`].
    BadMagic(u32),
    /// `flags` bit 6 is clear: no memory map.
    NoMemoryMap,
    /// A structure lies outside the boot linear map, so it cannot be read.
    OutOfReach(u32),
    /// More than [`MAX_REGIONS`] memory-map entries.
    TooManyRegions,
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "not started by a multiboot loader (EAX = {m:#010x})"),
            Self::NoMemoryMap => f.write_str("the loader provided no memory map (flags bit 6)"),
            Self::OutOfReach(pa) => {
                write!(f, "multiboot structure at {pa:#x} is outside the boot map")
            }
            Self::TooManyRegions => write!(f, "more than {MAX_REGIONS} memory-map entries"),
        }
    }
}

/// Reads a `T` at physical address `pa` (through the linear map).
///
/// # Safety
/// `pa..pa+size_of::<T>()` must be readable memory holding a valid `T`.
unsafe fn read_phys<T: Copy>(pa: u32) -> Result<T, MultibootError> {
    let size = core::mem::size_of::<T>() as u32;
    if pa.checked_add(size).is_none_or(|end| end > BOOT_MAP_SIZE) {
        return Err(MultibootError::OutOfReach(pa));
    }
    // SAFETY: in range of the linear map (checked above); the caller guarantees
    // the bytes are a valid `T`; multiboot fields may be unaligned.
    Ok(unsafe { phys_to_virt(pa).cast::<T>().read_unaligned() })
}

/// Length of the NUL-terminated string at `pa`, terminator included.
///
/// # Safety
/// `pa` must point at a NUL-terminated string inside the boot linear map.
unsafe fn c_string_len(pa: u32) -> Result<u32, MultibootError> {
    let mut len = 0;
    loop {
        // SAFETY: forwarded from the caller; `read_phys` checks the range.
        if unsafe { read_phys::<u8>(pa + len) }? == 0 {
            return Ok(len + 1);
        }
        len += 1;
    }
}

/// Parses the multiboot information at physical address `info`.
///
/// # Safety
/// `magic` and `info` must be the EAX and EBX values the loader passed at
/// entry, and the loader's structures must not have been overwritten since.
pub unsafe fn parse(magic: u32, info: u32) -> Result<BootInfo, MultibootError> {
    if magic != BOOTLOADER_MAGIC {
        return Err(MultibootError::BadMagic(magic));
    }
    // SAFETY: the loader guarantees the information block and whatever its valid
    // flags point at are in RAM (this covers the `read_phys` and `c_string_len`
    // calls below as well; `read_phys` itself checks the linear-map range).
    let field = |offset: u32| unsafe { read_phys::<u32>(info + offset) };
    let flags = field(0)?;
    let mut end = info + INFO_SIZE;
    let mut bump = |pa: u32, len: u32| end = end.max(pa.saturating_add(len));

    let (mem_lower_kib, mem_upper_kib) =
        if flags & FLAG_MEM != 0 { (Some(field(4)?), Some(field(8)?)) } else { (None, None) };
    let mut cmdline = None;
    if flags & FLAG_CMDLINE != 0 {
        let pa = field(16)?;
        // SAFETY: see `field` above.
        let len = unsafe { c_string_len(pa) }?;
        bump(pa, len);
        cmdline = Some((pa, len - 1));
    }
    if flags & FLAG_MODS != 0 {
        let (count, addr) = (field(20)?, field(24)?);
        bump(addr, count * 16);
        for i in 0..count {
            // SAFETY: see `field` above; each module entry is (start, end, string, reserved).
            let mod_end = unsafe { read_phys::<u32>(addr + i * 16 + 4) }?;
            bump(mod_end, 0);
        }
    }
    if flags & FLAG_LOADER_NAME != 0 {
        let name = field(64)?;
        // SAFETY: see `field` above.
        bump(name, unsafe { c_string_len(name) }?);
    }
    if flags & FLAG_MMAP == 0 {
        return Err(MultibootError::NoMemoryMap);
    }
    let (mmap_len, mmap_addr) = (field(44)?, field(48)?);
    bump(mmap_addr, mmap_len);

    let mut regions = [MemoryRegion::default(); MAX_REGIONS];
    let mut count = 0;
    let mut entry = mmap_addr;
    while entry < mmap_addr + mmap_len {
        // SAFETY: see `field` above; each entry is `size` (not counting itself), then
        // base (u64), length (u64), type (u32).
        let (size, base, len, kind) = unsafe {
            (
                read_phys::<u32>(entry)?,
                read_phys::<u64>(entry + 4)?,
                read_phys::<u64>(entry + 12)?,
                read_phys::<u32>(entry + 20)?,
            )
        };
        let slot = regions.get_mut(count).ok_or(MultibootError::TooManyRegions)?;
        *slot = MemoryRegion { base, len, kind };
        count += 1;
        entry += size + 4;
    }

    Ok(BootInfo { flags, mem_lower_kib, mem_upper_kib, regions, region_count: count, cmdline, structures_end: end })
}
