//! TLB shootdown (Linux's `flush_tlb_others` / `smp_invalidate_interrupt`):
//! the sender records what to flush and which CPUs must do it, sends each of
//! them an IPI and waits until every one has flushed and acknowledged. Only
//! then may the caller reuse the page or the page table.
//!
//! The IPI is an NMI: the kernel runs with interrupts off, and an NMI reaches
//! a CPU whatever it is doing (spinning on a lock, or itself waiting for a
//! shootdown), needs no EOI and so no access to the APIC page from the
//! handler. The handler only flushes the local TLB and clears its bit.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::percpu::{this_cpu, MAX_CPUS};
use crate::{cpu, lapic, smp};

/// What the other CPUs flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every TLB entry, global ones included (`flush_tlb_all`).
    All,
    /// The entry of one virtual address (`flush_tlb_one`; `INVLPG_MULTI`).
    Single(u32),
}

/// Spins after which an unacknowledged shootdown is sent again.
const RESEND_SPINS: u32 = 1 << 14;

/// Serialises senders (Linux's `tlbstate_lock`).
static SENDING: AtomicBool = AtomicBool::new(false);
/// The request: 0 = all, else the page address to flush (never 0: user
/// address 0 is never flushed remotely).
static REQUEST: AtomicU32 = AtomicU32::new(0);
/// CPUs that have not yet flushed (`flush_cpumask`).
static PENDING: AtomicU32 = AtomicU32::new(0);
/// IPIs sent, per sending CPU.
static SENT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Shootdown IPIs handled, per CPU.
static HANDLED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Mask of the online CPUs other than this one.
pub fn others() -> u32 {
    let all = (1u32 << smp::cpus_online()) - 1;
    all & !(1 << this_cpu())
}

/// Makes every CPU in `mask` (this one left out) flush `what`, and returns
/// once all of them have.
pub fn flush_tlb_others(mask: u32, what: Flush) {
    let me = this_cpu();
    let mask = mask & others();
    if mask == 0 {
        return;
    }
    while SENDING.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
    REQUEST.store(
        match what {
            Flush::All => 0,
            Flush::Single(va) => va & !0xfff | 1,
        },
        Ordering::Relaxed,
    );
    PENDING.store(mask, Ordering::Release);
    if mask == others() {
        lapic::send_nmi_all_but_self();
    } else {
        for cpu in (0..MAX_CPUS).filter(|c| mask & (1 << c) != 0) {
            lapic::send_nmi(smp::apic_id(cpu));
        }
    }
    SENT[me].fetch_add(u64::from(mask.count_ones()), Ordering::Relaxed);
    let mut spins = 0u32;
    loop {
        let left = PENDING.load(Ordering::Acquire);
        if left == 0 {
            break;
        }
        spins += 1;
        if spins.is_multiple_of(RESEND_SPINS) {
            // An NMI that reached a CPU still blocking NMIs (inside the handler of the
            // previous one, before its IRET) can be lost: send again.
            for cpu in (0..MAX_CPUS).filter(|c| left & (1 << c) != 0) {
                lapic::send_nmi(smp::apic_id(cpu));
                SENT[me].fetch_add(1, Ordering::Relaxed);
            }
        }
        core::hint::spin_loop();
    }
    SENDING.store(false, Ordering::Release);
}

/// [`flush_tlb_others`] in the form a hypervisor model takes for its multicast flushes
/// (`MMUEXT_TLB_FLUSH_MULTI` / `MMUEXT_INVLPG_MULTI`): `addr` is one page, or
/// [`paravirt_core::TLB_FLUSH_ALL`].
pub fn flush_multi(mask: u32, addr: u32) {
    let what = if addr == paravirt_core::TLB_FLUSH_ALL { Flush::All } else { Flush::Single(addr) };
    flush_tlb_others(mask, what);
}

/// The NMI handler's part: flushes if this CPU has a shootdown pending.
/// Returns whether it had.
pub fn handle_nmi() -> bool {
    let n = this_cpu();
    let me = 1u32 << n;
    if PENDING.load(Ordering::Acquire) & me == 0 {
        return false;
    }
    match REQUEST.load(Ordering::Relaxed) {
        0 => {
            cpu::flush_tlb();
            cpu::flush_tlb_global();
        }
        va => cpu::invlpg(va & !0xfff),
    }
    HANDLED[n].fetch_add(1, Ordering::Relaxed);
    PENDING.fetch_and(!me, Ordering::AcqRel);
    true
}

/// IPIs CPU `n` has sent.
pub fn sent(n: usize) -> u64 {
    SENT[n].load(Ordering::Relaxed)
}

/// Shootdown IPIs CPU `n` has handled.
pub fn handled(n: usize) -> u64 {
    HANDLED[n].load(Ordering::Relaxed)
}
