//! The kernel's page-table state (`swapper_pg_dir`, `pgd_lock`, `pgd_list`) and boot-time
//! construction (`pagetable_init` in `arch/i386/mm/init.c`).

use crate::error::MmError;
use crate::layout::MAXMEM;
use crate::memmap::{MemMap, Meta, EMPTY, NIL, ON_LIST};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use i386_paging::{alloc_zeroed, read_entry, Cpu, PhysMem};
use paravirt_core::pv::Pv;
use paravirt_core::sync::Lock;
use paravirt_core::{
    Entry, PagingMode, Pfn, Pmd, PmdSlot, Pte, PteFlags, PteSlot, Pud, PudSlot, PvMmuOps, Slot, PAGE_KERNEL,
    PAGE_OFFSET, PAGE_SHIFT, PAGE_TABLE,
};

/// `pgd_list`: every pgd in use whose kernel part is its own (every two-level pgd; a PAE pgd
/// when the backend does not share the kernel pmd), so kernel-range updates can reach all of
/// them. Guarded by `pgd_lock`.
///
/// An intrusive doubly-linked list whose links live in per-frame metadata, as Linux keeps them
/// in each pgd's `struct page` (`page->index`, `page->private`): no capacity limit, O(1) add
/// and removal; a kernel-range update walks it (linear in live pgds, as in Linux).
pub(crate) struct PgdList {
    links: MemMap,
    head: u32,
    len: usize,
}

impl PgdList {
    const fn new() -> Self {
        PgdList { links: MemMap::new(), head: NIL, len: 0 }
    }

    /// Pgds on the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `pgd_list_add`: puts `pgd` at the head.
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`] if the metadata frame for `pgd` cannot be allocated; the list
    /// is unchanged.
    pub(crate) fn add<P: PhysMem + ?Sized>(&mut self, mem: &P, pgd: Pfn) -> Result<(), MmError> {
        debug_assert!(self.links.get(mem, pgd).flags & ON_LIST == 0, "{pgd:?} already on pgd_list");
        self.links.set(mem, pgd, Meta { next: self.head, prev: NIL, count: 0, flags: ON_LIST })?;
        if self.head != NIL {
            let h = Pfn::new(self.head);
            let m = self.links.get(mem, h);
            // Updating a record in use never allocates.
            self.links.update(mem, h, Meta { prev: pgd.as_u32(), ..m });
        }
        self.head = pgd.as_u32();
        self.len += 1;
        Ok(())
    }

    /// `pgd_list_del`: takes `pgd` off the list (nothing if it is not on it).
    pub(crate) fn del<P: PhysMem + ?Sized>(&mut self, mem: &P, pgd: Pfn) {
        let m = self.links.get(mem, pgd);
        if m.flags & ON_LIST == 0 {
            return;
        }
        if m.prev == NIL {
            self.head = m.next;
        } else {
            let p = Pfn::new(m.prev);
            let pm = self.links.get(mem, p);
            self.links.update(mem, p, Meta { next: m.next, ..pm });
        }
        if m.next != NIL {
            let n = Pfn::new(m.next);
            let nm = self.links.get(mem, n);
            self.links.update(mem, n, Meta { prev: m.prev, ..nm });
        }
        self.links.update(mem, pgd, EMPTY);
        self.len -= 1;
    }

    /// The pgds on the list, most recent first.
    pub(crate) fn iter<'a, P: PhysMem + ?Sized>(&'a self, mem: &'a P) -> impl Iterator<Item = Pfn> + 'a {
        let mut cur = self.head;
        core::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let p = Pfn::new(cur);
            cur = self.links.get(mem, p).next;
            Some(p)
        })
    }

    /// Frames the list's metadata holds right now.
    pub(crate) fn metadata_frames<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        self.links.frames(mem)
    }
}

/// State guarded by the kernel-range lock (`init_mm.page_table_lock` and `cpa_lock`):
/// per page table, how many of its pages `change_page_attr` changed and whether it was made by
/// splitting a large page (Linux keeps both in the table's `struct page`), and `df_list`, the
/// page tables `revert_page` released, freed by `global_flush_tlb`. All in per-frame metadata:
/// no limit on how many tables are split or changed at once.
pub(crate) struct KernelRange {
    pub(crate) cpa: MemMap,
    /// Split page tables with a count in `cpa` (for [`KernelMm::split_tables`]).
    pub(crate) split: usize,
    /// Head of `df_list` (linked through `cpa`'s `next`).
    pub(crate) deferred: u32,
    pub(crate) deferred_len: usize,
}

/// Boot options for [`KernelMm::pagetable_init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// The CPU supports PSE (`cpu_has_pse`); large pages are used only if the backend allows.
    pub pse: bool,
    /// Map low memory up to this frame (exclusive); `None` for all RAM (`max_low_pfn`).
    pub lowmem_end: Option<Pfn>,
    /// Bytes at the top of the virtual address space the kernel must leave alone, because a
    /// hypervisor maps itself there (Linux's `reserve_top_address`, called by `xen_start_kernel`
    /// and `vmi_init` before `paging_init`): the linear map and the vmalloc area end below
    /// `4 GiB - reserve_top`. 0 on bare metal.
    pub reserve_top: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { pse: true, lowmem_end: None, reserve_top: 0 }
    }
}

