//! A run-time ops table of function pointers, like Linux's `struct paravirt_ops`.

use crate::{native, EntrySlot, Pfn, PvMmuOps};

type Ctx = *const ();

/// A backend chosen at run time: a context pointer and one function pointer per hook.
///
/// This is how Linux dispatches (`paravirt_ops.alloc_pt(pfn)`, filled in at boot by the VMI or
/// Xen setup code). It lets one kernel image pick its backend at boot, and it is the baseline
/// the benches compare static dispatch against. Build one with [`ParavirtOps::native`] or
/// [`ParavirtOps::from_backend`]; it implements [`PvMmuOps`] itself, so `i386-mm` takes it
/// like any other backend.
#[derive(Clone, Copy)]
pub struct ParavirtOps {
    ctx: Ctx,
    name: &'static str,
    alloc_pt: unsafe fn(Ctx, Pfn),
    alloc_pd: unsafe fn(Ctx, Pfn),
    alloc_pd_clone: unsafe fn(Ctx, Pfn, Pfn, u32, u32),
    release_pt: unsafe fn(Ctx, Pfn),
    release_pd: unsafe fn(Ctx, Pfn),
    set_pte: unsafe fn(Ctx, EntrySlot, u64),
    set_pte_at: unsafe fn(Ctx, Pfn, u32, EntrySlot, u64),
    set_pte_atomic: unsafe fn(Ctx, EntrySlot, u64),
    set_pte_present: unsafe fn(Ctx, Pfn, u32, EntrySlot, u64),
    set_pmd: unsafe fn(Ctx, EntrySlot, u64),
    set_pud: unsafe fn(Ctx, EntrySlot, u64),
    pte_clear: unsafe fn(Ctx, Pfn, u32, EntrySlot),
    pmd_clear: unsafe fn(Ctx, EntrySlot),
    exit_mmap: unsafe fn(Ctx, Pfn),
    write_cr3: unsafe fn(Ctx, u32) -> u32,
    read_cr3: unsafe fn(Ctx, u32) -> u32,
    flush_tlb_user: unsafe fn(Ctx),
    flush_tlb_kernel: unsafe fn(Ctx),
    flush_tlb_single: unsafe fn(Ctx, u32),
    allows_large_pages: unsafe fn(Ctx) -> bool,
}

// SAFETY: `from_backend` only accepts `&'static B` with `B: Sync`, and `native` has no context,
// so the context may be used from any thread.
unsafe impl Send for ParavirtOps {}
// SAFETY: as above.
unsafe impl Sync for ParavirtOps {}

fn nop1(_: Ctx, _: Pfn) {}
fn nop_clone(_: Ctx, _: Pfn, _: Pfn, _: u32, _: u32) {}
fn nop0(_: Ctx) {}
fn nop_addr(_: Ctx, _: u32) {}
fn ident(_: Ctx, v: u32) -> u32 {
    v
}
fn yes(_: Ctx) -> bool {
    true
}
unsafe fn native_set(_: Ctx, slot: EntrySlot, val: u64) {
    // SAFETY: the caller of the table entry upholds `set_pte`'s contract.
    unsafe { native::set_entry(slot, val) }
}
unsafe fn native_set_at(_: Ctx, _: Pfn, _: u32, slot: EntrySlot, val: u64) {
    // SAFETY: as above.
    unsafe { native::set_entry(slot, val) }
}
unsafe fn native_pte_clear(_: Ctx, _: Pfn, _: u32, slot: EntrySlot) {
    // SAFETY: as above.
    unsafe { native::clear_entry(slot) }
}
unsafe fn native_clear(_: Ctx, slot: EntrySlot) {
    // SAFETY: as above.
    unsafe { native::clear_entry(slot) }
}

