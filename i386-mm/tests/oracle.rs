//! The tables agree with an independent model (a map of virtual → physical) after random
//! sequences of map / unmap / protect, through the software walk and the CPU model.
mod common;
use common::*;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn check_against_oracle<M: PagingMode>(k: &K<'_, M>, a: &AddressSpace<M>, o: &Oracle, probes: &[u32]) {
    for (va, pfn, flags) in o.iter() {
        let t = k.translate(a, va + 0x123).unwrap_or_else(|| panic!("{va:#x} missing"));
        assert_eq!(t.pa, pfn.phys().as_u64() + 0x123);
        assert_eq!(
            t.flags & (PteFlags::RW | PteFlags::USER | PteFlags::PRESENT),
            flags & (PteFlags::RW | PteFlags::USER | PteFlags::PRESENT)
        );
    }
    for &va in probes {
        assert_eq!(k.translate(a, va).map(|t| t.pa), o.lookup(va).map(|l| l.0), "{va:#x}");
    }
    assert_eq!(a.mapped_pages(), o.len());
}

fn random_map_unmap_protect_agrees_with_the_oracle<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut spaces: Vec<(AddressSpace<M>, Oracle)> = (0..3).map(|_| (k.create().unwrap(), Oracle::new())).collect();
        // Addresses cluster in a few page tables so tables fill, empty and get freed.
        let pick = |rng: &mut Rng| -> u32 {
            let region = [0x0000_1000u32, 0x0804_8000, 0x4000_0000, 0xBFFF_0000][rng.below(4) as usize];
            (region + (rng.below(48) as u32) * 0x1000) & 0xBFFF_F000
        };
        let frames_at_start = ram.frames_in_use() - k.metadata_frames();
        for step in 0..2000 {
            let (a, o) = &mut spaces[rng.below(3) as usize];
            let va = pick(&mut rng);
            match rng.below(3) {
                0 => {
                    let f = ram.alloc_frame().unwrap();
                    let flags = if rng.below(2) == 0 { PteFlags::USER } else { PteFlags::USER | PteFlags::RW };
                    match k.map(a, va, f, flags) {
                        Ok(()) => assert!(o.map(va, f, flags), "step {step}"),
                        Err(MmError::AlreadyMapped(v)) => {
                            assert_eq!(v, va);
                            assert!(o.lookup(va).is_some());
                            ram.free_frame(f);
                        }
                        Err(e) => panic!("step {step}: {e}"),
                    }
                }
                1 => match k.unmap(a, va) {
                    Ok(f) => {
                        assert_eq!(o.unmap(va), Some(f), "step {step}");
                        ram.free_frame(f);
                    }
                    Err(MmError::NotMapped(_)) => assert!(o.lookup(va).is_none()),
                    Err(e) => panic!("step {step}: {e}"),
                },
                _ => {
                    let flags = if rng.below(2) == 0 { PteFlags::USER } else { PteFlags::USER | PteFlags::RW };
                    match k.protect(a, va, flags) {
                        Ok(()) => assert!(o.protect(va, flags)),
                        Err(MmError::NotMapped(_)) => assert!(o.lookup(va).is_none()),
                        Err(e) => panic!("step {step}: {e}"),
                    }
                }
            }
        }
        let probes: Vec<u32> = (0..200).map(|_| pick(&mut rng)).collect();
        for (a, o) in &spaces {
            check_against_oracle(k, a, o, &probes);
        }
        // Through the CPU model as well: switch to each space and read every mapped page.
        for (a, o) in &spaces {
            k.activate(a);
            for (va, pfn, _) in o.iter() {
                // SAFETY: the frame is allocated to this test.
                unsafe { ram.frame_ptr(pfn).cast::<u32>().as_ptr().write(va ^ 0x55AA) };
                assert_eq!(k.cpu().read_u32(va), Ok(va ^ 0x55AA));
            }
        }
        // Unmapping everything returns every page table.
        for (mut a, o) in spaces {
            for (va, pfn, _) in o.iter() {
                assert_eq!(k.unmap(&mut a, va), Ok(pfn));
                ram.free_frame(pfn);
            }
            assert_eq!(a.mapped_pages(), 0);
            k.destroy(a);
        }
        assert_eq!(ram.frames_in_use() - k.metadata_frames(), frames_at_start - 3 * (1 + 3 * M::PAE as usize));
    });
}

fn linear_map_translates_every_low_page<M: PagingMode>() {
    for pse in [true, false] {
        with_kernel::<M, _>(pse, |k, _, _| {
            let root = k.swapper_pg_dir();
            for pfn in (0..k.lowmem_end().as_u32()).step_by(7) {
                let t = k.translate_root(root, lowmem_va(Pfn::new(pfn)) + 4).unwrap();
                assert_eq!(t.pa, Pfn::new(pfn).phys().as_u64() + 4);
                assert_eq!(t.large, pse);
                assert!(t.flags.contains(PteFlags::RW) && !t.flags.contains(PteFlags::USER));
            }
            assert_eq!(k.translate_root(root, lowmem_va(k.lowmem_end())), None);
            assert_eq!(k.translate_root(root, 0x1000), None, "no identity map in the kernel's root");
        });
    }
}

fn every_address_space_sees_the_kernel_linear_map<M: PagingMode>() {
    with_kernel::<M, _>(false, |k, ram, _| {
        let spaces: Vec<_> = (0..3).map(|_| k.create().unwrap()).collect();
        let f = ram.alloc_frame().unwrap();
        // SAFETY: the frame is allocated to this test.
        unsafe { ram.frame_ptr(f).cast::<u32>().as_ptr().write(0xFEED) };
        for a in &spaces {
            k.activate(a);
            assert_eq!(k.cpu().read_u32(lowmem_va(f)), Ok(0xFEED));
            assert_eq!(k.cpu().read_u32(0x0804_8000).unwrap_err().vector, 14);
        }
        for a in spaces {
            k.destroy(a);
        }
    });
}

both_modes!(
    random_map_unmap_protect_agrees_with_the_oracle,
    linear_map_translates_every_low_page,
    every_address_space_sees_the_kernel_linear_map,
);
