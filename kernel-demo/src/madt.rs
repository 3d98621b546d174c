//! Processor discovery from the ACPI MADT ("APIC" table) the firmware
//! (SeaBIOS) provides, parsed with the `acpi` crate: the RSDP is found in the
//! BIOS area, the tables are read through identity windows in the boot page
//! tables ([`crate::bootmap`]).

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use crate::bootmap;
use crate::percpu::MAX_CPUS;

/// Reaches a physical range through an identity window in the boot tables.
#[derive(Clone, Copy, Debug)]
struct IdentityWindow;

impl AcpiHandler for IdentityWindow {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        bootmap::map_identity(pa as u32, size as u32);
        let va = NonNull::new(pa as *mut T).expect("ACPI table at physical address 0");
        // SAFETY: `[pa, pa + size)` is now identity-mapped (it stays mapped until the
        // identity half is dropped, after discovery), and the crate reads only firmware
        // tables there, which no Rust reference of the kernel covers.
        unsafe { PhysicalMapping::new(pa, va, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The processors the firmware lists.
#[derive(Clone, Copy, Debug)]
pub struct Cpus {
    /// Local APIC IDs of the usable processors, in MADT order (the BSP among them).
    pub apic_ids: [u8; MAX_CPUS],
    /// How many of `apic_ids` are valid.
    pub count: usize,
    /// Processors listed but left out (beyond [`MAX_CPUS`]).
    pub ignored: usize,
}

/// Reads the MADT's local-APIC entries (enabled, or online-capable).
///
/// # Errors
/// A message if the RSDP or the MADT cannot be found or parsed.
///
/// # Safety
/// The identity half of the boot map must still exist, and no Rust reference
/// may cover firmware memory (the BIOS area, the ACPI tables).
pub unsafe fn discover() -> Result<Cpus, &'static str> {
    // SAFETY: the caller guarantees the BIOS area can be read through the identity
    // windows the handler makes.
    let tables = unsafe { AcpiTables::search_for_rsdp_bios(IdentityWindow) }.map_err(|_| "no ACPI RSDP")?;
    let madt = tables.find_table::<Madt>().map_err(|_| "no ACPI MADT")?;
    let mut cpus = Cpus { apic_ids: [0; MAX_CPUS], count: 0, ignored: 0 };
    for entry in madt.get().entries() {
        if let MadtEntry::LocalApic(e) = entry {
            let (id, flags) = (e.apic_id, e.flags);
            if flags & 0b11 == 0 {
                continue;
            }
            if cpus.count == MAX_CPUS {
                cpus.ignored += 1;
                continue;
            }
            cpus.apic_ids[cpus.count] = id;
            cpus.count += 1;
        }
    }
    Ok(cpus)
}
