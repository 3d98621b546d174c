//! A gating adapter: wraps any backend and lets a [`Gate`] decide, call by call, whether a
//! hook call reaches it. Generated from the one hook list, like the [`Recorder`](crate::Recorder).
//!
//! Tests use it to make the kernel "forget" a hook (the Nth `alloc_pt`, every `release_pd`...)
//! and see whether the backend notices.

use crate::hooks::for_each_hook;
use crate::record::Recorded;
use crate::{Hook, Inspect, PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps};
use core::fmt;

/// Decides whether a hook call goes through.
pub trait Gate {
    /// Called before each hook call, with the call; `false` drops it.
    fn pass(&self, hook: &Hook) -> bool;
}

impl<G: Gate + ?Sized> Gate for &G {
    fn pass(&self, hook: &Hook) -> bool {
        (**self).pass(hook)
    }
}

/// Backend `inner` behind gate `gate`: every hook call is shown to the gate first and
/// forwarded only if it passes.
///
/// A dropped call does nothing at all: a dropped entry write stores nothing, a dropped
/// page-type hook tells the backend nothing. A dropped hook that returns a value (`write_cr3`,
/// `read_cr3`) returns its native default's value (the CR3 value unchanged). Large-page
/// support and [`Inspect`] come from `inner`.
///
/// ```
/// use paravirt_core::{Gate, Gated, Hook, HookKind, Pfn, PvMmuOps, Recorder, NativeOps, TwoLevel};
///
/// /// Drops every `release_pt`.
/// struct NoReleasePt;
/// impl Gate for NoReleasePt {
///     fn pass(&self, hook: &Hook) -> bool {
///         hook.kind() != HookKind::ReleasePt
///     }
/// }
///
/// let gated = Gated { inner: Recorder::<NativeOps, 8>::new(NativeOps), gate: NoReleasePt };
/// PvMmuOps::<TwoLevel>::alloc_pt(&gated, Pfn::new(7));
/// PvMmuOps::<TwoLevel>::release_pt(&gated, Pfn::new(7));
/// assert_eq!(gated.inner.calls(HookKind::AllocPt), 1);
/// assert_eq!(gated.inner.calls(HookKind::ReleasePt), 0, "dropped before the backend");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Gated<B, G> {
    /// The backend calls go to.
    pub inner: B,
    /// What decides.
    pub gate: G,
}

/// What a dropped hook returns: nothing, or its native default's value.
macro_rules! dropped {
    ($default:block) => {
        ()
    };
    ($default:block $ret:ty) => {
        $default
    };
}

macro_rules! gen_gate {
    ([] $(
        $(#[$meta:meta])*
        $variant:ident => fn $name:ident(&$s:ident $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? $default:block
    )*) => {
        impl<M: PagingMode, B: PvMmuOps<M>, G: Gate> PvMmuOps<M> for Gated<B, G> {
            $(
                #[allow(clippy::unused_unit)]
                fn $name(&$s $(, $arg: $ty)*) $(-> $ret)? {
                    let hook = Hook::$variant { $($arg: Recorded::recorded($arg)),* };
                    if $s.gate.pass(&hook) {
                        return $s.inner.$name($($arg),*);
                    }
                    $(let _ = $arg;)*
                    dropped!($default $($ret)?)
                }
            )*
            fn allows_large_pages(&self) -> bool {
                self.inner.allows_large_pages()
            }
            fn shared_kernel_pmd(&self) -> bool {
                self.inner.shared_kernel_pmd()
            }
        }
    };
}

for_each_hook!(gen_gate);

impl<B: Inspect, G> Inspect for Gated<B, G> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn pages_held(&self) -> usize {
        self.inner.pages_held()
    }
    fn violations(&self) -> usize {
        self.inner.violations()
    }
    fn verify(&self, out: &mut dyn fmt::Write) -> bool {
        self.inner.verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        self.inner.page_tables_read_only()
    }
    fn write_stats(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.inner.write_stats(out)
    }
}
