//! Physical memory as `i386-mm` and the backends see it: the kernel's frame
//! allocator (`i386_mm::BootMem` over the memory map's usable RAM) behind
//! [`i386_mm::PhysMem`], with
//! [`i386_mm::FaultInject`] for the scenario's out-of-memory checks.
//!
//! Every frame the allocator hands out lies below [`BOOT_MAP_SIZE`], so it is
//! reachable at `PAGE_OFFSET + pa` both through the boot tables and through
//! the linear map `i386-mm` builds (which covers `0..max_pfn`).
//!
//! [`PhysMem::privileged`] is the hypervisor model's write path: under the
//! Xen backend pinned page tables are read-only in the kernel's linear map and
//! CR0.WP makes the CPU enforce that, so the backend's validated update
//! (`mmu_update`) clears CR0.WP for the duration of the store, exactly the
//! privilege a real hypervisor has over the guest's page tables.

use i386_mm::{BootMem, FaultInject, Pfn, PhysMem};

use crate::cpu;
use crate::layout::{BOOT_MAP_SIZE, PAGE_OFFSET, PAGE_SHIFT};
use crate::multiboot::BootInfo;

/// The usable RAM, managed by `i386-mm`'s boot-time allocator and reached
/// through the linear map at `PAGE_OFFSET`.
static RAM: BootMem = BootMem::new(Pfn(0), PAGE_OFFSET as usize);

/// Hands the usable RAM of the memory map above `reserved_end` (kernel image
/// end, loader structures) and below the boot map limit to the allocator;
/// returns the frames added.
pub fn init(boot: &BootInfo, reserved_end: u32) -> usize {
    let mut added = 0;
    for region in boot.regions().iter().filter(|r| r.is_usable()) {
        let start = region.base.max(u64::from(reserved_end)).div_ceil(1 << PAGE_SHIFT);
        let end = region.end().min(u64::from(BOOT_MAP_SIZE)) >> PAGE_SHIFT;
        if start < end {
            // SAFETY: the firmware reports the range as usable RAM, it lies above
            // everything the kernel and the loader placed in memory, and below
            // BOOT_MAP_SIZE, so both the boot tables and the linear map i386-mm
            // builds map it at PAGE_OFFSET + pa.
            added += unsafe { RAM.add_range(Pfn(start as u32), Pfn(end as u32)) };
        }
    }
    added
}

/// The kernel's physical memory, handed to `i386-mm` and the backend: the
/// boot allocator, plus the hypervisor model's write path.
pub struct KernelPhys;

impl PhysMem for KernelPhys {
    fn alloc_frame(&self) -> Option<Pfn> {
        RAM.alloc_frame()
    }

    fn free_frame(&self, pfn: Pfn) {
        RAM.free_frame(pfn)
    }

    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        RAM.frame_ptr(pfn)
    }

    fn max_pfn(&self) -> Pfn {
        RAM.max_pfn()
    }

    fn frames_in_use(&self) -> usize {
        RAM.frames_in_use()
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
        RAM.fail_nth_alloc(n)
    }

    fn clear_fault(&self) {
        RAM.clear_fault()
    }
}

/// Frames free right now.
pub fn frames_free() -> usize {
    RAM.free_frames()
}
