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

pub use paravirt_core::{Inspect, PvMmuOps};

/// The native (bare-metal) backend: no hypervisor, nothing to tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Native;

impl<M: paravirt_core::PagingMode> PvMmuOps<M> for Native {}

impl paravirt_core::Inspect for Native {
    fn backend_name(&self) -> &'static str {
        "native"
    }
}

/// The native backend as a run-time ops table (Linux's boot-time default `paravirt_ops`), for
/// paging mode `M`.
pub const fn native_ops<M: paravirt_core::PagingMode>() -> paravirt_core::ParavirtOps<M> {
    paravirt_core::ParavirtOps::native()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use paravirt_core::{Pae, Pfn, Pmd, PmdSlot, Pte, PteSlot, TwoLevel};

    #[test]
    fn native_is_zero_sized() {
        assert_eq!(core::mem::size_of::<Native>(), 0);
    }

    #[test]
    fn native_entry_writes_are_single_stores_in_both_widths() {
        let mut two = [0u32; 4];
        let mut pae = [0u64; 2];
        // SAFETY: both slots point into live local arrays with room and alignment for their
        // width, used only while the arrays live.
        let (s2, s3): (PteSlot, PmdSlot) = unsafe {
            (
                PteSlot::new(NonNull::from(&mut two[1]), Pfn::new(7), 1, false),
                PmdSlot::new(NonNull::from(&mut pae[1]).cast::<u32>(), Pfn::new(7), 1, true),
            )
        };
        PvMmuOps::<TwoLevel>::set_pte(&Native, s2, Pte::from_raw(0x1234_5067));
        PvMmuOps::<Pae>::set_pmd(&Native, s3, Pmd::from_raw(0x8000_0001_2345_6063));
        assert_eq!(s2.read(), Pte::from_raw(0x1234_5067));
        assert_eq!(s3.read(), Pmd::from_raw(0x8000_0001_2345_6063));
        PvMmuOps::<TwoLevel>::pte_clear(&Native, Pfn::new(0), 0, s2);
        PvMmuOps::<Pae>::pmd_clear(&Native, s3);
        assert_eq!(two, [0; 4]);
        assert_eq!(pae, [0; 2]);
    }

    #[test]
    fn native_cr3_and_large_pages_are_identity() {
        assert_eq!(PvMmuOps::<TwoLevel>::write_cr3(&Native, 0x1000), 0x1000);
        assert_eq!(PvMmuOps::<TwoLevel>::read_cr3(&Native, 0x2000), 0x2000);
        assert!(PvMmuOps::<Pae>::allows_large_pages(&Native));
        let ops = native_ops::<Pae>();
        assert!(ops.allows_large_pages());
        assert!(PvMmuOps::<Pae>::shared_kernel_pmd(&Native) && ops.shared_kernel_pmd());
        assert_eq!(ops.write_cr3(0x3000), 0x3000);
    }
}
