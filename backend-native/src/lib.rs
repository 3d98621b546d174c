//! The bare-metal backend.
//!
//! [`Native`] is a zero-sized type that overrides nothing: every hook is
//! [`PvMmuOps`]'s `#[inline(always)]` default, so the five page-type hooks vanish and entry
//! writes are plain stores once `i386-mm` is monomorphised over it. This is Linux's
//! `native_nop` / `native_set_pte` table, with the "patch the call site into NOPs" step done by
//! the compiler. The workspace's `asm-check` verifies that a kernel built over [`Native`] with
//! the `paravirt` feature produces the same machine code as one built without it.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub use paravirt_core::PvMmuOps;

/// The native (bare-metal) backend: no hypervisor, nothing to tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Native;

impl PvMmuOps for Native {}

impl paravirt_core::Inspect for Native {
    fn backend_name(&self) -> &'static str {
        "native"
    }
}

/// The native backend as a run-time ops table (Linux's boot-time default `paravirt_ops`).
pub const NATIVE_OPS: paravirt_core::ParavirtOps = paravirt_core::ParavirtOps::native();

#[cfg(test)]
mod tests {
    use super::*;
    use paravirt_core::{EntrySlot, Pfn};

    #[test]
    fn native_is_zero_sized() {
        assert_eq!(core::mem::size_of::<Native>(), 0);
    }

    #[test]
    fn native_entry_writes_are_plain_stores_in_both_widths() {
        let mut two = [0u32; 4];
        let mut pae = [0u32; 4];
        let s2 = EntrySlot { ptr: two.as_mut_ptr().wrapping_add(1), table: Pfn(7), index: 1, wide: false };
        let s3 = EntrySlot { ptr: pae.as_mut_ptr().wrapping_add(2), table: Pfn(7), index: 1, wide: true };
        // SAFETY: both slots point into live local arrays with room for their width.
        unsafe {
            Native.set_pte(s2, 0x1234_5067);
            Native.set_pmd(s3, 0x8000_0001_2345_6063);
        }
        assert_eq!(two, [0, 0x1234_5067, 0, 0]);
        assert_eq!(pae, [0, 0, 0x2345_6063, 0x8000_0001]);
        // SAFETY: as above.
        unsafe {
            Native.pte_clear(Pfn(0), 0, s2);
            Native.pmd_clear(s3);
        }
        assert_eq!(two, [0; 4]);
        assert_eq!(pae, [0; 4]);
    }

    #[test]
    fn native_cr3_and_large_pages_are_identity() {
        assert_eq!(Native.write_cr3(0x1000), 0x1000);
        assert_eq!(Native.read_cr3(0x2000), 0x2000);
        assert!(Native.allows_large_pages());
        assert!(NATIVE_OPS.allows_large_pages());
        assert_eq!(NATIVE_OPS.write_cr3(0x3000), 0x3000);
    }
}
