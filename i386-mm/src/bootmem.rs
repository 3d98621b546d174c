//! `BootMem`: the kernel's frame allocator over the RAM handed over at boot.
//!
//! Like Linux's bootmem allocator it keeps its bitmaps in the RAM it manages: the first frame
//! handed over in each region of [`FRAMES_PER_REGION`] frames (64 MiB) becomes that region's
//! bitmap frame (two bits per frame: usable, allocated) and is never handed out. So the
//! allocator manages as much RAM as the memory map offers, up to 64 GiB (PAE's physical
//! reach), with a fixed 4 KiB directory and no heap.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use i386_paging::{FaultInject, PhysMem};
use paravirt_core::Pfn;
use spin::Mutex;

/// Frames one bitmap frame covers: 4096 bytes × 8 bits / 2 bits per frame (64 MiB of RAM).
pub const FRAMES_PER_REGION: u32 = 4096 * 8 / 2;
/// 64-bit words of one of a region's two bitmaps.
const WORDS: usize = FRAMES_PER_REGION as usize / 64;
/// Regions the directory covers: 2^24 frames, every frame a 36-bit PAE address can name.
const REGIONS: usize = (1 << 24) / FRAMES_PER_REGION as usize;

/// Real RAM handed over at boot: the usable ranges of physical memory (from the firmware's
/// memory map, minus the kernel image and the loader's structures), reached through a linear
/// mapping at `virt_offset` (`frame_ptr(pfn) = virt_offset + pfn * 4096`). No heap, no limit
/// but the memory map; `const`-constructible so it can be a `static`.
pub struct BootMem {
    base: u32,
    virt_offset: usize,
    /// Bitmap frame of each region, plus one (0: no frame of the region handed over yet).
    /// Set once.
    regions: [AtomicU32; REGIONS],
    /// Serialises allocation, freeing and hand-over; holds the first region worth searching.
    alloc: Mutex<usize>,
    in_use: AtomicUsize,
    total: AtomicUsize,
    ram_end: AtomicUsize,
    /// Allocation counter and the injected failure (0: none).
    calls: AtomicUsize,
    fail_at: AtomicUsize,
}

impl BootMem {
    /// An allocator for frames from `base` up, none usable until
    /// [`add_range`](Self::add_range) hands them over.
    pub const fn new(base: Pfn, virt_offset: usize) -> Self {
        BootMem {
            base: base.as_u32(),
            virt_offset,
            regions: [const { AtomicU32::new(0) }; REGIONS],
            alloc: Mutex::new(0),
            in_use: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            ram_end: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
        }
    }

    /// Bit `i` of the region whose bitmap frame is `bitmap`: word and mask of its usable bit
    /// (`used == false`) or its allocated bit.
    fn bit(&self, bitmap: u32, i: usize, used: bool) -> (&AtomicU64, u64) {
        let words = self.virt_offset.wrapping_add((bitmap as usize) << 12) as *mut u64;
        let w = if used { WORDS } else { 0 } + i / 64;
        // SAFETY: a bitmap frame is RAM this allocator owns (handed over by `add_range`, never
        // handed out), mapped at `virt_offset`, 8-aligned, accessed only atomically.
        (unsafe { AtomicU64::from_ptr(words.add(w)) }, 1 << (i % 64))
    }

    /// The region's bitmap frame, if the region has one.
    fn region(&self, pfn: u32) -> Option<(u32, usize)> {
        let r = self.regions.get((pfn / FRAMES_PER_REGION) as usize)?.load(Ordering::Acquire);
        Some((r.checked_sub(1)?, (pfn % FRAMES_PER_REGION) as usize))
    }

