//! Bringing up the application processors and handing them work.
//!
//! [`boot_aps`] (Linux's `smp_boot_cpus`) finds the processors in the ACPI
//! MADT ([`crate::madt`]), maps and enables the local APIC ([`crate::lapic`]),
//! copies the real-mode trampoline ([`crate::trampoline`]) into a free page
//! below 1 MiB and starts each AP in turn with INIT–SIPI–SIPI. Each AP comes
//! up on the boot page tables with its own stack, loads its own GDT and TSS
//! ([`crate::percpu`]), the IDT, sets CR0.WP, reports itself online and waits
//! for work.
//!
//! [`run_on_aps`] runs a closure on every online AP while the BSP runs its own
//! part, and returns when all of them are done (a scoped fork/join).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use crate::multiboot::BootInfo;
use crate::percpu::{self, MAX_CPUS};
use crate::trampoline::{Mailbox, Trampoline};
use crate::{bootmap, cpu, idt, lapic, madt};

/// Stack size of each application processor.
pub const AP_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct ApStacks(UnsafeCell<[[u8; AP_STACK_SIZE]; MAX_CPUS - 1]>);

// SAFETY: stack `i` is used only as CPU `i + 1`'s stack, never through references.
unsafe impl Sync for ApStacks {}

static AP_STACKS: ApStacks = ApStacks(UnsafeCell::new([[0; AP_STACK_SIZE]; MAX_CPUS - 1]));

/// Processors online (the BSP included).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Set by each AP once it runs Rust code on its own descriptors.
static CPU_UP: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Local APIC ID of each CPU number.
static APIC_ID: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// The work handed out by [`run_on_aps`]: a pointer to a `&(dyn Fn(usize) + Sync)`
/// on the BSP's stack, and a generation number that tells the APs it is new.
static JOB: AtomicPtr<&'static (dyn Fn(usize) + Sync)> = AtomicPtr::new(core::ptr::null_mut());
static JOB_GEN: AtomicU32 = AtomicU32::new(0);
/// APs that finished the current job.
static JOB_DONE: AtomicUsize = AtomicUsize::new(0);

/// Processors online, the BSP included.
pub fn cpus_online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Local APIC ID of CPU `n`.
pub fn apic_id(n: usize) -> u8 {
    APIC_ID[n].load(Ordering::Relaxed)
}

/// Picks the trampoline page: the highest usable page below 640 KiB that lies
/// outside `[info_phys, structures_end)` and above the real-mode IVT/BDA.
fn trampoline_page(boot: &BootInfo, info_phys: u32) -> Option<u32> {
    (1..0xA0u32).rev().map(|p| p << 12).find(|&pa| {
        let end = u64::from(pa) + 4096;
        let usable = boot.regions().iter().any(|r| r.is_usable() && r.base <= u64::from(pa) && end <= r.end());
        let clear = end <= u64::from(info_phys) || pa >= boot.structures_end;
        usable && clear
    })
}

