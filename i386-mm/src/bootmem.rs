//! `BootMem`: the kernel's frame allocator over the RAM handed over at boot.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use i386_paging::{FaultInject, PhysMem};
use paravirt_core::Pfn;
use spin::Mutex;

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
            base: base.as_u32(),
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
    /// at `virt_offset + pa` whenever the allocator or its users touch them; so must every
    /// frame between this allocator's base and the end of the highest range (holes included:
    /// [`PhysMem::frame_ptr`] accepts them), and no Rust reference may point into any of them.
    pub unsafe fn add_range(&self, start: Pfn, end: Pfn) -> usize {
        let lo = start.as_u32().max(self.base);
        let hi = end.as_u32().min(self.base + BOOTMEM_MAX_FRAMES as u32);
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

// SAFETY: `frame_ptr` panics outside `[base, max_pfn)`, and `add_range`'s contract makes every
// frame in that range reference-free RAM mapped at `virt_offset`; the bitmaps hand each frame
// out once and count exactly what is out.
unsafe impl PhysMem for BootMem {
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
            return Some(Pfn::new(self.base + (w * 64 + b) as u32));
        }
        None
    }

    fn free_frame(&self, pfn: Pfn) {
        let i = pfn.as_u32().wrapping_sub(self.base) as usize;
        let mut bits = self.bits.lock();
        assert!(i < BOOTMEM_MAX_FRAMES && bits.used[i / 64] & (1 << (i % 64)) != 0, "free of unallocated {pfn:?}");
        bits.used[i / 64] &= !(1 << (i % 64));
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
        let p = pfn.as_u32();
        assert!(
            p >= self.base && (p as usize) < self.ram_end.load(Ordering::SeqCst),
            "{pfn:?} is not RAM managed by BootMem"
        );
        let va = self.virt_offset.wrapping_add(pfn.phys().as_u64() as usize);
        NonNull::new(va as *mut u8).expect("the linear map of RAM does not contain address 0")
    }

    fn max_pfn(&self) -> Pfn {
        Pfn::new(self.ram_end.load(Ordering::SeqCst) as u32)
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
