//! `FrameMap`: records on demand and reserved, frames given back, bounds refused.

use i386_paging::{FrameMap, NoFrame, PhysMem, Record, RECORDS_PER_LEAF};
use mm_testkit::EmulatedRam;
use paravirt_core::Pfn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec(u32, u32);

impl Record for Rec {
    const EMPTY: Self = Rec(0, 0);
    fn to_words(self) -> [u32; 4] {
        [self.0, self.1, 0, 0]
    }
    fn from_words(w: [u32; 4]) -> Self {
        Rec(w[0], w[1])
    }
}

#[test]
fn on_demand_leaves_come_and_go() {
    let ram = EmulatedRam::new(4096, 1);
    let start = ram.frames_in_use();
    let mut m = FrameMap::<Rec>::new();
    assert_eq!(m.get(&ram, Pfn::new(7)), Rec::EMPTY);
    m.set(&ram, Pfn::new(7), Rec(1, 2)).unwrap();
    m.set(&ram, Pfn::new(3000), Rec(3, 4)).unwrap();
    assert_eq!(m.get(&ram, Pfn::new(7)), Rec(1, 2));
    assert!(m.contains(&ram, Pfn::new(3000)));
    assert!(!m.contains(&ram, Pfn::new(8)));
    assert_eq!(m.len(), 2);
    // One directory frame and two leaves.
    assert_eq!(m.frames(&ram), 3);
    assert_eq!(ram.frames_in_use(), start + 3);
    let mut seen = vec![];
    m.for_each(&ram, |p, r| seen.push((p.as_u32(), r)));
    assert_eq!(seen, [(7, Rec(1, 2)), (3000, Rec(3, 4))]);
    let via_iter: Vec<_> = m.iter(&ram).map(|(p, r)| (p.as_u32(), r)).collect();
    assert_eq!(via_iter, seen);
    m.set(&ram, Pfn::new(7), Rec::EMPTY).unwrap();
    assert_eq!(ram.frames_in_use(), start + 2);
    m.set(&ram, Pfn::new(3000), Rec::EMPTY).unwrap();
    assert_eq!(ram.frames_in_use(), start);
    assert!(m.is_empty());
}

#[test]
fn on_demand_out_of_memory_changes_nothing() {
    let ram = EmulatedRam::new(4, 3);
    let mut m = FrameMap::<Rec>::new();
    // One free frame: the directory fits, the leaf does not; the directory goes back.
    assert_eq!(m.set(&ram, Pfn::new(1), Rec(1, 1)), Err(NoFrame));
    assert_eq!(ram.frames_in_use(), 0);
    assert_eq!(m.get(&ram, Pfn::new(1)), Rec::EMPTY);
}

#[test]
fn reserved_map_never_allocates_and_refuses_past_its_end() {
    let ram = EmulatedRam::new(8192, 1);
    let mut m = FrameMap::<Rec>::new();
    m.reserve(&ram, Pfn::new(1000)).unwrap();
    let leaves = 1000u32.div_ceil(RECORDS_PER_LEAF) as usize;
    assert_eq!(ram.frames_in_use(), leaves + 1);
    assert_eq!(m.frames(&ram), leaves + 1);
    for p in [0, 999, 1023] {
        m.set(&ram, Pfn::new(p), Rec(p + 1, 0)).unwrap();
    }
    assert_eq!(m.set(&ram, Pfn::new(1024), Rec(1, 0)), Err(NoFrame));
    let all: Vec<_> = m.iter(&ram).map(|(p, _)| p.as_u32()).collect();
    assert_eq!(all, [0, 999, 1023]);
    assert_eq!(m.set(&ram, Pfn::new(5000), Rec(1, 0)), Err(NoFrame));
    // Clearing records keeps the frames; a second reservation is refused.
    for p in [0, 999, 1023] {
        m.set(&ram, Pfn::new(p), Rec::EMPTY).unwrap();
    }
    assert_eq!(ram.frames_in_use(), leaves + 1);
    assert_eq!(m.reserve(&ram, Pfn::new(10)), Err(NoFrame));
    m.clear(&ram);
    assert_eq!(ram.frames_in_use(), 0);
}

