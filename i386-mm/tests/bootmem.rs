//! `BootMem`, the real-RAM allocator the kernel uses, exercised over a host buffer.
use i386_mm::{BootMem, FaultInject, Pfn, PhysMem};

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
        assert_eq!(mem.add_range(Pfn::new(2), Pfn::new(10)), 8);
        assert_eq!(mem.add_range(Pfn::new(20), Pfn::new(24)), 4);
        assert_eq!(mem.add_range(Pfn::new(8), Pfn::new(12)), 2, "overlap counted once");
    }
    assert_eq!(mem.total_frames(), 14);
    assert_eq!(mem.max_pfn(), Pfn::new(24));
    let got: Vec<Pfn> = std::iter::from_fn(|| mem.alloc_frame()).collect();
    let want: Vec<Pfn> = (2..12).chain(20..24).map(Pfn::new).collect();
    assert_eq!(got, want, "lowest first, never the hole");
    assert_eq!(mem.frames_in_use(), 14);
    assert_eq!(mem.free_frames(), 0);
    for p in &got {
        // SAFETY: every frame is one of the buffer's.
        unsafe { mem.frame_ptr(*p).write_bytes(0x5A, 4096) };
        mem.free_frame(*p);
    }
    assert_eq!(mem.frames_in_use(), 0);
    assert_eq!(mem.alloc_frame(), Some(Pfn::new(2)));
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
