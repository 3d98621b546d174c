//! Physical memory: the frame allocator and the kernel's view of frames (`__va`).

use crate::mode::PAGE_OFFSET;
use core::sync::atomic::{AtomicUsize, Ordering};
use paravirt_core::{EntrySlot, Pfn, PAGE_SIZE};
use spin::Mutex;

/// Physical memory as the page-table code sees it: a frame allocator plus access to a frame's
/// bytes. Implemented by [`BootMem`] (real RAM handed over at boot) and by the host test kit's
/// emulated RAM (fault injection, frame accounting).
///
/// Methods take `&self`: the allocator is shared by the kernel, the backends (shadow frames)
/// and several CPUs.
pub trait PhysMem {
    /// Allocates one frame; contents unspecified. `None` when memory is exhausted.
    fn alloc_frame(&self) -> Option<Pfn>;
    /// Returns a frame to the pool. Freeing a frame that is not allocated is a bug in the
    /// caller; implementations panic on it.
    fn free_frame(&self, pfn: Pfn);
    /// A pointer through which the kernel reads and writes the frame (Linux's `__va`).
    fn frame_ptr(&self, pfn: Pfn) -> *mut u8;
    /// One past the highest frame of RAM (`max_pfn`).
    fn max_pfn(&self) -> Pfn;
    /// Frames currently allocated.
    fn frames_in_use(&self) -> usize;
    /// Runs `f` with the privilege to write frames that the kernel's own mappings make
    /// read-only (a hypervisor writing a pinned page table). Default: just runs `f`.
    #[inline(always)]
    fn privileged<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

impl<T: PhysMem> PhysMem for &T {
    #[inline(always)]
    fn alloc_frame(&self) -> Option<Pfn> {
        (**self).alloc_frame()
    }
    #[inline(always)]
    fn free_frame(&self, pfn: Pfn) {
        (**self).free_frame(pfn)
    }
    #[inline(always)]
    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        (**self).frame_ptr(pfn)
    }
    #[inline(always)]
    fn max_pfn(&self) -> Pfn {
        (**self).max_pfn()
    }
    #[inline(always)]
    fn frames_in_use(&self) -> usize {
        (**self).frames_in_use()
    }
    #[inline(always)]
    fn privileged<R>(&self, f: impl FnOnce() -> R) -> R {
        (**self).privileged(f)
    }
}

/// Fault injection: physical memory that can be told to fail an allocation, so the
/// out-of-memory paths (`pgd_alloc`'s `out_oom`, the map path) run on every machine.
pub trait FaultInject {
    /// Makes the `n`th allocation from now (1 = the next one) fail, once.
    fn fail_nth_alloc(&self, n: u64);
    /// Cancels a pending injected failure.
    fn clear_fault(&self);
}

impl<T: FaultInject> FaultInject for &T {
    fn fail_nth_alloc(&self, n: u64) {
        (**self).fail_nth_alloc(n)
    }
    fn clear_fault(&self) {
        (**self).clear_fault()
    }
}

/// The kernel virtual address of a frame in the linear map (`__va(pfn << PAGE_SHIFT)`).
#[inline(always)]
pub fn lowmem_va(pfn: Pfn) -> u32 {
    PAGE_OFFSET.wrapping_add(pfn.0 << 12)
}

/// Fills a frame with zeroes.
#[inline]
pub fn zero_frame<P: PhysMem + ?Sized>(mem: &P, pfn: Pfn) {
    // SAFETY: `frame_ptr` points at PAGE_SIZE bytes the kernel may write.
    unsafe { core::ptr::write_bytes(mem.frame_ptr(pfn), 0, PAGE_SIZE) }
}

/// Allocates a zeroed frame (every page is zeroed before it is announced, VMI's ZEROED rule).
#[inline]
pub fn alloc_zeroed<P: PhysMem + ?Sized>(mem: &P) -> Option<Pfn> {
    let pfn = mem.alloc_frame()?;
    zero_frame(mem, pfn);
    Some(pfn)
}

