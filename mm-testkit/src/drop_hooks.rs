//! A kernel that forgets hooks: wraps any backend and drops chosen hook calls.

use paravirt_core::{Gate, Gated, Hook, HookKind, Pfn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Which calls of a hook to drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Every call.
    Every,
    /// The `n`th call while armed (1 = the first).
    Nth(u32),
    /// Every call about frame `pfn` (its first `Pfn` argument).
    Pfn(Pfn),
}

/// A [`Gate`] that drops the calls its rules name, counting calls per hook while armed.
///
/// ```
/// use mm_testkit::{dropping, DropHooks, Which};
/// use paravirt_core::{HookKind, NativeOps, Pfn, PvMmuOps, Recorder, TwoLevel};
///
/// let b = dropping(Recorder::<NativeOps, 8>::new(NativeOps), DropHooks::new().with(HookKind::AllocPt, Which::Nth(2)));
/// for p in 1..=3 {
///     PvMmuOps::<TwoLevel>::alloc_pt(&b, Pfn::new(p));
/// }
/// assert_eq!(b.inner.calls(HookKind::AllocPt), 2);
/// assert_eq!(b.gate.dropped_pfns(), vec![Pfn::new(2)]);
/// ```
#[derive(Debug)]
pub struct DropHooks {
    rules: Vec<(HookKind, Which)>,
    armed: AtomicBool,
    seen: Mutex<[u32; HookKind::COUNT]>,
    dropped: Mutex<Vec<Hook>>,
}

impl Default for DropHooks {
    fn default() -> Self {
        Self::new()
    }
}

impl DropHooks {
    /// No rules yet; armed.
    pub fn new() -> Self {
        DropHooks {
            rules: Vec::new(),
            armed: AtomicBool::new(true),
            seen: Mutex::new([0; HookKind::COUNT]),
            dropped: Mutex::new(Vec::new()),
        }
    }

    /// Adds a rule: drop the calls of `kind` that `which` names.
    #[must_use]
    pub fn with(mut self, kind: HookKind, which: Which) -> Self {
        self.rules.push((kind, which));
        self
    }

    /// Starts (`true`) or stops dropping. Calls are counted for [`Which::Nth`] only while
    /// armed, so a test can aim at the calls of one operation.
    pub fn arm(&self, on: bool) {
        self.armed.store(on, Ordering::SeqCst);
    }

    /// The calls dropped so far, oldest first.
    ///
    /// # Panics
    /// If another thread panicked while holding the log's lock.
    pub fn dropped(&self) -> Vec<Hook> {
        self.dropped.lock().unwrap().clone()
    }

    /// The frames named by the calls dropped so far (their first `Pfn` argument).
    pub fn dropped_pfns(&self) -> Vec<Pfn> {
        self.dropped().iter().filter_map(first_pfn).collect()
    }
}

/// The frame a call is about: the first `Pfn` argument of a page-type hook, the `mm` of an
/// address-space hook.
pub fn first_pfn(hook: &Hook) -> Option<Pfn> {
    match *hook {
        Hook::AllocPt { pfn }
        | Hook::AllocPd { pfn }
        | Hook::AllocPdClone { pfn, .. }
        | Hook::ReleasePt { pfn }
        | Hook::ReleasePd { pfn } => Some(pfn),
        Hook::ExitMmap { mm } | Hook::SetPteAt { mm, .. } | Hook::PteClear { mm, .. } => Some(mm),
        Hook::SetPte { slot, .. } | Hook::SetPteAtomic { slot, .. } | Hook::SetPmd { slot, .. } => Some(slot.table),
        Hook::SetPud { slot, .. } | Hook::PmdClear { slot } => Some(slot.table),
        Hook::SetPtePresent { mm, .. } => Some(mm),
        _ => None,
    }
}

impl Gate for DropHooks {
    fn pass(&self, hook: &Hook) -> bool {
        if !self.armed.load(Ordering::SeqCst) {
            return true;
        }
        let kind = hook.kind();
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen[kind as usize] += 1;
            seen[kind as usize]
        };
        let drop = self.rules.iter().any(|&(k, which)| {
            k == kind
                && match which {
                    Which::Every => true,
                    Which::Nth(want) => n == want,
                    Which::Pfn(p) => first_pfn(hook) == Some(p),
                }
        });
        if drop {
            self.dropped.lock().unwrap_or_else(|e| e.into_inner()).push(*hook);
        }
        !drop
    }
}

/// A backend that forgets the hook calls `rules` names.
pub type Dropping<B> = Gated<B, DropHooks>;

/// Wraps `inner` so the calls `rules` names never reach it.
pub fn dropping<B>(inner: B, rules: DropHooks) -> Dropping<B> {
    Gated { inner, gate: rules }
}
