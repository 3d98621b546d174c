//! Physical frame allocator: a bitmap over the usable RAM between the end of
//! the kernel image (and the loader's structures) and [`BOOT_MAP_SIZE`], so
//! every frame it hands out is reachable through the linear map at
//! `PAGE_OFFSET + pa`.
//!
//! It keeps exact accounting (`frames_in_use`), refuses double frees and
//! frees of frames it never managed, and fails allocation cleanly with
//! [`OutOfFrames`] when empty, so tests can prove that teardown returns every
//! page-table page.

use core::fmt;

use crate::layout::{phys_to_virt, BOOT_MAP_SIZE, PAGE_SHIFT, PAGE_SIZE};
use crate::multiboot::BootInfo;
use crate::sync::Lock;

/// Number of frames the bitmap can describe (everything below the boot map limit).
pub const MAX_FRAMES: usize = (BOOT_MAP_SIZE >> PAGE_SHIFT) as usize;
const WORDS: usize = MAX_FRAMES / 32;

/// A physical page frame number (physical address >> 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(pub u32);

impl Pfn {
    /// Physical address of the frame's first byte.
    pub fn phys_addr(self) -> u32 {
        self.0 << PAGE_SHIFT
    }

    /// Kernel virtual address of the frame in the linear map
    /// (`PAGE_OFFSET + pfn * 4096`).
    pub fn virt_ptr(self) -> *mut u8 {
        phys_to_virt(self.phys_addr())
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

/// Allocation failed: every managed frame is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfFrames;

/// Why a frame could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The allocator never managed this frame (kernel image, reserved, above the limit).
    NotManaged(Pfn),
    /// The frame is already free (double free).
    NotAllocated(Pfn),
}

/// Bitmap frame allocator. A frame is *managed* if it lies in usable RAM
/// handed to [`FrameAllocator::add_range`]; a managed frame is either free
/// or in use.
pub struct FrameAllocator {
    managed: [u32; WORDS],
    free: [u32; WORDS],
    total: u32,
    in_use: u32,
    /// Word index where the next search starts (next fit).
    hint: usize,
}

impl FrameAllocator {
    /// An allocator managing nothing.
    pub const fn new() -> Self {
        Self { managed: [0; WORDS], free: [0; WORDS], total: 0, in_use: 0, hint: 0 }
    }

    /// Adds the whole frames inside physical `[start, end)` as free frames,
    /// clipped to the boot map. Frames already managed are left alone.
    pub fn add_range(&mut self, start: u64, end: u64) {
        let first = start.div_ceil(u64::from(PAGE_SIZE));
        let last = (end / u64::from(PAGE_SIZE)).min(MAX_FRAMES as u64);
        for pfn in first..last {
            let (word, bit) = (pfn as usize / 32, 1u32 << (pfn % 32));
            if self.managed[word] & bit == 0 {
                self.managed[word] |= bit;
                self.free[word] |= bit;
                self.total += 1;
            }
        }
    }

    /// Takes a free frame (contents unspecified).
    pub fn alloc(&mut self) -> Result<Pfn, OutOfFrames> {
        for step in 0..WORDS {
            let word = (self.hint + step) % WORDS;
            let bits = self.free[word];
            if bits != 0 {
                let bit = bits.trailing_zeros();
                self.free[word] &= !(1 << bit);
                self.in_use += 1;
                self.hint = word;
                return Ok(Pfn(word as u32 * 32 + bit));
            }
        }
        Err(OutOfFrames)
    }

    /// Returns an allocated frame.
    pub fn free(&mut self, pfn: Pfn) -> Result<(), FreeError> {
        let index = pfn.0 as usize;
        if index >= MAX_FRAMES {
            return Err(FreeError::NotManaged(pfn));
        }
        let (word, bit) = (index / 32, 1u32 << (index % 32));
        if self.managed[word] & bit == 0 {
            return Err(FreeError::NotManaged(pfn));
        }
        if self.free[word] & bit != 0 {
            return Err(FreeError::NotAllocated(pfn));
        }
        self.free[word] |= bit;
        self.in_use -= 1;
        Ok(())
    }

    /// Frames currently allocated.
    pub fn frames_in_use(&self) -> u32 {
        self.in_use
    }

    /// Frames currently free.
    pub fn frames_free(&self) -> u32 {
        self.total - self.in_use
    }

    /// Frames managed (free + in use).
    pub fn frames_total(&self) -> u32 {
        self.total
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's frame allocator.
pub static FRAMES: Lock<FrameAllocator> = Lock::new(FrameAllocator::new());

/// Hands the usable RAM above `reserved_end` (kernel image end, loader
/// structures) and below the boot map limit to [`FRAMES`].
pub fn init(boot: &BootInfo, reserved_end: u32) {
    let mut frames = FRAMES.lock();
    for region in boot.regions().iter().filter(|r| r.is_usable()) {
        let start = region.base.max(u64::from(reserved_end));
        let end = region.end().min(u64::from(BOOT_MAP_SIZE));
        if start < end {
            frames.add_range(start, end);
        }
    }
}

/// Allocates a frame from [`FRAMES`].
pub fn alloc() -> Result<Pfn, OutOfFrames> {
    FRAMES.lock().alloc()
}

/// Allocates a frame from [`FRAMES`] and zeroes it.
pub fn alloc_zeroed() -> Result<Pfn, OutOfFrames> {
    let pfn = alloc()?;
    // SAFETY: the frame was just allocated, so nothing else uses it, and it is
    // mapped writable in the linear map (it lies below BOOT_MAP_SIZE).
    unsafe { core::ptr::write_bytes(pfn.virt_ptr(), 0, PAGE_SIZE as usize) };
    Ok(pfn)
}

/// Returns a frame to [`FRAMES`].
pub fn free(pfn: Pfn) -> Result<(), FreeError> {
    FRAMES.lock().free(pfn)
}

/// Frames currently allocated from [`FRAMES`].
pub fn frames_in_use() -> u32 {
    FRAMES.lock().frames_in_use()
}

/// Frames currently free in [`FRAMES`].
pub fn frames_free() -> u32 {
    FRAMES.lock().frames_free()
}