impl ParavirtOps {
    /// The bare-metal table (`native_nop` for the five hooks, plain stores for entries).
    pub const fn native() -> Self {
        ParavirtOps {
            ctx: core::ptr::null(),
            name: "native",
            alloc_pt: nop1,
            alloc_pd: nop1,
            alloc_pd_clone: nop_clone,
            release_pt: nop1,
            release_pd: nop1,
            set_pte: native_set,
            set_pte_at: native_set_at,
            set_pte_atomic: native_set,
            set_pte_present: native_set_at,
            set_pmd: native_set,
            set_pud: native_set,
            pte_clear: native_pte_clear,
            pmd_clear: native_clear,
            exit_mmap: nop1,
            write_cr3: ident,
            read_cr3: ident,
            flush_tlb_user: nop0,
            flush_tlb_kernel: nop0,
            flush_tlb_single: nop_addr,
            allows_large_pages: yes,
        }
    }

    /// A table whose every entry calls into `backend` (the boot-time choice of a hypervisor).
    pub fn from_backend<B: PvMmuOps + Sync + 'static>(name: &'static str, backend: &'static B) -> Self {
        // SAFETY (all thunks): `ctx` is the `&'static B` stored below, so casting back is valid.
        unsafe fn b<'a, B>(ctx: Ctx) -> &'a B {
            // SAFETY: see above.
            unsafe { &*(ctx as *const B) }
        }
        unsafe fn alloc_pt<B: PvMmuOps>(c: Ctx, p: Pfn) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.alloc_pt(p)
        }
        unsafe fn alloc_pd<B: PvMmuOps>(c: Ctx, p: Pfn) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.alloc_pd(p)
        }
        unsafe fn alloc_pd_clone<B: PvMmuOps>(c: Ctx, p: Pfn, q: Pfn, s: u32, n: u32) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.alloc_pd_clone(p, q, s, n)
        }
        unsafe fn release_pt<B: PvMmuOps>(c: Ctx, p: Pfn) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.release_pt(p)
        }
        unsafe fn release_pd<B: PvMmuOps>(c: Ctx, p: Pfn) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.release_pd(p)
        }
        unsafe fn set_pte<B: PvMmuOps>(c: Ctx, s: EntrySlot, v: u64) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).set_pte(s, v) }
        }
        unsafe fn set_pte_at<B: PvMmuOps>(c: Ctx, m: Pfn, a: u32, s: EntrySlot, v: u64) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).set_pte_at(m, a, s, v) }
        }
        unsafe fn set_pte_atomic<B: PvMmuOps>(c: Ctx, s: EntrySlot, v: u64) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).set_pte_atomic(s, v) }
        }
        unsafe fn set_pte_present<B: PvMmuOps>(c: Ctx, m: Pfn, a: u32, s: EntrySlot, v: u64) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).set_pte_present(m, a, s, v) }
        }
        unsafe fn set_pmd<B: PvMmuOps>(c: Ctx, s: EntrySlot, v: u64) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).set_pmd(s, v) }
        }
        unsafe fn set_pud<B: PvMmuOps>(c: Ctx, s: EntrySlot, v: u64) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).set_pud(s, v) }
        }
        unsafe fn pte_clear<B: PvMmuOps>(c: Ctx, m: Pfn, a: u32, s: EntrySlot) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).pte_clear(m, a, s) }
        }
        unsafe fn pmd_clear<B: PvMmuOps>(c: Ctx, s: EntrySlot) {
            // SAFETY: see `b`; the entry contract is the caller's.
            unsafe { b::<B>(c).pmd_clear(s) }
        }
        unsafe fn exit_mmap<B: PvMmuOps>(c: Ctx, p: Pfn) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.exit_mmap(p)
        }
        unsafe fn write_cr3<B: PvMmuOps>(c: Ctx, v: u32) -> u32 {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.write_cr3(v)
        }
        unsafe fn read_cr3<B: PvMmuOps>(c: Ctx, v: u32) -> u32 {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.read_cr3(v)
        }
        unsafe fn flush_tlb_user<B: PvMmuOps>(c: Ctx) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.flush_tlb_user()
        }
        unsafe fn flush_tlb_kernel<B: PvMmuOps>(c: Ctx) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.flush_tlb_kernel()
        }
        unsafe fn flush_tlb_single<B: PvMmuOps>(c: Ctx, a: u32) {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.flush_tlb_single(a)
        }
        unsafe fn allows_large_pages<B: PvMmuOps>(c: Ctx) -> bool {
            // SAFETY: see `b`.
            unsafe { b::<B>(c) }.allows_large_pages()
        }
        ParavirtOps {
            ctx: backend as *const B as Ctx,
            name,
            alloc_pt: alloc_pt::<B>,
            alloc_pd: alloc_pd::<B>,
            alloc_pd_clone: alloc_pd_clone::<B>,
            release_pt: release_pt::<B>,
            release_pd: release_pd::<B>,
            set_pte: set_pte::<B>,
            set_pte_at: set_pte_at::<B>,
            set_pte_atomic: set_pte_atomic::<B>,
            set_pte_present: set_pte_present::<B>,
            set_pmd: set_pmd::<B>,
            set_pud: set_pud::<B>,
            pte_clear: pte_clear::<B>,
            pmd_clear: pmd_clear::<B>,
            exit_mmap: exit_mmap::<B>,
            write_cr3: write_cr3::<B>,
            read_cr3: read_cr3::<B>,
            flush_tlb_user: flush_tlb_user::<B>,
            flush_tlb_kernel: flush_tlb_kernel::<B>,
            flush_tlb_single: flush_tlb_single::<B>,
            allows_large_pages: allows_large_pages::<B>,
        }
    }

    /// The name given when the table was built (`"native"` for [`ParavirtOps::native`]).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Default for ParavirtOps {
    fn default() -> Self {
        Self::native()
    }
}

