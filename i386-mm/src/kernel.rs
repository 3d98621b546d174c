//! The kernel's page-table state (`swapper_pg_dir`, `pgd_lock`, `pgd_list`) and boot-time
//! construction (`pagetable_init` in `arch/i386/mm/init.c`).

use crate::cpu::Cpu;
use crate::entry::{entry_flags, entry_present, PteFlags, PAGE_KERNEL, PAGE_TABLE};
use crate::error::MmError;
use crate::mode::{PagingMode, PAGE_OFFSET};
use crate::phys::{alloc_zeroed, read_entry, slot, PhysMem};
use crate::sync::Lock;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use paravirt_core::{pv, EntrySlot, Pfn, PvMmuOps};

/// How many non-PAE pgds `pgd_list` can hold.
pub const MAX_PGDS: usize = 64;
/// How many page tables with changed attributes `change_page_attr` tracks at once.
pub const MAX_CPA_TABLES: usize = 32;

/// `pgd_list`: every non-PAE pgd in use, so kernel-range updates can reach all of them.
/// Guarded by `pgd_lock`.
pub struct PgdList {
    pgds: [Pfn; MAX_PGDS],
    len: usize,
}

impl PgdList {
    const fn new() -> Self {
        PgdList { pgds: [Pfn(0); MAX_PGDS], len: 0 }
    }
    /// The pgds on the list.
    pub fn as_slice(&self) -> &[Pfn] {
        &self.pgds[..self.len]
    }
    pub(crate) fn is_full(&self) -> bool {
        self.len == MAX_PGDS
    }
    /// `pgd_list_add`.
    pub(crate) fn add(&mut self, pgd: Pfn) {
        assert!(self.len < MAX_PGDS, "pgd_list overflow");
        self.pgds[self.len] = pgd;
        self.len += 1;
    }
    /// `pgd_list_del`.
    pub(crate) fn del(&mut self, pgd: Pfn) {
        if let Some(i) = self.as_slice().iter().position(|&p| p == pgd) {
            self.pgds[i] = self.pgds[self.len - 1];
            self.len -= 1;
        }
    }
}

/// A page table some of whose entries `change_page_attr` changed (Linux keeps the count in
/// `page_private`; split tables are the ones that are not `PageReserved`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpaTable {
    pub(crate) pfn: Pfn,
    pub(crate) changed: u32,
    pub(crate) split: bool,
}

/// State guarded by the kernel-range lock (`init_mm.page_table_lock` and `cpa_lock`).
pub(crate) struct KernelRange {
    pub(crate) cpa: [Option<CpaTable>; MAX_CPA_TABLES],
    /// `df_list`: page tables released by `revert_page`, freed by `global_flush_tlb`.
    pub(crate) deferred: [Option<Pfn>; MAX_CPA_TABLES],
}

/// Boot options for [`KernelMm::pagetable_init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// The CPU supports PSE (`cpu_has_pse`); large pages are used only if the backend allows.
    pub pse: bool,
    /// Map low memory up to this frame (exclusive); `None` for all RAM (`max_low_pfn`).
    pub lowmem_end: Option<Pfn>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { pse: true, lowmem_end: None }
    }
}

/// The kernel's memory-management state: Linux's `swapper_pg_dir`, `pgd_lock`, `pgd_list`
/// and the functions of `arch/i386/mm/{init,pgtable,pageattr}.c` that touch page-table pages.
///
/// Generic over the paging mode `M` ([`TwoLevel`](crate::TwoLevel) or [`Pae`](crate::Pae)),
/// the paravirt backend `B`, physical memory `P` and the processor `C`. With the native
/// backend every hook disappears at compile time.
pub struct KernelMm<M: PagingMode, B: PvMmuOps, P: PhysMem, C: Cpu> {
    pub(crate) backend: B,
    pub(crate) mem: P,
    pub(crate) cpu: C,
    pub(crate) swapper_pg_dir: Pfn,
    pub(crate) lowmem_end: Pfn,
    pub(crate) pse: bool,
    /// `pgd_lock`, guarding `pgd_list`.
    pub(crate) pgd_lock: Lock<PgdList>,
    /// Serialises kernel-range table changes (`init_mm.page_table_lock`, `cpa_lock`). Taken
    /// before `pgd_lock`, never after.
    pub(crate) kernel_lock: Lock<KernelRange>,
    /// Address spaces alive (both modes; PAE pgds are not on `pgd_list`).
    pub(crate) live_pgds: AtomicUsize,
    /// Root (guest view) last loaded with [`activate`](KernelMm::activate) (0 when none).
    pub(crate) active: AtomicU32,
    _mode: PhantomData<M>,
}

