//! Races inside the test kit itself: what another thread sees while frames come and go.

use i386_paging::{alloc_zeroed, PhysMem};
use mm_testkit::EmulatedRam;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// Rounds each thread runs (the race showed within a few hundred to a few tens of thousands).
const ROUNDS: usize = 300_000;

/// One thread frees frames while another allocates and zeroes them: a frame handed out again
/// must never be overwritten by the poison of its earlier free.
#[test]
fn a_freed_frame_is_poisoned_before_another_thread_can_allocate_it() {
    let ram = EmulatedRam::new(512, 256);
    let stop = AtomicBool::new(false);
    let bad = thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..ROUNDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let f = ram.alloc_frame().expect("a free frame");
                ram.free_frame(f);
            }
        });
        let reader = s.spawn(|| {
            for round in 0..ROUNDS {
                let f = alloc_zeroed(&ram).expect("a free frame");
                // Give a late poisoning the time to land.
                thread::yield_now();
                let first = ram.read_u32(f.phys().as_u64());
                let last = ram.read_u32(f.phys().as_u64() + 4092);
                ram.free_frame(f);
                if first != 0 || last != 0 {
                    stop.store(true, Ordering::Relaxed);
                    return Some((round, f, first, last));
                }
            }
            stop.store(true, Ordering::Relaxed);
            None
        });
        reader.join().unwrap()
    });
    assert_eq!(bad, None, "(round, frame, first word, last word) of a zeroed frame read back");
    assert_eq!(ram.frames_in_use(), 0);
    assert_eq!(ram.free_frames(), 256);
}

/// Poisoning still happens: a frame read after its free holds the poison byte (0xA5) everywhere.
#[test]
fn a_freed_frame_reads_as_poison() {
    let ram = EmulatedRam::new(512, 256);
    let f = alloc_zeroed(&ram).unwrap();
    ram.free_frame(f);
    let p = u32::from_ne_bytes([0xA5; 4]);
    assert!((0..4096).step_by(4).all(|o| ram.read_u32(f.phys().as_u64() + o) == p));
}
