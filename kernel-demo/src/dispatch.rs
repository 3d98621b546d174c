//! The backend `i386-mm` is handed in a `boot-select` kernel: every hook goes
//! through the run-time [`ParavirtOps`] table (an indirect call, exactly like
//! Linux's `paravirt_ops.alloc_pt(pfn)`), and [`Inspect`], which the table
//! does not carry, goes to the chosen backend through a small enum.
//!
//! `Inspect` is what the scenario asks a backend about itself (cross-check,
//! pages held, statistics); it is not a hook, so it is not in the table.
//!
//! This module only names the types; [`crate::paravirt_ops`] creates the
//! chosen backend and fills the table (it depends on this module, never the
//! other way round).

use core::fmt::{self, Write};

use backend_native::Native;
use backend_vmi::Vmi;
use backend_xen::{Hypervisor, Xen};
use paravirt_core::{Inspect, ParavirtOps, Recorder, WithInspect};

use crate::backend::Mode;
use crate::phys::KernelPhys;

/// Events kept in the native recorder's log: none, only the per-hook counts.
const HOOK_LOG: usize = 0;

/// The native backend as the image runs it: wrapped in a recorder that counts
/// the hook calls for the statistics (the backend itself keeps no state).
pub type NativeHooks = Recorder<Native, HOOK_LOG>;
/// The VMI backend over the kernel's RAM.
pub type VmiBackend = Vmi<Mode, KernelPhys>;
/// The Xen hypervisor model over the kernel's RAM (frame table, base pointer,
/// hypercalls).
pub type XenHypervisor = Hypervisor<Mode, KernelPhys>;
/// The guest side of the Xen PV MMU model, the backend: issues its hypercalls
/// to a [`XenHypervisor`].
pub type XenBackend = Xen<'static, Mode, KernelPhys>;

/// The backend chosen at boot, for [`Inspect`] only.
#[derive(Clone, Copy)]
pub enum Chosen {
    /// The native backend (wrapped in a recorder that counts the hook calls).
    Native(&'static NativeHooks),
    /// The VMI backend.
    Vmi(&'static VmiBackend),
    /// The Xen PV MMU model.
    Xen(&'static XenBackend),
}

/// Evaluates `$e` with `$b` bound to the chosen backend, whatever its type.
macro_rules! with_chosen {
    ($chosen:expr, $b:ident => $e:expr) => {
        match $chosen {
            Chosen::Native($b) => $e,
            Chosen::Vmi($b) => $e,
            Chosen::Xen($b) => $e,
        }
    };
}

impl Inspect for Chosen {
    fn backend_name(&self) -> &'static str {
        with_chosen!(self, b => b.backend_name())
    }
    fn pages_held(&self) -> usize {
        with_chosen!(self, b => b.pages_held())
    }
    fn violations(&self) -> usize {
        with_chosen!(self, b => b.violations())
    }
    fn verify(&self, out: &mut dyn Write) -> bool {
        with_chosen!(self, b => b.verify(out))
    }
    fn page_tables_read_only(&self) -> bool {
        with_chosen!(self, b => b.page_tables_read_only())
    }
    fn emulated_writes(&self) -> u64 {
        with_chosen!(self, b => b.emulated_writes())
    }
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        with_chosen!(self, b => b.write_stats(out))
    }
}

/// The ops table plus the chosen backend's [`Inspect`]: what the kernel's
/// `KernelMm` runs with in a `boot-select` image. Every hook is forwarded to
/// the table, so each one is an indirect call through a function pointer.
pub type TableBackend = WithInspect<&'static ParavirtOps<Mode>, Chosen>;
