//! The native defaults as a value.

use crate::{Inspect, PagingMode, PvMmuOps};

/// A zero-sized backend that overrides no hook: every call is its native default (nothing for
/// the page-type hooks, one plain store for an entry). It is what the call-site layer falls
/// back to without the `paravirt` feature and what [`ParavirtOps::native`](crate::ParavirtOps::native)
/// dispatches to; `backend-native`'s `Native` is the same thing as a crate of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NativeOps;

impl<M: PagingMode> PvMmuOps<M> for NativeOps {}

impl Inspect for NativeOps {
    fn backend_name(&self) -> &'static str {
        "native"
    }
}
