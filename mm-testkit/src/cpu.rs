//! A processor model over emulated RAM.

use crate::EmulatedRam;
use i386_paging::walk::translate;
use i386_paging::{Cpu, Fault, PagingMode, Pfn, PhysAddr, PteFlags, PF_PROT, PF_WRITE};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What the CPU's page-fault handler does with a write that faulted on a read-only page: given
/// the fault and the 32-bit value the store wrote, returns whether it handled the store (a
/// hypervisor that emulated it, like Xen's `ptwr_do_page_fault`); then the write counts as
/// done. Otherwise the fault is the access's result.
pub type WriteFaultHandler<'r> = &'r (dyn Fn(Fault, u32) -> bool + Sync);

/// A CPU with paging on: CR3 plus counters of TLB operations. Every probing access walks the
/// tables rooted at CR3 in software (no TLB is modelled, so a missing flush is not caught
/// here; the backends check flush discipline where it matters). Supervisor writes to
/// read-only pages fault, as with CR0.WP set; such a fault goes to the write-fault handler
/// first, if one was given ([`with_write_fault_handler`](Self::with_write_fault_handler)).
pub struct HostCpu<'r, M: PagingMode> {
    ram: &'r EmulatedRam,
    on_write_fault: Option<WriteFaultHandler<'r>>,
    handled: AtomicU64,
    cr3: AtomicU32,
    cr3_loads: AtomicU64,
    invlpgs: AtomicU64,
    flushes: AtomicU64,
    _m: PhantomData<M>,
}

impl<'r, M: PagingMode> HostCpu<'r, M> {
    /// A CPU over `ram` with CR3 = 0.
    pub fn new(ram: &'r EmulatedRam) -> Self {
        HostCpu {
            ram,
            on_write_fault: None,
            handled: AtomicU64::new(0),
            cr3: AtomicU32::new(0),
            cr3_loads: AtomicU64::new(0),
            invlpgs: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            _m: PhantomData,
        }
    }

    /// The CPU with `handler` as its page-fault handler for writes to read-only pages (a
    /// protection fault on a write): a handled store counts as done.
    pub fn with_write_fault_handler(mut self, handler: WriteFaultHandler<'r>) -> Self {
        self.on_write_fault = Some(handler);
        self
    }

    /// Write faults the handler took care of so far.
    pub fn handled_write_faults(&self) -> u64 {
        self.handled.load(Ordering::SeqCst)
    }

    /// CR3 loads so far.
    pub fn cr3_loads(&self) -> u64 {
        self.cr3_loads.load(Ordering::SeqCst)
    }

    /// `invlpg`s so far.
    pub fn invlpgs(&self) -> u64 {
        self.invlpgs.load(Ordering::SeqCst)
    }

    /// Full flushes so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    fn walk(&self, va: u32, write: bool) -> Result<u64, Fault> {
        let root = Pfn::containing(PhysAddr::new(self.cr3.load(Ordering::SeqCst) as u64));
        let err = if write { PF_WRITE } else { 0 };
        match translate::<M, _>(self.ram, root, va) {
            None => Err(Fault { vector: 14, error_code: err, addr: va }),
            Some(t) if write && !t.flags.contains(PteFlags::RW) => {
                Err(Fault { vector: 14, error_code: err | PF_PROT, addr: va })
            }
            Some(t) => Ok(t.pa),
        }
    }
}

impl<M: PagingMode> Cpu for HostCpu<'_, M> {
    fn write_cr3(&self, cr3: u32) {
        self.cr3.store(cr3, Ordering::SeqCst);
        self.cr3_loads.fetch_add(1, Ordering::SeqCst);
    }
    fn read_cr3(&self) -> u32 {
        self.cr3.load(Ordering::SeqCst)
    }
    fn load_boot_root(&self) {
        self.cr3.store(0, Ordering::SeqCst);
        self.cr3_loads.fetch_add(1, Ordering::SeqCst);
    }
    fn invlpg(&self, _va: u32) {
        self.invlpgs.fetch_add(1, Ordering::SeqCst);
    }
    fn flush_tlb(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
    }
    fn flush_tlb_global(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
    }
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        let pa = self.walk(va, false)?;
        Ok(self.ram.read_u32(pa))
    }
    fn write_u32(&self, va: u32, val: u32) -> Result<(), Fault> {
        match self.walk(va, true) {
            Ok(pa) => {
                self.ram.write_u32(pa, val);
                Ok(())
            }
            Err(f) if f.error_code & PF_PROT != 0 && self.on_write_fault.is_some_and(|h| h(f, val)) => {
                self.handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(f) => Err(f),
        }
    }
}
