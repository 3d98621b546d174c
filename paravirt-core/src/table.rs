//! A run-time ops table of function pointers, like Linux's `struct paravirt_ops`, generated
//! from the one hook list.

use crate::hooks::for_each_hook;
use crate::{NativeOps, PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps};
use core::marker::PhantomData;

type Ctx = *const ();

/// Marks the mode and backend a set of thunks is for.
type ThunkOf<M, B> = PhantomData<(fn() -> M, *const B)>;

/// The thunks that turn a table call back into a call of backend `B`.
struct Thunks<M, B>(ThunkOf<M, B>);

macro_rules! gen_table {
    ([] $(
        $(#[$meta:meta])*
        $variant:ident => fn $name:ident(&$s:ident $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? $default:block
    )*) => {
        /// One function pointer per hook.
        struct Fns {
            $($name: unsafe fn(Ctx $(, $ty)*) $(-> $ret)?,)*
            allows_large_pages: unsafe fn(Ctx) -> bool,
            shared_kernel_pmd: unsafe fn(Ctx) -> bool,
        }

        impl Clone for Fns {
            fn clone(&self) -> Self {
                Fns {
                    $($name: self.$name,)*
                    allows_large_pages: self.allows_large_pages,
                    shared_kernel_pmd: self.shared_kernel_pmd,
                }
            }
        }

        impl<M: PagingMode, B: PvMmuOps<M>> Thunks<M, B> {
            $(
                /// # Safety
                /// `ctx` must be the `&'static B` a table was built from.
                unsafe fn $name(ctx: Ctx $(, $arg: $ty)*) $(-> $ret)? {
                    // SAFETY: the caller passes the context stored beside this thunk.
                    let b = unsafe { &*(ctx as *const B) };
                    b.$name($($arg),*)
                }
            )*
            /// # Safety
            /// As above.
            unsafe fn allows_large_pages(ctx: Ctx) -> bool {
                // SAFETY: as above.
                let b = unsafe { &*(ctx as *const B) };
                b.allows_large_pages()
            }
            /// # Safety
            /// As above.
            unsafe fn shared_kernel_pmd(ctx: Ctx) -> bool {
                // SAFETY: as above.
                let b = unsafe { &*(ctx as *const B) };
                b.shared_kernel_pmd()
            }

            const FNS: Fns = Fns {
                $($name: Self::$name,)*
                allows_large_pages: Self::allows_large_pages,
                shared_kernel_pmd: Self::shared_kernel_pmd,
            };
        }

        impl<M: PagingMode> PvMmuOps<M> for ParavirtOps<M> {
            $(
                #[inline]
                fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                    // SAFETY: `fns` and `ctx` were built together by `from_backend`.
                    unsafe { (self.fns.$name)(self.ctx $(, $arg)*) }
                }
            )*
            #[inline]
            fn allows_large_pages(&self) -> bool {
                // SAFETY: as above.
                unsafe { (self.fns.allows_large_pages)(self.ctx) }
            }
            #[inline]
            fn shared_kernel_pmd(&self) -> bool {
                // SAFETY: as above.
                unsafe { (self.fns.shared_kernel_pmd)(self.ctx) }
            }
        }
    };
}

for_each_hook!(gen_table);

/// A backend chosen at run time: a context pointer and one function pointer per hook, for
/// paging mode `M`.
///
/// This is how Linux dispatches (`paravirt_ops.alloc_pt(pfn)`, filled in at boot by the VMI or
/// Xen setup code). It lets one kernel image pick its backend at boot, and it is the baseline
/// the benches compare static dispatch against. Build one with [`ParavirtOps::native`] or
/// [`ParavirtOps::from_backend`]; it implements [`PvMmuOps`] itself, so `i386-mm` takes it
/// like any other backend.
///
/// ```
/// use paravirt_core::{HookKind, ParavirtOps, Pfn, PvMmuOps, Recorder, NativeOps, TwoLevel};
/// static REC: Recorder<NativeOps, 16> = Recorder::new(NativeOps);
/// let ops: ParavirtOps<TwoLevel> = ParavirtOps::from_backend("recorded", &REC);
/// ops.alloc_pt(Pfn::new(0x123)); // one indirect call into REC
/// assert_eq!(REC.calls(HookKind::AllocPt), 1);
/// assert_eq!(ParavirtOps::<TwoLevel>::native().name(), "native");
/// ```
pub struct ParavirtOps<M: PagingMode> {
    ctx: Ctx,
    name: &'static str,
    fns: Fns,
    _mode: PhantomData<fn() -> M>,
}

impl<M: PagingMode> Clone for ParavirtOps<M> {
    fn clone(&self) -> Self {
        ParavirtOps { ctx: self.ctx, name: self.name, fns: self.fns.clone(), _mode: PhantomData }
    }
}

// SAFETY: `from_backend` only accepts `&'static B` with `B: Sync`, so the context may be used
// from any thread.
unsafe impl<M: PagingMode> Send for ParavirtOps<M> {}
// SAFETY: as above.
unsafe impl<M: PagingMode> Sync for ParavirtOps<M> {}

impl<M: PagingMode> ParavirtOps<M> {
    /// The bare-metal table (`native_nop` for the five hooks, plain stores for entries).
    pub const fn native() -> Self {
        Self::from_backend("native", &NativeOps)
    }

    /// A table whose every entry calls into `backend` (the boot-time choice of a hypervisor).
    pub const fn from_backend<B: PvMmuOps<M> + Sync + 'static>(name: &'static str, backend: &'static B) -> Self {
        ParavirtOps { ctx: backend as *const B as Ctx, name, fns: Thunks::<M, B>::FNS, _mode: PhantomData }
    }

    /// The name given when the table was built (`"native"` for [`ParavirtOps::native`]).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<M: PagingMode> Default for ParavirtOps<M> {
    fn default() -> Self {
        Self::native()
    }
}
