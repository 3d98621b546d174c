//! What a checking backend does when the kernel breaks the hook protocol or the hypervisor
//! refuses an operation: one [`Policy`], one [`Violation`] shape and one log for every backend.

use crate::{HookKind, Pfn};
use core::fmt;
use spin::Mutex;

/// The reaction to a violation caught inside a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Panic with the backend, the hook and the rule broken, like Linux's `BUG()` (VMI's
    /// debug checks, a failed Xen hypercall from Linux's Xen hooks).
    #[default]
    Panic,
    /// Record the violation and continue; the refused operation is not carried out.
    Record,
}

/// Who would object to the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The real hypervisor refuses it (a Xen hypercall error, a VMI `BUG_ON`).
    Hypervisor,
    /// A checker rule of this project: the hypervisor tolerates it, but the kernel broke the
    /// hook protocol (listed in each backend's README).
    Checker,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Hypervisor => "hypervisor",
            Origin::Checker => "checker",
        })
    }
}

/// A backend's rule: names itself, the frame it concerns and who enforces it.
pub trait Rule: Copy + fmt::Debug + fmt::Display + Send + 'static {
    /// Short stable name of the rule (`"release-untyped"`...).
    fn name(&self) -> &'static str;
    /// The frame the violation concerns (the table for an entry write).
    fn pfn(&self) -> Pfn;
    /// Whether the real hypervisor refuses this, or only the project's checker.
    fn origin(&self) -> Origin;
}

/// One violation: the hook in which it was caught and the rule broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation<R> {
    /// The hook that was running.
    pub hook: HookKind,
    /// The rule broken.
    pub rule: R,
}

impl<R: Rule> fmt::Display for Violation<R> {
    /// `hook: rule (pfn, origin rule name)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{} rule {}]", self.hook, self.rule, self.rule.origin(), self.rule.name())
    }
}

struct Log<R, const N: usize> {
    entries: [Option<Violation<R>>; N],
    total: usize,
    checker: usize,
}

/// The violations a backend caught: the first `N` in full, all of them counted, reported under
/// one [`Policy`]. Panic messages read `backend: hook: rule [origin rule name]`.
pub struct Violations<R, const N: usize = 16> {
    backend: &'static str,
    policy: Policy,
    log: Mutex<Log<R, N>>,
}

impl<R: Rule, const N: usize> Violations<R, N> {
    /// An empty log for the backend named `backend` (`"vmi"`, `"xen"`).
    pub const fn new(backend: &'static str, policy: Policy) -> Self {
        Violations { backend, policy, log: Mutex::new(Log { entries: [None; N], total: 0, checker: 0 }) }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Reports `rule`, broken inside `hook`.
    ///
    /// # Panics
    /// Under [`Policy::Panic`], always, with `backend: hook: rule`.
    pub fn report(&self, hook: HookKind, rule: R) {
        let v = Violation { hook, rule };
        if self.policy == Policy::Panic {
            panic!("{}: {}", self.backend, v);
        }
        let mut log = self.log.lock();
        let i = log.total;
        if i < N {
            log.entries[i] = Some(v);
        }
        log.total += 1;
        if rule.origin() == Origin::Checker {
            log.checker += 1;
        }
    }

    /// Violations reported so far (including those not kept in full).
    pub fn total(&self) -> usize {
        self.log.lock().total
    }

    /// Of [`total`](Self::total), those that broke a checker rule rather than a hypervisor rule.
    pub fn checker_total(&self) -> usize {
        self.log.lock().checker
    }

    /// The `i`th violation, if it was kept.
    pub fn get(&self, i: usize) -> Option<Violation<R>> {
        self.log.lock().entries.get(i).copied().flatten()
    }

    /// The violations kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Violation<R>> + '_ {
        (0..N).map_while(|i| self.get(i))
    }

    /// Forgets every violation.
    pub fn clear(&self) {
        let mut log = self.log.lock();
        log.entries = [None; N];
        log.total = 0;
        log.checker = 0;
    }

    /// Writes every kept violation, one a line, prefixed with the backend's name.
    ///
    /// # Errors
    /// What `out` returns.
    pub fn write_all(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        for v in self.iter() {
            writeln!(out, "{}: {}", self.backend, v)?;
        }
        Ok(())
    }
}
