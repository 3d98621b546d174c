//! `BootMem`, the real-RAM allocator the kernel uses, exercised over a host buffer.
use i386_mm::{BootMem, FaultInject, Pfn, PhysMem, FRAMES_PER_REGION};

#[repr(C, align(4096))]
struct Frame([u8; 4096]);

/// 64 frames of host memory standing in for physical frames 0..64.
fn ram() -> (Box<[Frame]>, BootMem) {
    let buf: Box<[Frame]> = (0..64).map(|_| Frame([0; 4096])).collect();
    let mem = BootMem::new(Pfn::new(0), buf.as_ptr() as usize);
    (buf, mem)
}

#[test]
fn hands_out_only_usable_frames_and_takes_them_back() {
    let (_buf, mem) = ram();
    assert_eq!(mem.alloc_frame(), None, "nothing is usable before add_range");
    // SAFETY: the frames are the test's buffer, unused and mapped at the offset.
    unsafe {
        assert_eq!(mem.add_range(Pfn::new(2), Pfn::new(10)), 7, "frame 2 holds the region's bitmaps");
        assert_eq!(mem.add_range(Pfn::new(20), Pfn::new(24)), 4);
        assert_eq!(mem.add_range(Pfn::new(8), Pfn::new(12)), 2, "overlap counted once");
    }
    assert_eq!(mem.total_frames(), 13);
    assert_eq!(mem.bitmap_frames(), 1);
    assert_eq!(mem.max_pfn(), Pfn::new(24));
    let got: Vec<Pfn> = std::iter::from_fn(|| mem.alloc_frame()).collect();
    let want: Vec<Pfn> = (3..12).chain(20..24).map(Pfn::new).collect();
    assert_eq!(got, want, "lowest first, never the hole, never the bitmap frame");
    assert_eq!(mem.frames_in_use(), 13);
    assert_eq!(mem.free_frames(), 0);
    for p in &got {
        // SAFETY: every frame is one of the buffer's.
        unsafe { mem.frame_ptr(*p).write_bytes(0x5A, 4096) };
        mem.free_frame(*p);
    }
    assert_eq!(mem.frames_in_use(), 0);
    assert_eq!(mem.alloc_frame(), Some(Pfn::new(3)));
}

/// 256 MiB of RAM (4 regions, twice what a fixed bitmap once held): every frame but the 4
/// bitmap frames is handed out once.
#[test]
fn manages_as_much_ram_as_it_is_given() {
    const FRAMES: usize = 1 << 16;
    let layout = std::alloc::Layout::from_size_align(FRAMES * 4096, 4096).unwrap();
    // SAFETY: a non-zero size; the memory is freed below with the same layout.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!buf.is_null());
    let mem = BootMem::new(Pfn::new(0), buf as usize);
    // SAFETY: the frames are the test's buffer, unused and mapped at the offset.
    let added = unsafe { mem.add_range(Pfn::new(0), Pfn::new(FRAMES as u32)) };
    assert_eq!(added, FRAMES - 4, "4 regions of 64 MiB, one bitmap frame each");
    assert_eq!(mem.bitmap_frames(), 4);
    let mut seen = vec![false; FRAMES];
    while let Some(p) = mem.alloc_frame() {
        assert!(!std::mem::replace(&mut seen[p.as_usize()], true), "{p:?} handed out twice");
    }
    assert_eq!(mem.frames_in_use(), FRAMES - 4);
    for r in 0..4u32 {
        assert!(!seen[(r * FRAMES_PER_REGION) as usize], "bitmap frame of region {r} handed out");
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
}

#[test]
fn injected_failure_hits_exactly_the_nth_allocation() {
    let (_buf, mem) = ram();
    // SAFETY: as above.
    unsafe { mem.add_range(Pfn::new(0), Pfn::new(64)) };
    mem.fail_nth_alloc(2);
    assert!(mem.alloc_frame().is_some());
    assert_eq!(mem.alloc_frame(), None);
    assert!(mem.alloc_frame().is_some());
    mem.fail_nth_alloc(1);
    mem.clear_fault();
    assert!(mem.alloc_frame().is_some());
    assert_eq!(mem.frames_in_use(), 3);
}

#[test]
#[should_panic(expected = "free of unallocated")]
fn double_free_is_refused() {
    let (_buf, mem) = ram();
    // SAFETY: as above.
    unsafe { mem.add_range(Pfn::new(0), Pfn::new(4)) };
    let p = mem.alloc_frame().unwrap();
    mem.free_frame(p);
    mem.free_frame(p);
}

#[test]
#[should_panic(expected = "free of unallocated")]
fn freeing_a_frame_never_handed_over_is_refused() {
    let (_buf, mem) = ram();
    mem.free_frame(Pfn::new(5));
}
