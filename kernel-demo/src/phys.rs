//! Physical memory as `i386-mm` and the backends see it: the kernel's frame
//! allocator ([`crate::frames`]) behind [`i386_mm::PhysMem`], with
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

use core::sync::atomic::{AtomicU32, Ordering};

use i386_mm::{FaultInject, Pfn, PhysMem};

use crate::cpu;
use crate::frames;
use crate::layout::{phys_to_virt, BOOT_MAP_SIZE, PAGE_SHIFT};

/// The kernel's physical memory, handed to `i386-mm` and the backend.
pub struct KernelPhys {
    /// One past the last frame of RAM the linear map covers (`max_pfn`).
    max_pfn: Pfn,
    /// Allocations attempted so far (successful or not).
    allocs: AtomicU32,
    /// The allocation number that must fail (0: none), see [`FaultInject`].
    fail_at: AtomicU32,
}

impl KernelPhys {
    /// Physical memory up to `ram_end` (exclusive, clipped to the boot map).
    pub fn new(ram_end: u64) -> Self {
        let end = ram_end.min(u64::from(BOOT_MAP_SIZE));
        Self { max_pfn: Pfn((end >> PAGE_SHIFT) as u32), allocs: AtomicU32::new(0), fail_at: AtomicU32::new(0) }
    }
}

impl PhysMem for KernelPhys {
    fn alloc_frame(&self) -> Option<Pfn> {
        let call = self.allocs.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if self.fail_at.compare_exchange(call, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return None;
        }
        frames::alloc().ok().map(|f| Pfn(f.0))
    }

    fn free_frame(&self, pfn: Pfn) {
        if let Err(e) = frames::free(frames::Pfn(pfn.0)) {
            panic!("free_frame({pfn:?}): {e:?}");
        }
    }

    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        phys_to_virt(pfn.0 << PAGE_SHIFT)
    }

    fn max_pfn(&self) -> Pfn {
        self.max_pfn
    }

    fn frames_in_use(&self) -> usize {
        frames::frames_in_use() as usize
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
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let now = self.allocs.load(Ordering::Relaxed);
        self.fail_at.store(now.wrapping_add(n), Ordering::Relaxed);
    }

    fn clear_fault(&self) {
        self.fail_at.store(0, Ordering::Relaxed);
    }
}