#[test]
fn reservation_that_does_not_fit_gives_everything_back() {
    let ram = EmulatedRam::new(64, 60);
    let mut m = FrameMap::<Rec>::new();
    // 4 free frames; 2^12 leaves wanted.
    assert_eq!(m.reserve(&ram, Pfn::new(1 << 20)), Err(NoFrame));
    assert_eq!(ram.frames_in_use(), 0);
    // The map is usable on demand afterwards.
    m.set(&ram, Pfn::new(5), Rec(5, 5)).unwrap();
    assert_eq!(m.get(&ram, Pfn::new(5)), Rec(5, 5));
    m.clear(&ram);
    assert_eq!(ram.frames_in_use(), 0);
}

#[test]
fn pfn_zero_can_hold_a_leaf() {
    // Frame 0 is allocatable here: a leaf there must not read as "no leaf".
    let ram = EmulatedRam::new(16, 0);
    let mut m = FrameMap::<Rec>::new();
    m.set(&ram, Pfn::new(9), Rec(9, 9)).unwrap();
    m.set(&ram, Pfn::new(10), Rec(10, 10)).unwrap();
    assert_eq!(m.get(&ram, Pfn::new(9)), Rec(9, 9));
    assert_eq!(m.get(&ram, Pfn::new(10)), Rec(10, 10));
    m.clear(&ram);
    assert_eq!(ram.frames_in_use(), 0);
}

#[test]
fn pfns_past_64_gib_are_refused() {
    let ram = EmulatedRam::new(16, 1);
    let mut m = FrameMap::<Rec>::new();
    assert_eq!(m.set(&ram, Pfn::new(1 << 24), Rec(1, 1)), Err(NoFrame));
    assert_eq!(m.get(&ram, Pfn::new(1 << 24)), Rec::EMPTY);
    assert_eq!(ram.frames_in_use(), 0);
}

#[test]
fn update_changes_a_record_in_place_and_keeps_the_counts() {
    let ram = EmulatedRam::new(4096, 1);
    let start = ram.frames_in_use();
    let mut m = FrameMap::<Rec>::new();
    // No leaf yet: the update makes the record (on demand), as `set` would.
    m.update(&ram, Pfn::new(9), |r| r.0 = 5).unwrap();
    assert_eq!((m.get(&ram, Pfn::new(9)), m.len()), (Rec(5, 0), 1));
    assert_eq!(ram.frames_in_use(), start + 2);
    // In place: the record changes, nothing else.
    m.update(&ram, Pfn::new(9), |r| r.1 += 7).unwrap();
    assert_eq!((m.get(&ram, Pfn::new(9)), m.len()), (Rec(5, 7), 1));
    // A second record in the same leaf, then both emptied: counted, and the frames go back.
    m.update(&ram, Pfn::new(10), |r| r.0 = 1).unwrap();
    assert_eq!(m.len(), 2);
    m.update(&ram, Pfn::new(9), |r| *r = Rec::EMPTY).unwrap();
    assert_eq!((m.len(), ram.frames_in_use()), (1, start + 2));
    m.update(&ram, Pfn::new(10), |r| *r = Rec::EMPTY).unwrap();
    assert_eq!((m.len(), ram.frames_in_use()), (0, start));
    // A reserved map refuses past its end, changing nothing.
    let mut r = FrameMap::<Rec>::new();
    r.reserve(&ram, Pfn::new(256)).unwrap();
    assert_eq!(r.update(&ram, Pfn::new(256), |x| x.0 = 1), Err(NoFrame));
    r.update(&ram, Pfn::new(255), |x| x.0 = 1).unwrap();
    assert_eq!((r.len(), r.get(&ram, Pfn::new(255))), (1, Rec(1, 0)));
    r.clear(&ram);
    assert_eq!(ram.frames_in_use(), start);
}
