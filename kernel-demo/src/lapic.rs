//! The local APIC (xAPIC, registers at physical `0xFEE0_0000`): IDs, the
//! spurious-vector register, and the interrupt command register for
//! INIT/SIPI and NMI IPIs. The `x86` crate encodes the ICR values
//! ([`Icr::for_xapic`]).
//!
//! The register page is mapped, uncached (PCD|PWT), only in the boot page
//! tables ([`crate::boot`]): the page tables `i386-mm` builds hold RAM the
//! backends manage, and the Xen model, like Xen, gives a PV guest no APIC page.
//! Every register access therefore runs on the boot root: [`with_registers`]
//! loads it, accesses the page, and reloads the CR3 it found, with interrupts
//! off (the kernel never enables them). An NMI taken in between only flushes
//! this CPU's TLB and returns.

use x86::apic::{ApicId, DeliveryMode, DeliveryStatus, DestinationMode, DestinationShorthand, Icr, Level, TriggerMode};

use crate::{boot, cpu};

/// Physical (and, in the boot tables, virtual) address of the register page.
pub const LAPIC_BASE: u32 = 0xFEE0_0000;

/// Local APIC ID register.
const ID: u32 = 0x20;
/// Spurious-interrupt vector register (bit 8: APIC software enable).
const SVR: u32 = 0xF0;
/// Error status register.
const ESR: u32 = 0x280;
/// Interrupt command register, low and high words.
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
/// ICR delivery-status bit (send pending).
const ICR_SEND_PENDING: u32 = 1 << 12;

/// The register page, reachable while the boot root is loaded.
struct Registers(());

impl Registers {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `Registers` exists only inside `with_registers`, while the boot
        // root (which maps the page uncached at LAPIC_BASE) is loaded; `reg` is a
        // register offset inside the page.
        unsafe { ((LAPIC_BASE + reg) as *const u32).read_volatile() }
    }

    fn write(&self, reg: u32, val: u32) {
        // SAFETY: as in `read`; writing an xAPIC register changes only the APIC.
        unsafe { ((LAPIC_BASE + reg) as *mut u32).write_volatile(val) }
    }

    /// Writes `icr` and waits until the APIC has sent it.
    fn send(&self, icr: Icr) {
        self.write(ESR, 0);
        self.write(ICR_HIGH, icr.upper());
        self.write(ICR_LOW, icr.lower());
        while self.read(ICR_LOW) & ICR_SEND_PENDING != 0 {
            core::hint::spin_loop();
        }
    }
}

/// Runs `f` with the register page reachable: loads the boot root, then
/// reloads the CR3 this CPU had.
fn with_registers<R>(f: impl FnOnce(&Registers) -> R) -> R {
    let saved = cpu::read_cr3();
    // SAFETY: the boot tables map the kernel image, its stacks and statics at
    // PAGE_OFFSET exactly as every root the kernel loads does, plus the APIC
    // page; `saved` is the root this CPU ran on a moment ago, reloaded as it was.
    unsafe { cpu::write_cr3(boot::boot_root_phys()) };
    let r = f(&Registers(()));
    // SAFETY: see above.
    unsafe { cpu::write_cr3(saved) };
    r
}

/// This CPU's local APIC ID.
pub fn id() -> u8 {
    with_registers(|r| (r.read(ID) >> 24) as u8)
}

/// Software-enables this CPU's local APIC (spurious vector 0xFF).
pub fn enable() {
    with_registers(|r| r.write(SVR, r.read(SVR) | 0x1FF));
}

fn icr(apic: u8, mode: DeliveryMode, vector: u8, level: Level, trigger: TriggerMode) -> Icr {
    Icr::for_xapic(
        vector,
        ApicId::XApic(apic),
        DestinationShorthand::NoShorthand,
        mode,
        DestinationMode::Physical,
        DeliveryStatus::Idle,
        level,
        trigger,
    )
}

/// INIT, then two start-up IPIs with the trampoline at `page << 12` (Intel
/// SDM vol. 3, 9.4.4.1; Linux's `wakeup_secondary_cpu_via_init`), with the
/// delays the universal start-up algorithm asks for.
pub fn init_sipi_sipi(apic: u8, page: u8) {
    with_registers(|r| {
        r.send(icr(apic, DeliveryMode::Init, 0, Level::Assert, TriggerMode::Level));
        r.send(icr(apic, DeliveryMode::Init, 0, Level::Deassert, TriggerMode::Level));
    });
    io_delay_us(10_000);
    for _ in 0..2 {
        with_registers(|r| r.send(icr(apic, DeliveryMode::StartUp, page, Level::Assert, TriggerMode::Edge)));
        io_delay_us(200);
    }
}

/// Sends an NMI to the CPU with APIC ID `apic`.
pub fn send_nmi(apic: u8) {
    with_registers(|r| r.send(icr(apic, DeliveryMode::NMI, 0, Level::Assert, TriggerMode::Edge)));
}

/// Sends an NMI to every other CPU with one ICR write (destination shorthand
/// "all excluding self").
pub fn send_nmi_all_but_self() {
    let icr = Icr::for_xapic(
        0,
        ApicId::XApic(0),
        DestinationShorthand::AllExcludingSelf,
        DeliveryMode::NMI,
        DestinationMode::Physical,
        DeliveryStatus::Idle,
        Level::Assert,
        TriggerMode::Edge,
    );
    with_registers(|r| r.send(icr));
}

/// Waits about `us` microseconds: one read of port 0x80 takes about 1 µs on
/// ISA-era hardware, which is the delay Linux's `io_delay` relies on too.
fn io_delay_us(us: u32) {
    for _ in 0..us {
        // SAFETY: port 0x80 is the POST diagnostic port; reading it has no effect.
        let _ = unsafe { x86::io::inb(0x80) };
    }
}
