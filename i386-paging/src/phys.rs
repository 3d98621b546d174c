//! Physical memory: the frame allocator and the kernel's view of frames (`__va`), with the
//! accessors every crate reads and writes page tables through.

use core::ptr::NonNull;
use paravirt_core::{Entry, PagingMode, Pfn, Slot, PAGE_OFFSET, PAGE_SIZE};

/// Physical memory as the page-table code sees it: a frame allocator plus access to a frame's
/// bytes. Implemented by `i386_mm::BootMem` (real RAM handed over at boot) and by the host test
/// kit's emulated RAM (fault injection, frame accounting).
///
/// Methods take `&self`: the allocator is shared by the kernel, the backends (shadow frames)
/// and several CPUs.
///
/// # Safety
/// Implementors guarantee, for as long as the value lives:
/// - `frame_ptr(pfn)` either panics or returns a pointer to `PAGE_SIZE` bytes, aligned to
///   `PAGE_SIZE`, valid for reads and writes. It panics for every frame outside the memory it
///   manages (the safe accessors of this module rely on that check);
/// - no Rust reference ever points into those bytes: they are reached only through raw
///   pointers (page-table entries are read and written with single volatile or atomic
///   accesses, as the hardware walker does);
/// - `alloc_frame` never hands out a frame that is already allocated and not yet freed, and
///   `frames_in_use` counts exactly the frames handed out and not returned.
///
/// This is the contract `x86_64`'s `unsafe trait FrameAllocator` states for its frames.
pub unsafe trait PhysMem {
    /// Allocates one frame; contents unspecified. `None` when memory is exhausted.
    fn alloc_frame(&self) -> Option<Pfn>;
    /// Returns a frame to the pool.
    ///
    /// # Panics
    /// Freeing a frame that is not allocated is a bug in the caller; implementations panic.
    fn free_frame(&self, pfn: Pfn);
    /// A pointer through which the kernel reads and writes the frame (Linux's `__va`).
    ///
    /// # Panics
    /// If `pfn` is not a frame of this memory.
    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8>;
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

// SAFETY: forwards to `T`, which upholds the contract.
unsafe impl<T: PhysMem + ?Sized> PhysMem for &T {
    #[inline(always)]
    fn alloc_frame(&self) -> Option<Pfn> {
        (**self).alloc_frame()
    }
    #[inline(always)]
    fn free_frame(&self, pfn: Pfn) {
        (**self).free_frame(pfn)
    }
    #[inline(always)]
    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
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

impl<T: FaultInject + ?Sized> FaultInject for &T {
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
    PAGE_OFFSET.wrapping_add(pfn.as_u32() << 12)
}

/// Fills a frame with zeroes.
///
/// # Safety
/// The caller owns `pfn` exclusively: no other CPU reads or writes it while it is zeroed (a
/// frame it just allocated, or a table nothing links and nothing else uses).
///
/// # Panics
/// If `pfn` is not a frame of `mem`.
#[inline(always)]
pub unsafe fn zero_frame<P: PhysMem + ?Sized>(mem: &P, pfn: Pfn) {
    // SAFETY: `frame_ptr` points at PAGE_SIZE writable bytes (PhysMem's contract) that the
    // caller owns exclusively.
    unsafe { core::ptr::write_bytes(mem.frame_ptr(pfn).as_ptr(), 0, PAGE_SIZE) }
}

/// Allocates a zeroed frame (every page is zeroed before it is announced, VMI's ZEROED rule).
/// `None` when memory is exhausted.
#[inline(always)]
pub fn alloc_zeroed<P: PhysMem + ?Sized>(mem: &P) -> Option<Pfn> {
    let pfn = mem.alloc_frame()?;
    // SAFETY: the frame was just allocated, so nothing else uses it.
    unsafe { zero_frame(mem, pfn) };
    Some(pfn)
}

/// Entries in a table of width `wide` (512 PAE, 1024 two-level).
#[inline(always)]
const fn entries(wide: bool) -> u32 {
    if wide {
        512
    } else {
        1024
    }
}

/// The slot of entry `index` of the table in frame `table`, for paging mode `M`.
///
/// # Safety
/// `table` must stay a frame of `mem`, and `mem` must stay alive, for as long as the slot (or
/// any copy of it) is used.
///
/// # Panics
/// If `table` is not a frame of `mem` or `index` is past the end of a table.
#[inline(always)]
pub unsafe fn slot<M: PagingMode, E: Entry, P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32) -> Slot<E> {
    assert!(index < entries(M::PAE), "entry index {index} past the end of a table");
    let size = M::ENTRY_SIZE as usize;
    let base = mem.frame_ptr(table);
    // SAFETY: `index * size < PAGE_SIZE`, so the entry lies inside the frame, which PhysMem's
    // contract makes valid and reference-free; the caller keeps it alive while the slot is used.
    unsafe { Slot::new(base.add(index as usize * size).cast::<u32>(), table, index, M::PAE) }
}

/// Reads entry `index` of the table in frame `table`, in paging mode `M` (one load of the
/// entry's width, as the hardware walker reads it).
///
/// # Panics
/// If `table` is not a frame of `mem` or `index` is past the end of a table.
#[inline(always)]
pub fn read_entry<M: PagingMode, E: Entry, P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32) -> E {
    // SAFETY: the slot is used only here, while `mem` is borrowed.
    unsafe { slot::<M, E, P>(mem, table, index) }.read()
}

/// Reads entry `index` of the table in frame `table` as a raw value (the PAE PDPT, shadow
/// comparisons).
///
/// # Panics
/// As for [`read_entry`].
#[inline(always)]
pub fn read_raw<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32) -> u64 {
    read_entry::<M, paravirt_core::Pte, P>(mem, table, index).raw()
}
