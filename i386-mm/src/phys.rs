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

const WORDS: usize = BOOTMEM_MAX_FRAMES / 64;

/// Which frames exist and which are handed out.
struct Bitmaps {
    /// Frames handed over with [`BootMem::add_range`].
    usable: [u64; WORDS],
    /// Frames currently allocated (always a subset of `usable`).
    used: [u64; WORDS],
}

/// Real RAM handed over at boot: the usable ranges of physical memory (from the firmware's
/// memory map, minus the kernel image and the loader's structures), reached through a linear
/// mapping at `virt_offset` (`frame_ptr(pfn) = virt_offset + pfn * 4096`), managed with two
/// bitmaps (usable, used). No heap; `const`-constructible so it can be a `static`.
pub struct BootMem {
    base: u32,
    virt_offset: usize,
    bits: Mutex<Bitmaps>,
    in_use: AtomicUsize,
    ram_end: AtomicUsize,
    /// Allocation counter and the injected failure (0: none).
    calls: AtomicUsize,
    fail_at: AtomicUsize,
}

impl BootMem {
    /// An allocator for frames `[base, base + BOOTMEM_MAX_FRAMES)`, none usable until
    /// [`add_range`](Self::add_range) hands them over.
    pub const fn new(base: Pfn, virt_offset: usize) -> Self {
        BootMem {
            base: base.0,
            virt_offset,
            bits: Mutex::new(Bitmaps { usable: [0; WORDS], used: [0; WORDS] }),
            in_use: AtomicUsize::new(0),
            ram_end: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
        }
    }

    /// Hands frames `[start, end)` over (clipped to what this allocator can manage) and
    /// returns how many were added. `max_pfn` becomes the end of the highest range.
    ///
    /// # Safety
    /// The frames must be unused RAM, owned by the allocator from now on, and mapped writable
    /// at `virt_offset + pa` whenever the allocator or its users touch them.
    pub unsafe fn add_range(&self, start: Pfn, end: Pfn) -> usize {
        let lo = start.0.max(self.base);
        let hi = end.0.min(self.base + BOOTMEM_MAX_FRAMES as u32);
        let mut bits = self.bits.lock();
        let mut added = 0;
        for p in lo..hi {
            let i = (p - self.base) as usize;
            if bits.usable[i / 64] & (1 << (i % 64)) == 0 {
                bits.usable[i / 64] |= 1 << (i % 64);
                added += 1;
            }
        }
        if lo < hi {
            self.ram_end.fetch_max(hi as usize, Ordering::SeqCst);
        }
        added
    }

    /// Frames handed over in all.
    pub fn total_frames(&self) -> usize {
        self.bits.lock().usable.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Frames free right now.
    pub fn free_frames(&self) -> usize {
        self.total_frames() - self.frames_in_use()
    }
}

impl PhysMem for BootMem {
    fn alloc_frame(&self) -> Option<Pfn> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at.load(Ordering::SeqCst) == call {
            self.fail_at.store(0, Ordering::SeqCst);
            return None;
        }
        let mut bits = self.bits.lock();
        let Bitmaps { usable, used } = &mut *bits;
        for (w, (u, a)) in usable.iter().zip(used.iter_mut()).enumerate() {
            let free = *u & !*a;
            if free == 0 {
                continue;
            }
            let b = free.trailing_zeros() as usize;
            *a |= 1 << b;
            self.in_use.fetch_add(1, Ordering::Relaxed);
            return Some(Pfn(self.base + (w * 64 + b) as u32));
        }
        None
    }

    fn free_frame(&self, pfn: Pfn) {
        let i = pfn.0.wrapping_sub(self.base) as usize;
        let mut bits = self.bits.lock();
        assert!(i < BOOTMEM_MAX_FRAMES && bits.used[i / 64] & (1 << (i % 64)) != 0, "free of unallocated {pfn:?}");
        bits.used[i / 64] &= !(1 << (i % 64));
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        self.virt_offset.wrapping_add(pfn.phys() as usize) as *mut u8
    }

    fn max_pfn(&self) -> Pfn {
        Pfn(self.ram_end.load(Ordering::SeqCst) as u32)
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
