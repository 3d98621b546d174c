//! A recording adapter: wraps any backend and logs every hook call, in order.
//!
//! [`Hook`] (one call with its arguments), [`HookKind`] (which hook) and the forwarding impl
//! are generated from the one hook list.

use crate::hooks::for_each_hook;
use crate::{EntryRef, Inspect, PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps};
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;

/// How a hook argument is kept in a [`Hook`]: slots as [`EntryRef`] (table and index, no
/// pointer), everything else as it is.
pub trait Recorded: Copy {
    /// The recorded form.
    type As: Copy + fmt::Debug + fmt::Display + PartialEq + Eq;
    /// Converts the argument.
    fn recorded(self) -> Self::As;
    /// Writes the recorded form in a trace line.
    ///
    /// # Errors
    /// What `f` returns.
    fn write(v: &Self::As, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{v}")
    }
}

macro_rules! recorded_as_itself {
    ($($t:ty),*) => {$(
        impl Recorded for $t {
            type As = $t;
            #[inline(always)]
            fn recorded(self) -> $t {
                self
            }
        }
    )*};
}
recorded_as_itself!(Pfn, Pte, Pmd, Pud);

/// Addresses, counts and CR3 values are kept as they are and shown in hex.
impl Recorded for u32 {
    type As = u32;
    #[inline(always)]
    fn recorded(self) -> u32 {
        self
    }
    fn write(v: &u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{v:#x}")
    }
}

impl<E: crate::Entry> Recorded for crate::Slot<E> {
    type As = EntryRef;
    #[inline(always)]
    fn recorded(self) -> EntryRef {
        self.id()
    }
}

macro_rules! gen_hook_types {
    ([] $(
        $(#[$meta:meta])*
        $variant:ident => fn $name:ident(&$s:ident $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? $default:block
    )*) => {
        /// Which hook: one variant per [`PvMmuOps`] hook, in the list's order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum HookKind {
            $(
                #[doc = concat!("[`PvMmuOps::", stringify!($name), "`].")]
                $variant,
            )*
        }

        impl HookKind {
            /// Every hook, in order.
            pub const ALL: [HookKind; [$(HookKind::$variant),*].len()] = [$(HookKind::$variant),*];
            /// Number of hooks.
            pub const COUNT: usize = Self::ALL.len();

            /// The Linux name of the hook (`"alloc_pt"`...).
            pub const fn name(self) -> &'static str {
                match self {
                    $(HookKind::$variant => stringify!($name),)*
                }
            }

            /// Whether this is one of the seed's five page-type hooks.
            pub const fn is_page_type_hook(self) -> bool {
                matches!(
                    self,
                    HookKind::AllocPt | HookKind::AllocPd | HookKind::AllocPdClone
                        | HookKind::ReleasePt | HookKind::ReleasePd
                )
            }
        }

        impl core::str::FromStr for HookKind {
            type Err = UnknownHook;
            fn from_str(s: &str) -> Result<Self, UnknownHook> {
                match s {
                    $(stringify!($name) => Ok(HookKind::$variant),)*
                    _ => Err(UnknownHook),
                }
            }
        }

        /// One hook call with its arguments (named as in [`PvMmuOps`]); slots are kept as
        /// [`EntryRef`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Hook {
            $(
                #[doc = concat!("A call of [`PvMmuOps::", stringify!($name), "`].")]
                #[allow(missing_docs)]
                $variant { $($arg: <$ty as Recorded>::As),* },
            )*
        }

        impl Hook {
            /// Which hook was called.
            pub const fn kind(&self) -> HookKind {
                match self {
                    $(Hook::$variant { .. } => HookKind::$variant,)*
                }
            }

            /// The Linux name of the hook.
            pub const fn name(&self) -> &'static str {
                self.kind().name()
            }
        }

