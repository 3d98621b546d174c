//! Kernel-range updates reach every pgd, additions and removals, and race correctly with
//! `pgd_alloc` (the reason `alloc_pd_clone` runs under `pgd_lock`).
mod common;
use common::*;

fn kernel_range_update_reaches_every_pgd<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let spaces: Vec<_> = (0..3).map(|_| k.create().unwrap()).collect();
        let f = ram.alloc_frame().unwrap();
        // SAFETY: the frame is allocated to this test.
        unsafe { ram.frame_ptr(f).cast::<u32>().as_ptr().write(0xABCD) };
        let va = k.vmalloc_start() + 0x0123_4000;
        rec.clear();
        k.map_kernel_page(va, f, PAGE_KERNEL).unwrap();
        let hs = hooks(rec);
        let Hook::AllocPt { pfn: pt } = hs[0] else { panic!("{hs:?}") };
        let linked: Vec<Pfn> = hs
            .iter()
            .filter_map(|h| match h {
                Hook::SetPmd { slot, val } if *val == Pmd::new(pt, PAGE_TABLE) => Some(slot.table),
                _ => None,
            })
            .collect();
        if M::PAE {
            assert_eq!(linked.len(), 1, "the kernel pmd is shared");
        } else {
            assert_eq!(linked[0], k.swapper_pg_dir(), "swapper_pg_dir first");
            let mut want: Vec<Pfn> = spaces.iter().map(|a| a.pgd()).collect();
            let mut got = linked[1..].to_vec();
            want.sort();
            got.sort();
            assert_eq!(got, want, "then every pgd on pgd_list");
        }
        // A pgd created afterwards gets the entry through its clone.
        let late = k.create().unwrap();
        for a in spaces.iter().chain([&late]) {
            k.activate(a);
            assert_eq!(k.cpu().read_u32(va), Ok(0xABCD));
        }
        // Removal propagates too: the emptied table disappears from every pgd before release.
        rec.clear();
        assert_eq!(k.unmap_kernel_page(va), Ok(f));
        let hs = hooks(rec);
        let rel = hs.iter().position(|h| *h == Hook::ReleasePt { pfn: pt }).unwrap();
        let clears = hs[..rel].iter().filter(|h| matches!(h, Hook::PmdClear { .. })).count();
        assert_eq!(clears, if M::PAE { 1 } else { 5 });
        assert!(!ram.is_allocated(pt));
        for a in spaces.iter().chain([&late]) {
            assert_eq!(k.translate(a, va), None);
            k.activate(a);
            assert!(k.cpu().read_u32(va).is_err());
        }
        for a in spaces.into_iter().chain([late]) {
            k.destroy(a);
        }
    });
}

/// Real threads: address spaces are created while another CPU installs and removes kernel
/// page tables. Every pgd must end up agreeing with swapper_pg_dir on the kernel range.
fn concurrent_pgd_alloc_and_kernel_updates_never_lose_an_entry<M: PagingMode>() {
    for round in 0..20 {
        with_kernel::<M, _>(true, |k, ram, _| race_pgd_alloc_against_kernel_updates(k, ram, round, 16, 12));
    }
}

both_modes!(kernel_range_update_reaches_every_pgd, concurrent_pgd_alloc_and_kernel_updates_never_lose_an_entry);