/// The kernel's memory-management state: Linux's `swapper_pg_dir`, `pgd_lock`, `pgd_list`
/// and the functions of `arch/i386/mm/{init,pgtable,pageattr}.c` that touch page-table pages.
///
/// Generic over the paging mode `M` ([`TwoLevel`](crate::TwoLevel) or [`Pae`](crate::Pae)),
/// the paravirt backend `B`, physical memory `P` and the processor `C`. With the native
/// backend every hook disappears at compile time.
pub struct KernelMm<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu> {
    pub(crate) backend: B,
    pub(crate) mem: P,
    pub(crate) cpu: C,
    pub(crate) swapper_pg_dir: Pfn,
    pub(crate) lowmem_end: Pfn,
    /// End (exclusive) of the vmalloc area: [`VMALLOC_END`](crate::VMALLOC_END), lowered
    /// below a reserved top of the address space.
    pub(crate) vmalloc_end: u32,
    pub(crate) pse: bool,
    /// `pgd_lock`, guarding `pgd_list`.
    pub(crate) pgd_lock: Lock<PgdList>,
    /// Serialises kernel-range table changes (`init_mm.page_table_lock`, `cpa_lock`). Taken
    /// before `pgd_lock`, never after.
    pub(crate) kernel_lock: Lock<KernelRange>,
    /// Address spaces alive (both modes; PAE pgds are on `pgd_list` only when the kernel pmd
    /// is not shared).
    pub(crate) live_pgds: AtomicUsize,
    /// Root (guest view) last loaded with [`activate`](KernelMm::activate) (0 when none).
    pub(crate) active: AtomicU32,
    _mode: PhantomData<M>,
}

