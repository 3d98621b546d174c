//! Real Xen as the oracle of the Xen model: one operation language for both sides.
//!
//! A 64-bit PV guest (`xen-oracle-guest/`, booted as dom0 of Xen 4.17 under QEMU) and the
//! 4-level hypervisor model of `backend-xen` (its `level4` module, behind this crate's
//! `model` feature) run the same operations — `mmu_update`, `mmuext_op`,
//! `update_va_mapping` on page tables built from a small pool of frames, and observations of
//! the result — and print one line per operation in the guest's terms (frames by name, entry
//! values as `frame:flags`, return codes as Xen returns them). The runner (`cargo xtask
//! xen-oracle`) compares the two transcripts line by line.
//!
//! - [`ops`]: the operations, their text form and parser.
//! - [`gen`]: the named battery and the seeded random sequences.
//! - [`interp`]: the [`Machine`](interp::Machine) the operations run on and the interpreter
//!   that prints the lines, the same code on both sides.
//! - `model` (feature `model`): the host [`Machine`](interp::Machine) over the model.
//!
//! The crate is `#![no_std]` and allocates nothing unless the `model` feature is on.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "model")]
extern crate std;

pub mod gen;
pub mod interp;
#[cfg(feature = "model")]
pub mod model;
pub mod ops;

/// Frames in the guest's pool (`P0`..`P11`), the frames the operations build tables from.
pub const POOL: usize = 12;

/// Operations in one random sequence.
pub const SEQ_LEN: usize = 20;

/// `_PAGE_PRESENT`.
pub const P: u64 = 0x001;
/// `_PAGE_RW`.
pub const RW: u64 = 0x002;
/// `_PAGE_USER`.
pub const US: u64 = 0x004;
/// `_PAGE_PWT`.
pub const PWT: u64 = 0x008;
/// `_PAGE_PCD`.
pub const PCD: u64 = 0x010;
/// `_PAGE_ACCESSED`.
pub const A: u64 = 0x020;
/// `_PAGE_DIRTY`.
pub const D: u64 = 0x040;
/// `_PAGE_PSE` (in an L1: `_PAGE_PAT`).
pub const PSE: u64 = 0x080;
/// `_PAGE_GLOBAL`.
pub const G: u64 = 0x100;
/// `_PAGE_NX` (bit 63).
pub const NX: u64 = 1 << 63;
/// The machine-address bits of an entry (bits 12..51).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// L4 slot of the kernel mapping (`0xffffffff80000000`), which points at the boot L3 `K`.
pub const KERNEL_SLOT: u16 = 511;

/// L1 index of the windows: the virtual addresses the operations map frames at use L4, L3
/// and L2 index 0 or 1 and one of these L1 indices. Chosen so that, in a TLB indexed by the
/// low bits of the page number (QEMU's), they share no slot with a page the guest itself
/// touches (its image is well below 60 pages).
pub const WINDOW_L1: [u16; 2] = [60, 61];
