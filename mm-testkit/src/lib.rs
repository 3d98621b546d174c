//! The host-side machine for testing `i386-mm` and its backends.
//!
//! - [`EmulatedRam`]: physical memory as a host byte array, with a frame allocator, frame
//!   accounting (tests assert every frame came back), fault injection (fail the Nth
//!   allocation) and poisoning of freed frames (a table used after it was freed reads garbage).
//! - [`HostCpu`]: a processor model holding CR3 and CR4.PGE, with a TLB and a
//!   paging-structure cache that honour `invlpg`, CR3 loads and global pages as the hardware
//!   does, so a missing or misplaced flush shows as a stale translation; a freed page reached
//!   through a stale entry panics. Supervisor writes honour CR0.WP; an optional write-fault
//!   handler plays a hypervisor that emulates stores into its tables.
//! - [`DropHooks`] / [`Dropping`]: a kernel that forgets hooks: wraps any backend (through
//!   `paravirt-core`'s [`Gated`](paravirt_core::Gated)) and drops the calls its rules name (the
//!   Nth `alloc_pt`, every `release_pd`, every call about one frame).
//! - [`CountingMem`]: physical memory that counts the frames reached, so a test can check an
//!   operation's cost does not grow with the number of tables alive.
//! - [`Oracle`]: an independent model of an address space (a map of virtual → physical) that
//!   tests compare the real tables against.
//! - `StoreLog` (feature `store-log`): every native entry store in order, with its address, width and value, so a
//!   test can replay each intermediate value an entry took (what a concurrent hardware walker
//!   could have seen).
//!
//! It depends on `paravirt-core` and `i386-paging` only, like the backends, so it sits below
//! `i386-mm`.
//!
//! ```
//! use i386_paging::{alloc_zeroed, Cpu, PhysMem, TwoLevel, PF_WRITE};
//! use mm_testkit::{EmulatedRam, HostCpu};
//!
//! let ram = EmulatedRam::new(1024, 256); // 4 MiB, the first 1 MiB never handed out
//! let root = alloc_zeroed(&ram).expect("a frame");
//! assert_eq!(ram.frames_in_use(), 1);
//! let cpu = HostCpu::<TwoLevel>::new(&ram);
//! cpu.write_cr3(root.phys().as_u64() as u32);
//! // Nothing is mapped: a write through the software walker faults as the CPU would.
//! let fault = cpu.write_u32(0x1000, 7).unwrap_err();
//! assert_eq!((fault.vector, fault.error_code, fault.addr), (14, PF_WRITE, 0x1000));
//! ram.free_frame(root);
//! assert_eq!(ram.read_u32(root.phys().as_u64()), 0xA5A5_A5A5, "freed frames are poisoned");
//! ```
//!
//! It lives in its own crate so the libraries stay `#![no_std]`.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod counting;
mod cpu;
mod drop_hooks;
mod oracle;
mod ram;
#[cfg(feature = "store-log")]
mod store_log;

pub use counting::CountingMem;
pub use cpu::{HostCpu, StaleHit, TlbEntry, WriteFaultHandler};
pub use drop_hooks::{dropping, first_pfn, DropHooks, Dropping, Which};
pub use i386_paging::{Pae, TwoLevel};
pub use oracle::Oracle;
pub use ram::EmulatedRam;
#[cfg(feature = "store-log")]
pub use store_log::{Store, StoreLog};

/// Runs each generic test body `$name::<M>()` once per paging mode, as `two_level::$name` and
/// `pae::$name`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod two_level {
            $(#[test] fn $name() { super::$name::<$crate::TwoLevel>() })*
        }
        mod pae {
            $(#[test] fn $name() { super::$name::<$crate::Pae>() })*
        }
    };
}
