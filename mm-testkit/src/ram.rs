//! Emulated RAM.

use i386_mm::{FaultInject, Pfn, PhysMem};
use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

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
        let pages = (0..frames).map(|_| Page(UnsafeCell::new([0; 4096]))).collect();
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
    pub fn allocations(&self) -> u64 {
        self.alloc.lock().unwrap().allocations
    }

    /// Frames still free.
    pub fn free_frames(&self) -> usize {
        self.alloc.lock().unwrap().free.len()
    }

    /// Whether `pfn` is currently allocated.
    pub fn is_allocated(&self, pfn: Pfn) -> bool {
        self.alloc.lock().unwrap().used.contains(&pfn.0)
    }

    /// The allocated frames, in order.
    pub fn allocated(&self) -> Vec<Pfn> {
        self.alloc.lock().unwrap().used.iter().map(|&p| Pfn(p)).collect()
    }

    /// Reads the 32-bit word at physical address `pa`.
    pub fn read_u32(&self, pa: u64) -> u32 {
        let p = self.frame_ptr(Pfn::from_phys(pa)).wrapping_add((pa & 0xfff) as usize) as *const u32;
        // SAFETY: `p` lies inside an emulated frame and is 4-byte aligned by the caller's `pa`.
        unsafe { p.read_volatile() }
    }

    /// Writes the 32-bit word at physical address `pa` (behind every backend's back).
    pub fn write_u32(&self, pa: u64, v: u32) {
        let p = self.frame_ptr(Pfn::from_phys(pa)).wrapping_add((pa & 0xfff) as usize) as *mut u32;
        // SAFETY: as for `read_u32`.
        unsafe { p.write_volatile(v) }
    }
}

impl PhysMem for EmulatedRam {
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
        Some(Pfn(p))
    }

    fn free_frame(&self, pfn: Pfn) {
        let mut a = self.alloc.lock().unwrap();
        assert!(a.used.remove(&pfn.0), "free of a frame that is not allocated: {pfn:?}");
        a.free.insert(pfn.0);
        self.in_use.fetch_sub(1, Ordering::SeqCst);
        drop(a);
        // SAFETY: the frame is 4096 bytes of emulated RAM, now owned by the allocator.
        unsafe { std::ptr::write_bytes(self.frame_ptr(pfn), POISON, 4096) };
    }

    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        let page = self.pages.get(pfn.0 as usize).unwrap_or_else(|| panic!("{pfn:?} is beyond emulated RAM"));
        page.0.get() as *mut u8
    }

    fn max_pfn(&self) -> Pfn {
        Pfn(self.pages.len() as u32)
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