/// Starts every AP the firmware lists and returns how many CPUs are online.
///
/// # Panics
/// If the MADT cannot be read or an AP does not come up.
///
/// # Safety
/// Must run once, on the BSP, while the identity half of the boot map still
/// exists and the boot root is loaded; the multiboot structures are at
/// `[info_phys, boot.structures_end)`.
pub unsafe fn boot_aps(boot: &BootInfo, info_phys: u32) -> usize {
    // SAFETY: the caller guarantees the identity half exists; no Rust reference
    // covers firmware memory.
    let cpus = unsafe { madt::discover() }.unwrap_or_else(|e| panic!("SMP discovery: {e}"));
    bootmap::map_lapic();
    lapic::enable();
    let bsp = lapic::id();
    APIC_ID[0].store(bsp, Ordering::Relaxed);
    crate::kprintln!(
        "smp: MADT lists {} processor(s) (APIC IDs {:?}), BSP is APIC {}",
        cpus.count,
        &cpus.apic_ids[..cpus.count],
        bsp
    );
    let page = trampoline_page(boot, info_phys).expect("no free page below 640 KiB for the AP trampoline");
    // SAFETY: `page` is usable RAM below 640 KiB outside the kernel image (at 1 MiB
    // and up) and the multiboot structures; the frame allocator starts above both.
    let tramp = unsafe { Trampoline::install(page) };
    for (n, &id) in (1..).zip(cpus.apic_ids[..cpus.count].iter().filter(|&&id| id != bsp)) {
        // SAFETY: stack `n - 1` belongs to CPU `n` alone.
        let top = unsafe { (*AP_STACKS.0.get())[n - 1].as_ptr().add(AP_STACK_SIZE) } as u32;
        APIC_ID[n].store(id, Ordering::Relaxed);
        tramp.set_mailbox(Mailbox {
            cr3: crate::boot::boot_root_phys(),
            cr4: cpu::read_cr4(),
            stack_top: top,
            cpu: n as u32,
            entry: ap_entry as *const () as u32,
        });
        lapic::init_sipi_sipi(id, tramp.vector());
        let mut spins = 0u64;
        while !CPU_UP[n].load(Ordering::Acquire) {
            spins += 1;
            assert!(spins < 2_000_000_000, "AP with APIC ID {id} did not come up");
            core::hint::spin_loop();
        }
        ONLINE.fetch_add(1, Ordering::AcqRel);
    }
    crate::kprintln!("smp: {} CPUs online (trampoline at {:#x})", cpus_online(), page);
    cpus_online()
}

/// High-half entry of every AP, called by the trampoline with its number.
extern "C" fn ap_entry(n: u32) -> ! {
    let n = n as usize;
    // SAFETY: stack `n - 1` is this CPU's; its address was computed the same way.
    let top = unsafe { (*AP_STACKS.0.get())[n - 1].as_ptr().add(AP_STACK_SIZE) } as u32;
    // SAFETY: first thing on CPU `n`, interrupts off, entry `n` used by no other CPU.
    unsafe { percpu::load(n, top) };
    idt::load();
    cpu::set_write_protect(true);
    lapic::enable();
    CPU_UP[n].store(true, Ordering::Release);
    let mut seen = 0;
    loop {
        let generation = JOB_GEN.load(Ordering::Acquire);
        if generation == seen {
            core::hint::spin_loop();
            continue;
        }
        seen = generation;
        let job = JOB.load(Ordering::Acquire);
        if !job.is_null() {
            // SAFETY: `run_on_aps` published a pointer to a live `&dyn Fn` and does not
            // return (so the closure stays alive) until every AP counted itself done.
            let f = unsafe { *job };
            f(n);
        }
        JOB_DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs `ap_work(cpu)` on every online AP while the BSP runs `bsp_work`, and
/// returns `bsp_work`'s result once every AP has finished.
pub fn run_on_aps<R>(ap_work: &(dyn Fn(usize) + Sync), bsp_work: impl FnOnce() -> R) -> R {
    let aps = cpus_online() - 1;
    let f: &(dyn Fn(usize) + Sync) = ap_work;
    // SAFETY: lifetime extension only; the pointer is withdrawn below, after every AP
    // reported that its call returned, so no AP uses `f` once this function returns.
    let f: &'static (dyn Fn(usize) + Sync) = unsafe { core::mem::transmute(f) };
    let slot = &f as *const &'static (dyn Fn(usize) + Sync) as *mut _;
    JOB_DONE.store(0, Ordering::Release);
    JOB.store(slot, Ordering::Release);
    JOB_GEN.fetch_add(1, Ordering::AcqRel);
    let out = bsp_work();
    while JOB_DONE.load(Ordering::Acquire) < aps {
        core::hint::spin_loop();
    }
    JOB.store(core::ptr::null_mut(), Ordering::Release);
    out
}
