//! Pairing a hook implementation with a separate source of [`Inspect`].

use crate::hooks::for_each_hook;
use crate::ops::gen_forward;
use crate::{Inspect, PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps};
use core::fmt::{self, Write};
use core::ops::Deref;

/// Hooks from `hooks`, [`Inspect`] from `inspect`.
///
/// A [`ParavirtOps`](crate::ParavirtOps) table carries hooks only, so a kernel that picks
/// its backend at boot and reaches it through the table pairs the table with the chosen
/// backend's `Inspect` this way: `WithInspect { hooks: &OPS, inspect: chosen }`. Every hook
/// is forwarded unchanged (`#[inline(always)]`), so the dispatch stays the table's.
#[derive(Clone, Copy, Debug)]
pub struct WithInspect<B, I> {
    /// Where the hooks go.
    pub hooks: B,
    /// What answers [`Inspect`].
    pub inspect: I,
}

impl<B, I> Deref for WithInspect<B, I> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.hooks
    }
}

for_each_hook!(gen_forward impl [M: PagingMode, B: PvMmuOps<M>, I] for WithInspect<B, I> => |me| me.hooks);

impl<B, I: Inspect> Inspect for WithInspect<B, I> {
    fn backend_name(&self) -> &'static str {
        self.inspect.backend_name()
    }
    fn pages_held(&self) -> usize {
        self.inspect.pages_held()
    }
    fn violations(&self) -> usize {
        self.inspect.violations()
    }
    fn verify(&self, out: &mut dyn Write) -> bool {
        self.inspect.verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        self.inspect.page_tables_read_only()
    }
    fn emulated_writes(&self) -> u64 {
        self.inspect.emulated_writes()
    }
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        self.inspect.write_stats(out)
    }
}
