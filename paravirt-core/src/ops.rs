//! The hook trait, generated from the one hook list in `hooks.rs`.

use crate::hooks::for_each_hook;
use crate::{PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot};

macro_rules! gen_trait {
    ([] $(
        $(#[$meta:meta])*
        $variant:ident => fn $name:ident(&$s:ident $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? $default:block
    )*) => {
        /// The paravirt MMU operations a backend may override, for paging mode `M` (Linux's
        /// `struct pv_mmu_ops`).
        ///
        /// Every method has an `#[inline(always)]` native default, so a zero-sized backend that
        /// overrides nothing compiles to exactly the bare-metal code. Backends keep their state
        /// behind `&self` (interior mutability): the hooks are called from under `pgd_lock` and
        /// from several CPUs, exactly as in Linux.
        ///
        /// The trait is generic over the paging mode, so a backend built for one mode cannot be
        /// handed to a kernel of the other. A backend for either mode implements it for every
        /// `M`; one whose state is laid out for one mode implements it for that mode only:
        ///
        /// ```compile_fail
        /// use paravirt_core::{Pae, PagingMode, PvMmuOps, TwoLevel};
        /// struct PaeOnly;
        /// impl PvMmuOps<Pae> for PaeOnly {}
        /// fn kernel<M: PagingMode, B: PvMmuOps<M>>(_: B) {}
        /// kernel::<TwoLevel, _>(PaeOnly); // error: PaeOnly does not serve two-level paging
        /// ```
        ///
        /// The first five methods are the seed's page-type hooks. They are *notifications*: the
        /// caller has already zeroed (or, for [`alloc_pd_clone`](Self::alloc_pd_clone), filled)
        /// the page, no entry points at an announced page before its `alloc_*` hook ran, and a
        /// released page reaches no free pool before its `release_*` hook ran. The entry writes
        /// take typed entries per level ([`Pte`], [`Pmd`], [`Pud`]) and their slots, so a write
        /// of the wrong level does not compile:
        ///
        /// ```compile_fail
        /// use paravirt_core::{Pmd, PteSlot, PvMmuOps, TwoLevel};
        /// fn wrong<B: PvMmuOps<TwoLevel>>(b: &B, slot: PteSlot, dir: Pmd) {
        ///     b.set_pte(slot, dir); // error: a pmd_t is not a pte_t
        /// }
        /// ```
        ///
        /// A backend that detects a protocol violation reports it according to its
        /// [`Policy`](crate::Policy) (panic like Linux's `BUG()`, or record and continue); the
        /// hooks themselves return nothing, as in Linux.
        ///
        /// # Example: a backend that counts page tables
        ///
        /// ```
        /// use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        /// use paravirt_core::{PagingMode, Pfn, PvMmuOps};
        ///
        /// #[derive(Default)]
        /// struct Counting(AtomicUsize);
        ///
        /// impl<M: PagingMode> PvMmuOps<M> for Counting {
        ///     fn alloc_pt(&self, _pfn: Pfn) {
        ///         self.0.fetch_add(1, Relaxed);
        ///     }
        ///     fn release_pt(&self, _pfn: Pfn) {
        ///         self.0.fetch_sub(1, Relaxed);
        ///     }
        ///     // Every other hook keeps its native default.
        /// }
        ///
        /// let b = Counting::default();
        /// PvMmuOps::<paravirt_core::TwoLevel>::alloc_pt(&b, Pfn::new(0x100));
        /// assert_eq!(b.0.load(Relaxed), 1);
        /// ```
        pub trait PvMmuOps<M: PagingMode> {
            $(
                $(#[$meta])*
                #[inline(always)]
                fn $name(&$s $(, $arg: $ty)*) $(-> $ret)? $default
            )*

            /// Whether the kernel may map memory with large (PSE) pages. Xen PV clears the PSE
            /// feature so that any single page-table page can be made read-only on its own.
            #[inline(always)]
            fn allows_large_pages(&self) -> bool {
                true
            }

            /// Whether the PAE kernel pmd (the pmd under PDPT slot 3) may be shared by every
            /// pgd (Linux's `paravirt_ops.shared_kernel_pmd`, `SHARED_KERNEL_PMD`). Xen
            /// answers `false`: it types the L2 in slot 3 of a PAE L3 specially
            /// (`PGT_pae_xen_l2`) and refuses to share it, so each PAE pgd gets its own copy
            /// of the kernel pmd, and PAE pgds go on `pgd_list` so kernel-range updates reach
            /// each copy. Without PAE the answer is not used.
            #[inline(always)]
            fn shared_kernel_pmd(&self) -> bool {
                true
            }
        }
    };
}

for_each_hook!(gen_trait);

/// Implements [`PvMmuOps`] for a wrapper by forwarding every hook to an expression of `me`
/// (the wrapper).
macro_rules! gen_forward {
    ([impl [$($g:tt)*] for $t:ty => |$me:ident| $to:expr] $(
        $(#[$meta:meta])*
        $variant:ident => fn $name:ident(&$s:ident $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? $default:block
    )*) => {
        impl<$($g)*> PvMmuOps<M> for $t {
            $(
                #[inline(always)]
                fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                    let $me = self;
                    $to.$name($($arg),*)
                }
            )*
            #[inline(always)]
            fn allows_large_pages(&self) -> bool {
                let $me = self;
                $to.allows_large_pages()
            }
            #[inline(always)]
            fn shared_kernel_pmd(&self) -> bool {
                let $me = self;
                $to.shared_kernel_pmd()
            }
        }
    };
}
pub(crate) use gen_forward;

for_each_hook!(gen_forward impl [M: PagingMode, T: PvMmuOps<M> + ?Sized] for &T => |me| (**me));