impl<M: PagingMode, B: PvMmuOps, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// `pagetable_init`: builds `swapper_pg_dir` mapping low memory at `PAGE_OFFSET` and
    /// returns the kernel. The tables are announced to `backend` as Linux does:
    ///
    /// - two-level: `alloc_pd(swapper_pg_dir)` first; PAE: each kernel pmd gets
    ///   [`one_md_table_init`](Self::one_md_table_init) (`alloc_pd` then `set_pud`), the PDPT
    ///   itself is never announced;
    /// - low memory is mapped with large pages where `opts.pse` and the backend allow it
    ///   (PSE entries through `set_pmd`), otherwise with page tables from
    ///   [`one_page_table_init`](Self::one_page_table_init) (`alloc_pt` then `set_pmd`) filled
    ///   with `set_pte`.
    ///
    /// The kernel's pgd is not loaded; call [`activate_swapper`](Self::activate_swapper).
    /// On failure every announced table is released and every frame freed.
    pub fn pagetable_init(mem: P, backend: B, cpu: C, opts: InitOptions) -> Result<Self, MmError> {
        let max_lowmem = Pfn((u32::MAX - PAGE_OFFSET + 1) >> 12);
        let lowmem_end = opts.lowmem_end.unwrap_or(mem.max_pfn()).min(mem.max_pfn()).min(max_lowmem);
        let swapper = alloc_zeroed(&mem).ok_or(MmError::OutOfMemory)?;
        let pse = opts.pse && pv::allows_large_pages(&backend);
        let k = KernelMm {
            backend,
            mem,
            cpu,
            swapper_pg_dir: swapper,
            lowmem_end,
            pse,
            pgd_lock: Lock::new(PgdList::new()),
            kernel_lock: Lock::new(KernelRange { cpa: [None; MAX_CPA_TABLES], deferred: [None; MAX_CPA_TABLES] }),
            live_pgds: AtomicUsize::new(0),
            active: AtomicU32::new(0),
            _mode: PhantomData,
        };
        if !M::PAE {
            pv::paravirt_alloc_pd(&k.backend, swapper);
        }
        match k.kernel_physical_mapping_init() {
            Ok(()) => Ok(k),
            Err(e) => {
                k.free_kernel_tables();
                Err(e)
            }
        }
    }

    fn kernel_physical_mapping_init(&self) -> Result<(), MmError> {
        if M::PAE {
            for i in M::USER_PTRS_PER_PGD..M::PTRS_PER_PGD {
                let pgd = slot(&self.mem, self.swapper_pg_dir, i, true);
                self.one_md_table_init(pgd)?;
            }
        }
        let end = self.lowmem_end.phys();
        let large = M::LARGE_PAGE_SIZE as u64;
        let mut pa: u64 = 0;
        while pa < end {
            let va = PAGE_OFFSET.wrapping_add(pa as u32);
            let pmd = self.kernel_pmd_slot(va).ok_or(MmError::NotInitialised)?;
            if self.pse && pa + large <= end {
                // SAFETY: `pmd` is an entry of the kernel's own directory.
                unsafe { pv::set_pmd(&self.backend, pmd, pa | (PAGE_KERNEL | PteFlags::PSE).bits()) };
                pa += large;
                continue;
            }
            let pt = self.one_page_table_init(pmd)?;
            let mut i = M::pte_index(va);
            while i < M::PTRS_PER_PTE && pa < end {
                let pte = slot(&self.mem, pt, i, M::PAE);
                // SAFETY: `pte` is an entry of the page table just announced and linked.
                unsafe { pv::set_pte(&self.backend, pte, pa | PAGE_KERNEL.bits()) };
                pa += 4096;
                i += 1;
            }
        }
        Ok(())
    }

    /// `one_md_table_init` (PAE): allocates a pmd page, announces it with `alloc_pd`, then
    /// links it with `set_pgd` (`set_pud`). Returns the pmd.
    pub fn one_md_table_init(&self, pgd: EntrySlot) -> Result<Pfn, MmError> {
        let pmd = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        pv::paravirt_alloc_pd(&self.backend, pmd);
        // SAFETY: `pgd` is a PDPT entry of a live root.
        unsafe { pv::set_pud(&self.backend, pgd, pmd.phys() | PteFlags::PRESENT.bits()) };
        Ok(pmd)
    }

    /// `one_page_table_init`: if the directory entry is none, allocates a page table,
    /// announces it with `alloc_pt` and links it with `set_pmd` (`_PAGE_TABLE`). Returns the
    /// page table the entry points at.
    pub fn one_page_table_init(&self, pmd: EntrySlot) -> Result<Pfn, MmError> {
        // SAFETY: `pmd` is an entry of a live directory.
        let cur = unsafe { paravirt_core::native::read_entry(pmd) };
        if entry_present(cur) {
            return Ok(Pfn::from_phys(cur & M::ADDR_MASK));
        }
        let pt = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        pv::paravirt_alloc_pt(&self.backend, pt);
        // SAFETY: `pmd` is an entry of a live directory.
        unsafe { pv::set_pmd(&self.backend, pmd, pt.phys() | PAGE_TABLE.bits()) };
        Ok(pt)
    }

    /// The slot of the directory entry mapping kernel address `va` in `swapper_pg_dir`.
    pub(crate) fn kernel_pmd_slot(&self, va: u32) -> Option<EntrySlot> {
        self.pmd_slot(self.swapper_pg_dir, va)
    }

    /// The slot of the directory entry (pgd entry in two-level mode, pmd entry in PAE) that maps
    /// `va` under `root`, or `None` if the PAE pgd entry is not present.
    pub(crate) fn pmd_slot(&self, root: Pfn, va: u32) -> Option<EntrySlot> {
        let (t, i) = crate::walk::pmd_table::<M, _>(&self.mem, root, va)?;
        Some(slot(&self.mem, t, i, M::PAE))
    }

    /// Releases and frees every table of the kernel range (used by `pagetable_init`'s unwind
    /// and [`shutdown`](Self::shutdown)): unlink, `release_*`, free.
    pub(crate) fn free_kernel_tables(&self) {
        let swapper = self.swapper_pg_dir;
        for gi in M::USER_PTRS_PER_PGD..M::PTRS_PER_PGD {
            let (pmd, first, last) = if M::PAE {
                let e = read_entry(&self.mem, swapper, gi, true);
                if !entry_present(e) {
                    continue;
                }
                (Pfn::from_phys(e & M::ADDR_MASK), 0, M::PTRS_PER_PMD - 1)
            } else {
                (swapper, gi, gi)
            };
            for mi in first..=last {
                let s = slot(&self.mem, pmd, mi, M::PAE);
                // SAFETY: `s` is an entry of a kernel directory.
                let e = unsafe { paravirt_core::native::read_entry(s) };
                if !entry_present(e) {
                    continue;
                }
                // SAFETY: as above.
                unsafe { pv::pmd_clear(&self.backend, s) };
                if !entry_flags(e).contains(PteFlags::PSE) {
                    let pt = Pfn::from_phys(e & M::ADDR_MASK);
                    pv::paravirt_release_pt(&self.backend, pt);
                    self.mem.free_frame(pt);
                }
            }
            if M::PAE {
                let s = slot(&self.mem, swapper, gi, true);
                // SAFETY: `s` is a PDPT entry of the kernel's root.
                unsafe { pv::set_pud(&self.backend, s, 0) };
                pv::paravirt_release_pd(&self.backend, pmd);
                self.mem.free_frame(pmd);
            }
        }
        pv::flush_tlb_kernel(&self.backend);
        if !M::PAE {
            pv::paravirt_release_pd(&self.backend, swapper);
        }
        self.mem.free_frame(swapper);
    }

    /// Tears the kernel's own tables down (beyond Linux, which never frees `swapper_pg_dir`):
    /// the `exit_mmap(swapper_pg_dir)` hook runs first, then every kernel page table and pmd is unlinked, released and freed, then the root, so a
    /// test or the demo can check that the backend holds nothing and every frame is back.
    ///
    /// Returns the backend, memory and processor, so the caller can check what the backend
    /// still holds and that every frame came back. Refused (returning the kernel) while
    /// address spaces are alive. The caller must have loaded a CR3 that this kernel did not
    /// build ([`Cpu::load_boot_root`]).
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    pub fn shutdown(self) -> Result<(B, P, C), (Self, MmError)> {
        let alive = self.live_pgds.load(Ordering::SeqCst);
        if alive != 0 {
            return Err((self, MmError::AddressSpacesAlive(alive)));
        }
        {
            let mut k = self.kernel_lock.lock();
            k.cpa = [None; MAX_CPA_TABLES];
        }
        self.global_flush_tlb();
        pv::exit_mmap(&self.backend, self.swapper_pg_dir);
        self.free_kernel_tables();
        Ok((self.backend, self.mem, self.cpu))
    }

    /// `swapper_pg_dir`: the kernel's root.
    pub fn swapper_pg_dir(&self) -> Pfn {
        self.swapper_pg_dir
    }

    /// One past the last frame of the linear map (`max_low_pfn`).
    pub fn lowmem_end(&self) -> Pfn {
        self.lowmem_end
    }

    /// Whether low memory is mapped with large pages.
    pub fn uses_large_pages(&self) -> bool {
        self.pse
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Physical memory.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// The processor.
    pub fn cpu(&self) -> &C {
        &self.cpu
    }

    /// Whether `pgd_lock` is held right now (for checks made from inside hooks).
    pub fn pgd_lock_is_held(&self) -> bool {
        self.pgd_lock.is_locked()
    }

    /// A copy of `pgd_list` (taken under `pgd_lock`), written into `out`; returns the count.
    pub fn pgd_list(&self, out: &mut [Pfn]) -> usize {
        let list = self.pgd_lock.lock();
        let n = list.as_slice().len().min(out.len());
        out[..n].copy_from_slice(&list.as_slice()[..n]);
        list.as_slice().len()
    }

    /// Address spaces currently alive.
    pub fn live_address_spaces(&self) -> usize {
        self.live_pgds.load(Ordering::SeqCst)
    }

    /// Loads `root` into CR3 through the backend (`write_cr3`); the CPU loads what the backend
    /// answers (a shadow root under VMI).
    pub(crate) fn load_cr3(&self, root: Pfn) {
        let hw = pv::write_cr3(&self.backend, root.phys() as u32);
        self.cpu.write_cr3(hw);
        self.active.store(root.0, Ordering::SeqCst);
    }

    /// Loads `swapper_pg_dir` (`load_cr3(swapper_pg_dir)` in `paging_init`).
    pub fn activate_swapper(&self) {
        self.load_cr3(self.swapper_pg_dir);
    }

    /// The root last loaded through this kernel (guest view), if any.
    pub fn active_root(&self) -> Option<Pfn> {
        match self.active.load(Ordering::SeqCst) {
            0 => None,
            p => Some(Pfn(p)),
        }
    }

    /// `__flush_tlb_single(addr)` (backend hook, then `invlpg`).
    pub fn flush_tlb_single(&self, va: u32) {
        pv::flush_tlb_single(&self.backend, va);
        self.cpu.invlpg(va);
    }

    /// `__flush_tlb()`.
    pub fn flush_tlb_user(&self) {
        pv::flush_tlb_user(&self.backend);
        self.cpu.flush_tlb();
    }

    /// `__flush_tlb_global()`.
    pub fn flush_tlb_kernel(&self) {
        pv::flush_tlb_kernel(&self.backend);
        self.cpu.flush_tlb_global();
    }
}
