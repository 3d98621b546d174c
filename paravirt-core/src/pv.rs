//! The call-site layer: what `i386-mm` writes at every hook point.
//!
//! [`Pv`] wraps a backend for paging mode `M`. With the `paravirt` feature (the default) each
//! method forwards to the backend, statically dispatched. Without it, each method *is* the
//! native default, written in place from the hook list: the page-type hooks are empty and each
//! entry write is a plain store, exactly like Linux's stub block in `asm-i386/pgalloc.h`:
//!
//! ```c
//! #define paravirt_alloc_pt(pfn) do { } while (0)
//! ```
//!
//! Both versions are `#[inline(always)]`, so with the native backend the generated code of the
//! two builds is identical (the workspace's `asm-check` compares it).

use crate::hooks::for_each_hook;
use crate::{PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps};
use core::marker::PhantomData;

/// Whether hook calls reach the backend in this build (Linux's `CONFIG_PARAVIRT`).
pub const ENABLED: bool = cfg!(feature = "paravirt");

/// The hooks of backend `B` as seen from a call site of a mode-`M` kernel.
///
/// ```
/// use paravirt_core::{pv::Pv, Pfn, Recorder, TwoLevel, Hook};
/// let rec: Recorder<paravirt_core::NativeOps, 8> = Recorder::new(paravirt_core::NativeOps);
/// Pv::<TwoLevel, _>::new(&rec).alloc_pt(Pfn::new(0x42));
/// assert_eq!(rec.calls(paravirt_core::HookKind::AllocPt), 1);
/// ```
pub struct Pv<'a, M: PagingMode, B: ?Sized> {
    backend: &'a B,
    _mode: PhantomData<fn() -> M>,
}

impl<'a, M: PagingMode, B: PvMmuOps<M> + ?Sized> Pv<'a, M, B> {
    /// The call sites of `backend`.
    #[inline(always)]
    pub fn new(backend: &'a B) -> Self {
        Pv { backend, _mode: PhantomData }
    }
}

#[cfg(not(feature = "paravirt"))]
impl<M: PagingMode, B: ?Sized> Pv<'_, M, B> {
    /// The mode's native hooks, reached through the backend's address (the hooks ignore their
    /// receiver), so the call sites are built the same way as with `paravirt`.
    #[inline(always)]
    fn native(&self) -> &M::NativeOps {
        const { assert!(core::mem::size_of::<M::NativeOps>() == 0 && core::mem::align_of::<M::NativeOps>() == 1) };
        // SAFETY: `M::NativeOps` is zero-sized with alignment 1 (checked above), so any non-null
        // pointer, such as the backend's address, is a valid reference to it.
        unsafe { &*(self.backend as *const B as *const u8 as *const M::NativeOps) }
    }
}

macro_rules! gen_pv {
    ([] $(
        $(#[$meta:meta])*
        $variant:ident => fn $name:ident(&$s:ident $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? $default:block
    )*) => {
        impl<M: PagingMode, B: PvMmuOps<M> + ?Sized> Pv<'_, M, B> {
            $(
                #[doc = concat!("The `", stringify!($name), "` call site: [`PvMmuOps::", stringify!($name),
                    "`] with `paravirt`, its native default without.")]
                #[inline(always)]
                pub fn $name(&$s $(, $arg: $ty)*) $(-> $ret)? {
                    #[cfg(feature = "paravirt")]
                    {
                        $s.backend.$name($($arg),*)
                    }
                    #[cfg(not(feature = "paravirt"))]
                    {
                        <M::NativeOps as PvMmuOps<M>>::$name($s.native() $(, $arg)*)
                    }
                }
            )*

            /// Whether large (PSE) pages may be used for the kernel's linear map: the backend's
            /// answer with `paravirt`, always `true` without.
            #[inline(always)]
            pub fn allows_large_pages(&self) -> bool {
                #[cfg(feature = "paravirt")]
                {
                    self.backend.allows_large_pages()
                }
                #[cfg(not(feature = "paravirt"))]
                {
                    true
                }
            }

            /// Whether the PAE kernel pmd is shared by every pgd: the backend's answer with
            /// `paravirt`, always `true` (bare metal) without.
            #[inline(always)]
            pub fn shared_kernel_pmd(&self) -> bool {
                #[cfg(feature = "paravirt")]
                {
                    self.backend.shared_kernel_pmd()
                }
                #[cfg(not(feature = "paravirt"))]
                {
                    true
                }
            }
        }
    };
}

for_each_hook!(gen_pv);