// SAFETY (every call below): the function pointers were built together with `ctx` by
// `native` or `from_backend`, so each accepts this context.
impl PvMmuOps for ParavirtOps {
    fn alloc_pt(&self, pfn: Pfn) {
        // SAFETY: see the impl comment.
        unsafe { (self.alloc_pt)(self.ctx, pfn) }
    }
    fn alloc_pd(&self, pfn: Pfn) {
        // SAFETY: see the impl comment.
        unsafe { (self.alloc_pd)(self.ctx, pfn) }
    }
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        // SAFETY: see the impl comment.
        unsafe { (self.alloc_pd_clone)(self.ctx, pfn, clone_pfn, start, count) }
    }
    fn release_pt(&self, pfn: Pfn) {
        // SAFETY: see the impl comment.
        unsafe { (self.release_pt)(self.ctx, pfn) }
    }
    fn release_pd(&self, pfn: Pfn) {
        // SAFETY: see the impl comment.
        unsafe { (self.release_pd)(self.ctx, pfn) }
    }
    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.set_pte)(self.ctx, slot, val) }
    }
    unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.set_pte_at)(self.ctx, mm, addr, slot, val) }
    }
    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.set_pte_atomic)(self.ctx, slot, val) }
    }
    unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.set_pte_present)(self.ctx, mm, addr, slot, val) }
    }
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.set_pmd)(self.ctx, slot, val) }
    }
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.set_pud)(self.ctx, slot, val) }
    }
    unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.pte_clear)(self.ctx, mm, addr, slot) }
    }
    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        // SAFETY: see the impl comment; the entry contract is the caller's.
        unsafe { (self.pmd_clear)(self.ctx, slot) }
    }
    fn exit_mmap(&self, mm: Pfn) {
        // SAFETY: see the impl comment.
        unsafe { (self.exit_mmap)(self.ctx, mm) }
    }
    fn write_cr3(&self, cr3: u32) -> u32 {
        // SAFETY: see the impl comment.
        unsafe { (self.write_cr3)(self.ctx, cr3) }
    }
    fn read_cr3(&self, hw: u32) -> u32 {
        // SAFETY: see the impl comment.
        unsafe { (self.read_cr3)(self.ctx, hw) }
    }
    fn flush_tlb_user(&self) {
        // SAFETY: see the impl comment.
        unsafe { (self.flush_tlb_user)(self.ctx) }
    }
    fn flush_tlb_kernel(&self) {
        // SAFETY: see the impl comment.
        unsafe { (self.flush_tlb_kernel)(self.ctx) }
    }
    fn flush_tlb_single(&self, addr: u32) {
        // SAFETY: see the impl comment.
        unsafe { (self.flush_tlb_single)(self.ctx, addr) }
    }
    fn allows_large_pages(&self) -> bool {
        // SAFETY: see the impl comment.
        unsafe { (self.allows_large_pages)(self.ctx) }
    }
}