/// The slot of entry `index` of the table in frame `table`.
#[inline(always)]
pub fn slot<P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32, wide: bool) -> EntrySlot {
    let size = if wide { 8 } else { 4 };
    EntrySlot {
        // SAFETY-free: pointer arithmetic inside the frame (index < entries per table).
        ptr: mem.frame_ptr(table).wrapping_add(index as usize * size) as *mut u32,
        table,
        index,
        wide,
    }
}

/// Reads entry `index` of the table in frame `table`.
#[inline(always)]
pub fn read_entry<P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32, wide: bool) -> u64 {
    // SAFETY: the slot lies inside a frame of RAM the kernel can read.
    unsafe { paravirt_core::native::read_entry(slot(mem, table, index, wide)) }
}

/// Frames [`BootMem`] can manage (128 MiB of RAM).
pub const BOOTMEM_MAX_FRAMES: usize = 32 * 1024;

/// Real RAM handed over at boot: frames `[start, end)` of physical memory, reached through a
/// linear mapping at `virt_offset` (so `frame_ptr(pfn) = virt_offset + pfn * 4096`), managed
/// with a bitmap. No heap.
pub struct BootMem {
    start: u32,
    end: u32,
    virt_offset: usize,
    bitmap: Mutex<[u64; BOOTMEM_MAX_FRAMES / 64]>,
    in_use: AtomicUsize,
    ram_end: Pfn,
    /// Allocation counter and the injected failure (0: none).
    calls: AtomicUsize,
    fail_at: AtomicUsize,
}

impl BootMem {
    /// Manages frames `[start, end)`; `ram_end` is `max_pfn` (one past the last frame of RAM,
    /// used for range checks), `virt_offset` where physical address 0 is mapped.
    ///
    /// # Safety
    /// The frames must be unused RAM, owned by the returned allocator from now on, and mapped
    /// writable at `virt_offset + pa` whenever the allocator or its users touch them.
    pub unsafe fn new(start: Pfn, end: Pfn, ram_end: Pfn, virt_offset: usize) -> Self {
        let end = end.0.min(start.0 + BOOTMEM_MAX_FRAMES as u32);
        BootMem {
            start: start.0,
            end,
            virt_offset,
            bitmap: Mutex::new([0; BOOTMEM_MAX_FRAMES / 64]),
            in_use: AtomicUsize::new(0),
            ram_end,
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
        }
    }

    /// Frames managed in all.
    pub fn total_frames(&self) -> usize {
        (self.end - self.start) as usize
    }
}

impl PhysMem for BootMem {
    fn alloc_frame(&self) -> Option<Pfn> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at.load(Ordering::SeqCst) == call {
            self.fail_at.store(0, Ordering::SeqCst);
            return None;
        }
        let mut bits = self.bitmap.lock();
        let n = self.total_frames();
        for (w, word) in bits.iter_mut().enumerate().take(n.div_ceil(64)) {
            if *word == u64::MAX {
                continue;
            }
            let b = (!*word).trailing_zeros() as usize;
            let i = w * 64 + b;
            if i >= n {
                return None;
            }
            *word |= 1 << b;
            self.in_use.fetch_add(1, Ordering::Relaxed);
            return Some(Pfn(self.start + i as u32));
        }
        None
    }

    fn free_frame(&self, pfn: Pfn) {
        assert!(pfn.0 >= self.start && pfn.0 < self.end, "free of foreign frame {pfn:?}");
        let i = (pfn.0 - self.start) as usize;
        let mut bits = self.bitmap.lock();
        assert!(bits[i / 64] & (1 << (i % 64)) != 0, "double free of {pfn:?}");
        bits[i / 64] &= !(1 << (i % 64));
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        self.virt_offset.wrapping_add(pfn.phys() as usize) as *mut u8
    }

    fn max_pfn(&self) -> Pfn {
        self.ram_end
    }

    fn frames_in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

impl FaultInject for BootMem {
    fn fail_nth_alloc(&self, n: u64) {
        let now = self.calls.load(Ordering::SeqCst);
        self.fail_at.store(now + n as usize, Ordering::SeqCst);
    }
    fn clear_fault(&self) {
        self.fail_at.store(0, Ordering::SeqCst);
    }
}