impl<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
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
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`] when a table cannot be allocated: every table announced so far
    /// is released and every frame freed.
    ///
    /// # Example
    /// Boot, one address space, one page, teardown (on the test kit's emulated machine):
    /// ```
    /// use i386_mm::{InitOptions, KernelMm, Pae, PhysMem, PteFlags};
    /// use backend_native::Native;
    /// use mm_testkit::{EmulatedRam, HostCpu};
    ///
    /// let ram = EmulatedRam::sixteen_mib();
    /// let cpu = HostCpu::<Pae>::new(&ram);
    /// let k = KernelMm::<Pae, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default())?;
    /// k.activate_swapper();
    /// let mut mm = k.create()?;
    /// let frame = ram.alloc_frame().expect("a free frame");
    /// k.map(&mut mm, 0x0804_8000, frame, PteFlags::USER | PteFlags::RW)?;
    /// assert_eq!(k.translate(&mm, 0x0804_8123).map(|t| t.pa), Some(frame.phys().as_u64() + 0x123));
    /// k.destroy(mm);
    /// ram.free_frame(frame);
    /// k.load_boot_root(); // shutdown frees swapper_pg_dir: it must not be loaded
    /// k.shutdown().map_err(|(_, e)| e)?;
    /// assert_eq!(ram.frames_in_use(), 0);
    /// # Ok::<(), i386_mm::MmError>(())
    /// ```
    pub fn pagetable_init(mem: P, backend: B, cpu: C, opts: InitOptions) -> Result<Self, MmError> {
        // The kernel's virtual space ends where the reserved top begins (4 GiB without one).
        let kernel_top = (1u64 << 32) - opts.reserve_top as u64;
        // `max_low_pfn`: low memory ends at MAXMEM (896 MiB), less a reserved top (Linux's
        // `reserve_top_address` grows `__VMALLOC_RESERVE` by it); RAM above is not linearly
        // mapped.
        let max_lowmem = Pfn::new(MAXMEM.saturating_sub(opts.reserve_top) >> PAGE_SHIFT);
        let lowmem_end = opts.lowmem_end.unwrap_or(mem.max_pfn()).min(mem.max_pfn()).min(max_lowmem);
        let vmalloc_end = (crate::layout::VMALLOC_END as u64).min(kernel_top & !(M::LARGE_PAGE_SIZE as u64 - 1)) as u32;
        let swapper = alloc_zeroed(&mem).ok_or(MmError::OutOfMemory)?;
        let pse = opts.pse && Pv::<M, B>::new(&backend).allows_large_pages();
        let k = KernelMm {
            backend,
            mem,
            cpu,
            swapper_pg_dir: swapper,
            lowmem_end,
            vmalloc_end,
            pse,
            pgd_lock: Lock::new(PgdList::new()),
            kernel_lock: Lock::new(KernelRange { cpa: MemMap::new(), split: 0, deferred: NIL, deferred_len: 0 }),
            live_pgds: AtomicUsize::new(0),
            active: AtomicU32::new(0),
            _mode: PhantomData,
        };
        if !M::PAE {
            k.pv().alloc_pd(swapper);
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
                let pgd = self.pud_slot(self.swapper_pg_dir, i);
                self.md_table_init(pgd)?;
            }
        }
        let end = self.lowmem_end.phys().as_u64();
        let large = M::LARGE_PAGE_SIZE as u64;
        let mut pa: u64 = 0;
        while pa < end {
            let va = PAGE_OFFSET.wrapping_add(pa as u32);
            let pmd = self.kernel_pmd_slot(va).ok_or(MmError::NotInitialised)?;
            if self.pse && pa + large <= end {
                self.pv().set_pmd(pmd, Pmd::large(paravirt_core::PhysAddr::new(pa), PAGE_KERNEL));
                pa += large;
                continue;
            }
            let pt = self.page_table_init(pmd)?;
            let mut i = M::pte_index(va);
            while i < M::PTRS_PER_PTE && pa < end {
                let pte = self.pte_slot(pt, i);
                self.pv().set_pte(pte, Pte::new(Pfn::containing(paravirt_core::PhysAddr::new(pa)), PAGE_KERNEL));
                pa += 4096;
                i += 1;
            }
        }
        Ok(())
    }

    /// `one_md_table_init` (PAE only): allocates a pmd page, announces it with `alloc_pd`, then
    /// links it with `set_pgd` (`set_pud`) into the PDPT entry `pgd`. Returns the pmd's frame.
    ///
    /// # Errors
    /// [`MmError::WrongMode`] in two-level mode (where the pmd is folded into the pgd), and
    /// [`MmError::OutOfMemory`]; either way nothing changed.
    ///
    /// # Safety
    /// `pgd` must be an empty PDPT entry of a root the caller owns (no other CPU changes it).
    pub unsafe fn one_md_table_init(&self, pgd: PudSlot) -> Result<Pfn, MmError> {
        if !M::PAE {
            return Err(MmError::WrongMode);
        }
        self.md_table_init(pgd)
    }

    fn md_table_init(&self, pgd: PudSlot) -> Result<Pfn, MmError> {
        let pmd = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        self.pv().alloc_pd(pmd);
        self.pv().set_pud(pgd, Pud::new(pmd, PteFlags::PRESENT));
        Ok(pmd)
    }

    /// `one_page_table_init`: if the directory entry `pmd` is none, allocates a page table,
    /// announces it with `alloc_pt` and links it with `set_pmd` (`_PAGE_TABLE`). Returns the
    /// frame of the page table the entry points at.
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`], with nothing changed.
    ///
    /// # Safety
    /// `pmd` must be an entry of a directory the caller owns (no other CPU changes it), and
    /// must not map a large page.
    pub unsafe fn one_page_table_init(&self, pmd: PmdSlot) -> Result<Pfn, MmError> {
        self.page_table_init(pmd)
    }

    fn page_table_init(&self, pmd: PmdSlot) -> Result<Pfn, MmError> {
        let cur = pmd.read();
        if cur.is_present() {
            return Ok(cur.pfn());
        }
        let pt = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        self.pv().alloc_pt(pt);
        self.pv().set_pmd(pmd, Pmd::new(pt, PAGE_TABLE));
        Ok(pt)
    }

    /// The call sites of the backend (`paravirt-core`'s [`Pv`] layer).
    #[inline(always)]
    pub(crate) fn pv(&self) -> Pv<'_, M, B> {
        Pv::new(&self.backend)
    }

    /// The slot of entry `index` of the table in frame `table`, a table this kernel owns.
    #[inline(always)]
    pub(crate) fn entry_slot<E: Entry>(&self, table: Pfn, index: u32) -> Slot<E> {
        // SAFETY: `table` is a frame of `self.mem`, which lives as long as `self`; slots made
        // here are used only while `self` is borrowed.
        unsafe { i386_paging::slot::<M, E, _>(&self.mem, table, index) }
    }

    /// A last-level entry slot of one of this kernel's tables.
    #[inline(always)]
    pub(crate) fn pte_slot(&self, table: Pfn, index: u32) -> PteSlot {
        self.entry_slot(table, index)
    }

    /// A PAE PDPT entry slot of one of this kernel's roots.
    #[inline(always)]
    pub(crate) fn pud_slot(&self, table: Pfn, index: u32) -> PudSlot {
        self.entry_slot(table, index)
    }

    /// The slot of the directory entry mapping kernel address `va` in `swapper_pg_dir`.
    pub(crate) fn kernel_pmd_slot(&self, va: u32) -> Option<PmdSlot> {
        self.pmd_slot(self.swapper_pg_dir, va)
    }

    /// The slot of the directory entry (pgd entry in two-level mode, pmd entry in PAE) that maps
    /// `va` under `root`, or `None` if the PAE pgd entry is not present.
    pub(crate) fn pmd_slot(&self, root: Pfn, va: u32) -> Option<PmdSlot> {
        let (t, i) = i386_paging::walk::pmd_table::<M, _>(&self.mem, root, va)?;
        Some(self.entry_slot(t, i))
    }

    /// Releases and frees every table of the kernel range (used by `pagetable_init`'s unwind
    /// and [`shutdown`](Self::shutdown)): unlink, [`global_flush_tlb`](Self::global_flush_tlb)
    /// (which also frees the tables `revert_page` released), `release_*`, free.
    pub(crate) fn free_kernel_tables(&self) {
        let swapper = self.swapper_pg_dir;
        self.for_each_dir_entry(swapper, M::USER_PTRS_PER_PGD..M::PTRS_PER_PGD, |s, _| {
            let e = s.read();
            self.pv().pmd_clear(s);
            if !e.is_large() {
                let pt = e.pfn();
                self.pv().release_pt(pt);
                self.mem.free_frame(pt);
            }
        });
        if M::PAE {
            for gi in M::USER_PTRS_PER_PGD..M::PTRS_PER_PGD {
                let e: Pud = read_entry::<M, _, _>(&self.mem, swapper, gi);
                if e.is_present() {
                    self.pv().set_pud(self.pud_slot(swapper, gi), Pud::EMPTY);
                    self.pv().release_pd(e.pfn());
                    self.mem.free_frame(e.pfn());
                }
            }
        }
        // Nothing may still translate through the unlinked tables, and the tables
        // `revert_page` released wait for this flush too.
        self.global_flush_tlb();
        if !M::PAE {
            self.pv().release_pd(swapper);
        }
        self.mem.free_frame(swapper);
    }

    /// Calls `f(slot, va)` for every present directory entry (two-level pgd entry, or PAE pmd
    /// entry) under the pgd entries `pgds` of `root`, with the first virtual address it maps:
    /// the one directory loop of both modes.
    pub(crate) fn for_each_dir_entry(&self, root: Pfn, pgds: core::ops::Range<u32>, mut f: impl FnMut(PmdSlot, u32)) {
        for gi in pgds {
            let gva = gi << M::PGDIR_SHIFT;
            let (dir, first, last) = if M::PAE {
                let e: Pud = read_entry::<M, _, _>(&self.mem, root, gi);
                if !e.is_present() {
                    continue;
                }
                (e.pfn(), 0, M::PTRS_PER_PMD - 1)
            } else {
                (root, gi, gi)
            };
            for mi in first..=last {
                let s: PmdSlot = self.entry_slot(dir, mi);
                if s.read().is_present() {
                    let va = if M::PAE { gva | (mi << M::PMD_SHIFT) } else { gva };
                    f(s, va);
                }
            }
        }
    }

    /// Tears the kernel's own tables down (beyond Linux, which never frees `swapper_pg_dir`):
    /// the `exit_mmap(swapper_pg_dir)` hook runs first, then every kernel page table and pmd is unlinked, released and freed, then the root, so a
    /// test or the demo can check that the backend holds nothing and every frame is back.
    ///
    /// Returns the backend, memory and processor, so the caller can check what the backend
    /// still holds and that every frame came back.
    ///
    /// # Errors
    /// Refused, returning the kernel unchanged, with [`MmError::AddressSpacesAlive`] while
    /// address spaces are alive, and with [`MmError::RootLoaded`] while a root this kernel
    /// built is loaded in CR3: load one it did not build first ([`Cpu::load_boot_root`], then
    /// [`forget_active_root`](Self::forget_active_root)).
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    pub fn shutdown(self) -> Result<(B, P, C), (Self, MmError)> {
        let alive = self.live_pgds.load(Ordering::SeqCst);
        if alive != 0 {
            return Err((self, MmError::AddressSpacesAlive(alive)));
        }
        if let Some(root) = self.active_root() {
            return Err((self, MmError::RootLoaded(root)));
        }
        self.pv().exit_mmap(self.swapper_pg_dir);
        // Its flush also frees the tables `revert_page` released, which the change_page_attr
        // records still list.
        self.free_kernel_tables();
        {
            // Pages left with a changed protection are forgotten with the tables they are in.
            let mut k = self.kernel_lock.lock();
            k.cpa.clear(&self.mem);
            k.split = 0;
        }
        Ok((self.backend, self.mem, self.cpu))
    }

    /// `swapper_pg_dir`: the kernel's root.
    pub fn swapper_pg_dir(&self) -> Pfn {
        self.swapper_pg_dir
    }

    /// One past the last frame of the linear map (`max_low_pfn`): all RAM up to 896 MiB
    /// (`MAXMEM`).
    pub fn lowmem_end(&self) -> Pfn {
        self.lowmem_end
    }

    /// `high_memory`: the virtual address just past the linear map of low memory.
    pub fn high_memory(&self) -> u32 {
        PAGE_OFFSET + (self.lowmem_end.as_u32() << PAGE_SHIFT)
    }

    /// `VMALLOC_START`: the first virtual address of the vmalloc area, 8 to 16 MiB above
    /// [`high_memory`](Self::high_memory) (it moves with the amount of low memory).
    pub fn vmalloc_start(&self) -> u32 {
        crate::layout::vmalloc_start(self.high_memory())
    }

    /// Whether low memory is mapped with large pages.
    pub fn uses_large_pages(&self) -> bool {
        self.pse
    }

    /// End (exclusive) of the vmalloc area: [`VMALLOC_END`](crate::VMALLOC_END), or lower when
    /// [`InitOptions::reserve_top`] reserved the top of the address space.
    pub fn vmalloc_end(&self) -> u32 {
        self.vmalloc_end
    }

    /// Whether every PAE pgd shares `swapper_pg_dir`'s kernel pmd (the backend's
    /// [`shared_kernel_pmd`](PvMmuOps::shared_kernel_pmd)); always `true` in two-level mode,
    /// where there is no pmd to share.
    pub fn shares_kernel_pmd(&self) -> bool {
        !self.unshared_kernel_pmd()
    }

    /// Frames [`pgd_alloc`](Self::pgd_alloc) takes for one address space: the pgd, plus in PAE
    /// a pmd per user slot, plus the kernel pmd's copy when it is not shared.
    pub fn pgd_alloc_frames(&self) -> u32 {
        match (M::PAE, self.unshared_kernel_pmd()) {
            (false, _) => 1,
            (true, false) => 1 + M::USER_PTRS_PER_PGD,
            (true, true) => 1 + M::PTRS_PER_PGD,
        }
    }

    /// PAE with a kernel pmd per pgd: the backend does not share it (Xen).
    #[inline(always)]
    pub(crate) fn unshared_kernel_pmd(&self) -> bool {
        M::PAE && !self.pv().shared_kernel_pmd()
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
        for (o, p) in out.iter_mut().zip(list.iter(&self.mem)) {
            *o = p;
        }
        list.len()
    }

    /// Frames holding per-frame metadata right now (`pgd_list`'s links, `change_page_attr`'s
    /// counts): allocated when a frame first needs a record, freed when the last record in
    /// them is cleared.
    pub fn metadata_frames(&self) -> usize {
        self.pgd_lock.lock().metadata_frames(&self.mem) + self.kernel_lock.lock().cpa.frames(&self.mem)
    }

    /// Address spaces currently alive.
    pub fn live_address_spaces(&self) -> usize {
        self.live_pgds.load(Ordering::SeqCst)
    }

    /// Loads `root` into CR3 through the backend (`write_cr3`); the CPU loads what the backend
    /// answers (a shadow root under VMI).
    pub(crate) fn load_cr3(&self, root: Pfn) {
        let hw = self.pv().write_cr3(root.phys().as_u64() as u32);
        self.cpu.write_cr3(hw);
        // The guest's view of what the CPU now holds: the backend may have refused the new
        // root and kept the old one (Xen after a refused NEW_BASEPTR).
        let now = self.pv().read_cr3(hw);
        self.active.store(Pfn::containing(paravirt_core::PhysAddr::new(now as u64)).as_u32(), Ordering::SeqCst);
    }

    /// Loads the processor's boot root ([`Cpu::load_boot_root`], a root this kernel did not
    /// build) and forgets the active root, so [`shutdown`](Self::shutdown) may free the
    /// kernel's tables.
    pub fn load_boot_root(&self) {
        self.cpu.load_boot_root();
        self.forget_active_root();
    }

    /// Forgets the active root after the caller loaded a CR3 this kernel did not build.
    pub fn forget_active_root(&self) {
        self.active.store(0, Ordering::SeqCst);
    }

    /// Loads `swapper_pg_dir` (`load_cr3(swapper_pg_dir)` in `paging_init`).
    pub fn activate_swapper(&self) {
        self.load_cr3(self.swapper_pg_dir);
    }

    /// The root last loaded through this kernel (guest view), if any.
    pub fn active_root(&self) -> Option<Pfn> {
        match self.active.load(Ordering::SeqCst) {
            0 => None,
            p => Some(Pfn::new(p)),
        }
    }

    /// `__flush_tlb_single(addr)` (backend hook, then `invlpg`).
    pub fn flush_tlb_single(&self, va: u32) {
        self.pv().flush_tlb_single(va);
        self.cpu.invlpg(va);
    }

    /// `__flush_tlb()`.
    pub fn flush_tlb_user(&self) {
        self.pv().flush_tlb_user();
        self.cpu.flush_tlb();
    }

    /// `flush_tlb_others`: every other online CPU flushes `addr` (or everything, for
    /// [`TLB_FLUSH_ALL`](paravirt_core::TLB_FLUSH_ALL)) and this returns once all have: the
    /// backend's multicast flush if it has one (Xen), else the processor's IPIs. A kernel-range
    /// unmap and `change_page_attr` call it before the page or the table is reused.
    pub fn flush_tlb_others(&self, addr: u32) {
        let mask = self.cpu.other_cpus();
        if mask != 0 && !self.pv().flush_tlb_others(mask, addr) {
            self.cpu.flush_tlb_others(mask, addr);
        }
    }

    /// `__flush_tlb_global()`.
    pub fn flush_tlb_kernel(&self) {
        self.pv().flush_tlb_kernel();
        self.cpu.flush_tlb_global();
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::PgdList;
    use i386_paging::PhysMem;
    use mm_testkit::EmulatedRam;
    use paravirt_core::Pfn;
    use std::vec;
    use std::vec::Vec;

    fn listed(l: &PgdList, ram: &EmulatedRam) -> Vec<u32> {
        l.iter(ram).map(Pfn::as_u32).collect()
    }

    #[test]
    fn pgd_list_links_live_in_metadata_frames_and_unlink_in_any_order() {
        let ram = EmulatedRam::new(1024, 256);
        let mut l = PgdList::new();
        for p in [0x300, 0x301, 0x302, 0x303] {
            l.add(&ram, Pfn::new(p)).unwrap();
        }
        assert_eq!(listed(&l, &ram), [0x303, 0x302, 0x301, 0x300], "most recent first");
        assert_eq!(l.len(), 4);
        l.del(&ram, Pfn::new(0x3ff)); // never listed: nothing changes
        l.del(&ram, Pfn::new(0x304));
        assert_eq!((listed(&l, &ram), l.len()), (vec![0x303, 0x302, 0x301, 0x300], 4));
        l.del(&ram, Pfn::new(0x302)); // middle
        assert_eq!(listed(&l, &ram), [0x303, 0x301, 0x300]);
        l.del(&ram, Pfn::new(0x303)); // head
        assert_eq!(listed(&l, &ram), [0x301, 0x300]);
        l.del(&ram, Pfn::new(0x300)); // tail
        assert_eq!(listed(&l, &ram), [0x301]);
        l.del(&ram, Pfn::new(0x300)); // twice: nothing
        assert_eq!((listed(&l, &ram), l.len()), (vec![0x301], 1));
        assert!(l.metadata_frames(&ram) > 0);
        l.del(&ram, Pfn::new(0x301));
        assert_eq!((listed(&l, &ram), l.len()), (vec![], 0));
        assert_eq!(l.metadata_frames(&ram), 0, "the last record gone, its frames are freed");
        assert_eq!(ram.frames_in_use(), 0);
    }
}
