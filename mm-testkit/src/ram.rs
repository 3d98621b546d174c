//! Emulated RAM.

use i386_paging::{FaultInject, Pfn, PhysAddr, PhysMem};
use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

/// `n` zeroed pages, allocated with `alloc_zeroed` so the host hands out zero pages lazily: a
/// 4 GiB machine costs only the frames a test touches.
fn zeroed_pages(n: usize) -> Box<[Page]> {
    if n == 0 {
        return Box::new([]);
    }
    let layout = std::alloc::Layout::array::<Page>(n).expect("RAM size fits the host's address space");
    // SAFETY: `layout` has a non-zero size (n > 0 pages of 4096 bytes).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Page>();
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `p` points at `n` zeroed, properly aligned `Page`s (all-zero bytes are a valid
    // `Page`), allocated with the global allocator for exactly this layout, owned from now on
    // by the returned box.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) }
}

/// Byte written over a frame when it is freed.
pub const POISON: u8 = 0xA5;

struct Alloc {
    free: BTreeSet<u32>,
    used: BTreeSet<u32>,
    allocations: u64,
    fail_at: Option<u64>,
}

/// Physical memory of `frames` 4 KiB frames. Frames `[0, reserved)` are never handed out
/// (the "BIOS and kernel image" area). Allocation takes the lowest free frame, so runs are
/// reproducible.
pub struct EmulatedRam {
    pages: Box<[Page]>,
    alloc: Mutex<Alloc>,
    in_use: AtomicUsize,
}

// SAFETY: frame contents are raw memory accessed through raw pointers, as physical memory is
// shared by CPUs; the allocator state is behind a mutex.
unsafe impl Sync for EmulatedRam {}
// SAFETY: as above.
unsafe impl Send for EmulatedRam {}

impl EmulatedRam {
    /// RAM of `frames` frames, the first `reserved` of which are never allocated.
    pub fn new(frames: u32, reserved: u32) -> Self {
        let pages = zeroed_pages(frames as usize);
        EmulatedRam {
            pages,
            alloc: Mutex::new(Alloc {
                free: (reserved..frames).collect(),
                used: BTreeSet::new(),
                allocations: 0,
                fail_at: None,
            }),
            in_use: AtomicUsize::new(0),
        }
    }

    /// 16 MiB with the first 1 MiB reserved: the default test machine.
    pub fn sixteen_mib() -> Self {
        Self::new(4096, 256)
    }

    /// Successful and failed allocations attempted so far.
    ///
    /// # Panics
    /// If another thread panicked while holding the allocator lock.
    pub fn allocations(&self) -> u64 {
        self.alloc.lock().unwrap().allocations
    }

    /// Frames still free.
    ///
    /// # Panics
    /// If another thread panicked while holding the allocator lock.
    pub fn free_frames(&self) -> usize {
        self.alloc.lock().unwrap().free.len()
    }

    /// Whether `pfn` is currently allocated.
    ///
    /// # Panics
    /// If another thread panicked while holding the allocator lock.
    pub fn is_allocated(&self, pfn: Pfn) -> bool {
        self.alloc.lock().unwrap().used.contains(&pfn.as_u32())
    }

    /// Whether `pfn` is on the allocator's free list (managed, and not allocated now): a frame
    /// that nothing may reach any more.
    ///
    /// # Panics
    /// If another thread panicked while holding the allocator lock.
    pub fn is_free(&self, pfn: Pfn) -> bool {
        self.alloc.lock().unwrap().free.contains(&pfn.as_u32())
    }

    /// The allocated frames, in order.
    ///
    /// # Panics
    /// If another thread panicked while holding the allocator lock.
    pub fn allocated(&self) -> Vec<Pfn> {
        self.alloc.lock().unwrap().used.iter().map(|&p| Pfn::new(p)).collect()
    }

    fn word(&self, pa: u64) -> *mut u32 {
        assert!(pa % 4 == 0, "unaligned word at physical address {pa:#x}");
        let pa = PhysAddr::new(pa);
        self.frame_ptr(Pfn::containing(pa)).as_ptr().wrapping_add(pa.page_offset() as usize).cast::<u32>()
    }

    /// Reads the 32-bit word at physical address `pa`.
    ///
    /// # Panics
    /// If `pa` is not 4-byte aligned or beyond emulated RAM.
    pub fn read_u32(&self, pa: u64) -> u32 {
        // SAFETY: `word` checked that the word lies inside an emulated frame and is aligned.
        unsafe { self.word(pa).read_volatile() }
    }

    /// Writes the 32-bit word at physical address `pa` (behind every backend's back).
    ///
    /// # Panics
    /// As for [`read_u32`](Self::read_u32).
    pub fn write_u32(&self, pa: u64, v: u32) {
        // SAFETY: as for `read_u32`.
        unsafe { self.word(pa).write_volatile(v) }
    }
}

// SAFETY: every frame is a 4096-aligned page of `pages`, alive as long as `self`, reached
// only through raw pointers; `frame_ptr` panics beyond RAM; the allocator hands each frame out
// once and counts exactly what is out.
unsafe impl PhysMem for EmulatedRam {
    fn alloc_frame(&self) -> Option<Pfn> {
        let mut a = self.alloc.lock().unwrap();
        a.allocations += 1;
        if a.fail_at == Some(a.allocations) {
            a.fail_at = None;
            return None;
        }
        let p = a.free.pop_first()?;
        a.used.insert(p);
        self.in_use.fetch_add(1, Ordering::SeqCst);
        Some(Pfn::new(p))
    }

    /// Poisons the frame, then returns it to the free set, both under the allocator's lock: a
    /// frame is never poisoned after another thread could have allocated it again.
    fn free_frame(&self, pfn: Pfn) {
        let mut a = self.alloc.lock().unwrap();
        assert!(a.used.contains(&pfn.as_u32()), "free of a frame that is not allocated: {pfn:?}");
        // SAFETY: the frame is 4096 bytes of emulated RAM, allocated to the caller, who gives
        // it up; no one can allocate it before it is on the free set below.
        unsafe { std::ptr::write_bytes(self.frame_ptr(pfn).as_ptr(), POISON, 4096) };
        a.used.remove(&pfn.as_u32());
        a.free.insert(pfn.as_u32());
        self.in_use.fetch_sub(1, Ordering::SeqCst);
    }

    #[inline]
    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
        let page = self.pages.get(pfn.as_usize()).unwrap_or_else(|| panic!("{pfn:?} is beyond emulated RAM"));
        NonNull::new(page.0.get().cast::<u8>()).expect("a page of a boxed slice is not null")
    }

    fn max_pfn(&self) -> Pfn {
        Pfn::new(self.pages.len() as u32)
    }

    fn frames_in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }
}

impl FaultInject for EmulatedRam {
    fn fail_nth_alloc(&self, n: u64) {
        let mut a = self.alloc.lock().unwrap();
        a.fail_at = Some(a.allocations + n);
    }
    fn clear_fault(&self) {
        self.alloc.lock().unwrap().fail_at = None;
    }
}