        /// `name(arg, arg...)`.
        impl fmt::Display for Hook {
            #[allow(unused_variables, unused_assignments, unused_mut)]
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Hook::$variant { $($arg),* } => {
                        f.write_str(stringify!($name))?;
                        f.write_str("(")?;
                        let mut first = true;
                        $(
                            if !first {
                                f.write_str(", ")?;
                            }
                            first = false;
                            <$ty as Recorded>::write($arg, f)?;
                        )*
                        let _ = first;
                        f.write_str(")")
                    })*
                }
            }
        }

        impl<M: PagingMode, B: PvMmuOps<M>, const N: usize> PvMmuOps<M> for Recorder<B, N> {
            $(
                fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                    let hook = Hook::$variant { $($arg: Recorded::recorded($arg)),* };
                    self.record(hook);
                    let r = self.inner.$name($($arg),*);
                    if let Some(after) = self.after.get() {
                        after(&hook);
                    }
                    r
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

for_each_hook!(gen_hook_types);

/// A hook name that is not in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownHook;

impl fmt::Display for UnknownHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no such paravirt MMU hook")
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A recorded call: the hook and whether the context probe (normally "is `pgd_lock` held?")
/// answered yes when it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The call.
    pub hook: Hook,
    /// What the probe installed with [`Recorder::set_probe`] answered (false without one).
    pub probe: bool,
}

struct Log<const N: usize> {
    events: [Event; N],
    len: usize,
    dropped: usize,
}

/// Wraps a backend `B`, forwards every call to it, and records the call in a log of `N`
/// events (no heap; calls beyond `N` are counted in [`dropped`](Self::dropped)).
///
/// The call is recorded *before* it is forwarded, so the log keeps the order in which the
/// kernel made the calls even when the backend reacts to them.
///
/// ```
/// use paravirt_core::{EntryRef, Hook, HookKind, NativeOps, Pfn, PvMmuOps, Recorder, TwoLevel};
/// let rec: Recorder<NativeOps, 64> = Recorder::new(NativeOps);
/// PvMmuOps::<TwoLevel>::alloc_pt(&rec, Pfn::new(0x42));
/// PvMmuOps::<TwoLevel>::release_pt(&rec, Pfn::new(0x42));
/// let seq: Vec<Hook> = rec.with_events(|e| e.iter().map(|e| e.hook).collect());
/// assert_eq!(seq, [Hook::AllocPt { pfn: Pfn::new(0x42) }, Hook::ReleasePt { pfn: Pfn::new(0x42) }]);
/// assert_eq!(seq[0].to_string(), "alloc_pt(0x42)");
/// assert_eq!(rec.calls(HookKind::ReleasePt), 1);
/// ```
pub struct Recorder<B, const N: usize> {
    inner: B,
    log: Mutex<Log<N>>,
    probe: spin::Once<&'static (dyn Fn() -> bool + Sync)>,
    after: spin::Once<&'static (dyn Fn(&Hook) + Sync)>,
    enabled: core::sync::atomic::AtomicBool,
    counts: [AtomicU32; HookKind::COUNT],
}

const FILLER: Event = Event { hook: Hook::FlushTlbUser {}, probe: false };

impl<B, const N: usize> Recorder<B, N> {
    /// Wraps `inner`; recording starts enabled.
    pub const fn new(inner: B) -> Self {
        Recorder {
            inner,
            log: Mutex::new(Log { events: [FILLER; N], len: 0, dropped: 0 }),
            probe: spin::Once::new(),
            after: spin::Once::new(),
            enabled: core::sync::atomic::AtomicBool::new(true),
            counts: [const { AtomicU32::new(0) }; HookKind::COUNT],
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Installs a probe evaluated at every call and stored in [`Event::probe`]; `i386-mm`
    /// tests use "is `pgd_lock` held?". Only the first probe installed is kept.
    pub fn set_probe(&self, probe: &'static (dyn Fn() -> bool + Sync)) {
        self.probe.call_once(|| probe);
    }

    /// Installs a callback run right after each call has returned from the wrapped backend,
    /// with the call: a test stands in for another CPU acting at exactly that moment (after
    /// a `release_pd`, say). Only the first callback installed is kept.
    pub fn set_after(&self, after: &'static (dyn Fn(&Hook) + Sync)) {
        self.after.call_once(|| after);
    }

    /// Turns recording on or off (calls are always forwarded).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Forgets every recorded event and count.
    pub fn clear(&self) {
        let mut log = self.log.lock();
        log.len = 0;
        log.dropped = 0;
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Calls of hook `kind` since the last [`clear`](Self::clear), counted even when the log
    /// is full.
    pub fn calls(&self, kind: HookKind) -> u32 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Number of events recorded.
    pub fn len(&self) -> usize {
        self.log.lock().len
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of calls that did not fit in the log.
    pub fn dropped(&self) -> usize {
        self.log.lock().dropped
    }

    /// Runs `f` on the recorded events, oldest first.
    pub fn with_events<R>(&self, f: impl FnOnce(&[Event]) -> R) -> R {
        let log = self.log.lock();
        f(&log.events[..log.len])
    }

    /// Number of recorded events whose hook satisfies `pred`.
    pub fn count(&self, pred: impl Fn(&Hook) -> bool) -> usize {
        self.with_events(|ev| ev.iter().filter(|e| pred(&e.hook)).count())
    }

    fn record(&self, hook: Hook) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        self.counts[hook.kind() as usize].fetch_add(1, Ordering::Relaxed);
        let probe = self.probe.get().is_some_and(|p| p());
        let mut log = self.log.lock();
        if log.len < N {
            let i = log.len;
            log.events[i] = Event { hook, probe };
            log.len += 1;
        } else {
            log.dropped += 1;
        }
    }
}

impl<B: Inspect, const N: usize> Inspect for Recorder<B, N> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn pages_held(&self) -> usize {
        self.inner.pages_held()
    }
    fn violations(&self) -> usize {
        self.inner.violations()
    }
    fn verify(&self, out: &mut dyn core::fmt::Write) -> bool {
        self.inner.verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        self.inner.page_tables_read_only()
    }
    fn emulated_writes(&self) -> u64 {
        self.inner.emulated_writes()
    }
    /// Writes the calls per hook (non-zero ones), then the backend's own statistics.
    fn write_stats(&self, out: &mut dyn core::fmt::Write) -> fmt::Result {
        write!(out, "hook calls:")?;
        for kind in HookKind::ALL {
            let n = self.calls(kind);
            if n != 0 {
                write!(out, " {kind}={n}")?;
            }
        }
        writeln!(out)?;
        self.inner.write_stats(out)
    }
}