    /// Hands frames `[start, end)` over (frames below the allocator's base are skipped) and
    /// returns how many became allocatable. In a region that had none yet, the first frame
    /// handed over becomes the region's bitmap frame. `max_pfn` becomes the end of the
    /// highest range.
    ///
    /// # Safety
    /// The frames must be unused RAM, owned by the allocator from now on, and mapped writable
    /// at `virt_offset + pa` whenever the allocator or its users touch them, with no Rust
    /// reference into them.
    pub unsafe fn add_range(&self, start: Pfn, end: Pfn) -> usize {
        let lo = start.as_u32().max(self.base);
        let hi = end.as_u32().min(REGIONS as u32 * FRAMES_PER_REGION);
        let _serialised = self.alloc.lock();
        let mut added = 0;
        for p in lo..hi {
            let Some((bitmap, i)) = self.region(p) else {
                // This frame holds the region's bitmaps from now on.
                let words = self.virt_offset.wrapping_add((p as usize) << 12) as *mut u8;
                // SAFETY: the caller hands `p` over as unused RAM mapped at the offset; the
                // allocator owns it and nothing references it.
                unsafe { words.write_bytes(0, 4096) };
                self.regions[(p / FRAMES_PER_REGION) as usize].store(p + 1, Ordering::Release);
                continue;
            };
            let (w, m) = self.bit(bitmap, i, false);
            if w.fetch_or(m, Ordering::Relaxed) & m == 0 {
                added += 1;
            }
        }
        if lo < hi {
            self.ram_end.fetch_max(hi as usize, Ordering::SeqCst);
        }
        self.total.fetch_add(added, Ordering::SeqCst);
        added
    }

    /// Frames handed over and allocatable in all (the bitmap frames not counted).
    pub fn total_frames(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Frames free right now.
    pub fn free_frames(&self) -> usize {
        self.total_frames() - self.frames_in_use()
    }

    /// Frames holding the allocator's own bitmaps (one per 64 MiB region of RAM).
    pub fn bitmap_frames(&self) -> usize {
        self.regions.iter().filter(|r| r.load(Ordering::Acquire) != 0).count()
    }

    /// Whether `pfn` was handed over (and is not a bitmap frame).
    fn usable(&self, pfn: u32) -> bool {
        self.region(pfn).is_some_and(|(bitmap, i)| {
            let (w, m) = self.bit(bitmap, i, false);
            w.load(Ordering::Relaxed) & m != 0
        })
    }
}

// SAFETY: `frame_ptr` panics for every frame that was not handed over with `add_range` (whose
// contract makes those frames reference-free RAM mapped at `virt_offset`); the bitmaps, kept in
// frames that are never handed out, give each frame out once and `in_use` counts exactly what
// is out.
unsafe impl PhysMem for BootMem {
    fn alloc_frame(&self) -> Option<Pfn> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at.load(Ordering::SeqCst) == call {
            self.fail_at.store(0, Ordering::SeqCst);
            return None;
        }
        let mut hint = self.alloc.lock();
        for r in *hint..REGIONS {
            let Some(bitmap) = self.regions[r].load(Ordering::Acquire).checked_sub(1) else {
                continue;
            };
            for w in 0..WORDS {
                let (usable, _) = self.bit(bitmap, w * 64, false);
                let (used, _) = self.bit(bitmap, w * 64, true);
                let free = usable.load(Ordering::Relaxed) & !used.load(Ordering::Relaxed);
                if free == 0 {
                    continue;
                }
                let bit = free.trailing_zeros() as u64;
                used.fetch_or(1 << bit, Ordering::Relaxed);
                *hint = r;
                self.in_use.fetch_add(1, Ordering::Relaxed);
                return Some(Pfn::new(r as u32 * FRAMES_PER_REGION + (w * 64) as u32 + bit as u32));
            }
        }
        None
    }

    fn free_frame(&self, pfn: Pfn) {
        let mut hint = self.alloc.lock();
        let allocated = self.region(pfn.as_u32()).filter(|&(bitmap, i)| {
            let (w, m) = self.bit(bitmap, i, true);
            w.load(Ordering::Relaxed) & m != 0
        });
        let Some((bitmap, i)) = allocated else { panic!("free of unallocated {pfn:?}") };
        let (w, m) = self.bit(bitmap, i, true);
        w.fetch_and(!m, Ordering::Relaxed);
        *hint = (*hint).min((pfn.as_u32() / FRAMES_PER_REGION) as usize);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    #[inline]
    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
        assert!(self.usable(pfn.as_u32()), "{pfn:?} is not RAM managed by BootMem");
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
