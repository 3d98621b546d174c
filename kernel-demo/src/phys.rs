//! Physical memory as `i386-mm` and the backends see it: the kernel's frame
//! allocator (`i386_mm::BootMem` over the memory map's usable RAM) behind
//! [`PhysMem`], with [`FaultInject`] for the scenario's out-of-memory checks.
//!
//! The allocator manages only frames above everything the kernel and the
//! loader placed in memory (its base is the first frame past `reserved_end`,
//! known at boot), so [`PhysMem::frame_ptr`] panics for a frame of the kernel
//! image, its statics or its stack: no pointer it returns can alias memory a
//! Rust reference points into. Every frame it manages lies below
//! [`BOOT_MAP_SIZE`], so it is reachable at `PAGE_OFFSET + pa` both through
//! the boot tables and through the linear map `i386-mm` builds (which covers
//! `0..max_pfn`).
//!
//! [`PhysMem::privileged`] is the hypervisor model's write path: under the
//! Xen backend pinned page tables are read-only in the kernel's linear map and
//! CR0.WP makes the CPU enforce that, so the backend's validated update
//! (`mmu_update`) clears CR0.WP for the duration of the store, exactly the
//! privilege a real hypervisor has over the guest's page tables.

use core::ptr::NonNull;

use i386_mm::BootMem;
use i386_paging::{FaultInject, Pfn, PhysMem};
use spin::Once;

use crate::cpu;
use crate::layout::{BOOT_MAP_SIZE, PAGE_OFFSET, PAGE_SHIFT};
use crate::multiboot::BootInfo;

/// The usable RAM, managed by `i386-mm`'s boot-time allocator and reached
/// through the linear map at `PAGE_OFFSET`; created by [`init`], whose
/// `reserved_end` is its base.
static RAM: Once<BootMem> = Once::new();

/// The allocator.
///
/// # Panics
/// If [`init`] has not run.
fn ram() -> &'static BootMem {
    RAM.get().expect("phys::init has not run: no frame allocator yet")
}

/// Creates the allocator with its base at `reserved_end` (kernel image end,
/// loader structures), hands it the usable RAM of the memory map above that
/// and below the boot map limit, and returns the frames added.
///
/// # Panics
/// If called twice.
pub fn init(boot: &BootInfo, reserved_end: u32) -> usize {
    assert!(!RAM.is_completed(), "phys::init runs once");
    let base = u64::from(reserved_end).div_ceil(1 << PAGE_SHIFT) as u32;
    let ram = RAM.call_once(|| BootMem::new(Pfn::new(base), PAGE_OFFSET as usize));
    let mut added = 0;
    for region in boot.regions().iter().filter(|r| r.is_usable()) {
        let start = region.base.max(u64::from(reserved_end)).div_ceil(1 << PAGE_SHIFT);
        let end = region.end().min(u64::from(BOOT_MAP_SIZE)) >> PAGE_SHIFT;
        if start < end {
            // SAFETY: the firmware reports the range as usable RAM; it lies above
            // everything the kernel and the loader placed in memory (the allocator's
            // base, `reserved_end`, is past the image, its statics and stack, and the
            // multiboot structures) and below BOOT_MAP_SIZE, so both the boot tables
            // and the linear map i386-mm builds map it writable at PAGE_OFFSET + pa.
            // The same holds for any hole between the base and the end of the highest
            // range: firmware-reserved memory below BOOT_MAP_SIZE, which no Rust
            // reference points into.
            added += unsafe { ram.add_range(Pfn::new(start as u32), Pfn::new(end as u32)) };
        }
    }
    added
}

/// The kernel's physical memory, handed to `i386-mm` and the backend: the
/// boot allocator, plus the hypervisor model's write path.
///
/// Every method panics if [`init`] has not run.
pub struct KernelPhys;

// SAFETY: every method except `privileged` forwards to the `BootMem` created by
// `init`, which upholds the contract: its `frame_ptr` panics outside
// `[base, max_pfn)` (the base being past the kernel image, statics, stack and
// loader structures, so it never points into memory a Rust reference covers) and
// otherwise returns the page-aligned linear-map address of a RAM frame, writable
// through the boot tables and every table i386-mm builds; `init` upheld
// `add_range`'s contract; the bitmaps hand each frame out once and count exactly
// what is out. `privileged` only toggles CR0.WP around `f`, which changes no
// mapping and no allocation.
unsafe impl PhysMem for KernelPhys {
    fn alloc_frame(&self) -> Option<Pfn> {
        ram().alloc_frame()
    }

    fn free_frame(&self, pfn: Pfn) {
        ram().free_frame(pfn)
    }

    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
        ram().frame_ptr(pfn)
    }

    fn max_pfn(&self) -> Pfn {
        ram().max_pfn()
    }

    fn frames_in_use(&self) -> usize {
        ram().frames_in_use()
    }

    /// Runs `f` with CR0.WP clear, so supervisor writes ignore read-only
    /// mappings, then restores CR0.WP (nesting is fine: the inner call restores
    /// the cleared state, the outer one the original).
    fn privileged<R>(&self, f: impl FnOnce() -> R) -> R {
        let was = cpu::write_protect_enabled();
        cpu::set_write_protect(false);
        let r = f();
        cpu::set_write_protect(was);
        r
    }
}

impl FaultInject for KernelPhys {
    fn fail_nth_alloc(&self, n: u64) {
        ram().fail_nth_alloc(n)
    }

    fn clear_fault(&self) {
        ram().clear_fault()
    }
}

/// Frames free right now.
pub fn frames_free() -> usize {
    ram().free_frames()
}
