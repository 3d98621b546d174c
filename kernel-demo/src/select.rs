//! The boot-time choice of backend (feature `boot-select`): the multiboot
//! command line names it with `backend=native|vmi|xen` (QEMU: `-append
//! backend=xen`); without a `backend=` word the kernel runs on bare metal
//! (native), as Linux does when no hypervisor is detected.
//!
//! This is only the choice; [`crate::paravirt_ops`] fills the ops table with
//! the chosen backend and runs the scenario through it.

/// A backend the image can run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Bare metal: the hooks do nothing, entry writes are plain stores.
    Native,
    /// VMware's VMI: shadow page tables kept through the hooks.
    Vmi,
    /// The Xen PV MMU model: pinned, read-only page tables.
    Xen,
}

impl BackendKind {
    /// Every backend in the image, in the order the command line lists them.
    pub const ALL: [BackendKind; 3] = [BackendKind::Native, BackendKind::Vmi, BackendKind::Xen];

    /// The name used on the command line, in the ops table and in the summary line.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Native => "native",
            BackendKind::Vmi => "vmi",
            BackendKind::Xen => "xen",
        }
    }

    /// One-line description.
    pub const fn description(self) -> &'static str {
        match self {
            BackendKind::Native => "bare metal: native operations behind the table",
            BackendKind::Vmi => "VMI shadow page tables",
            BackendKind::Xen => "Xen PV MMU model (pinned, read-only page tables)",
        }
    }

    /// The backend called `name`, if the image has one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The backend named by the last `backend=` word of `cmdline`, and whether
    /// the command line named one (`false`: the native default).
    ///
    /// # Panics
    /// If the command line names a backend the image does not have: a typo
    /// must not silently boot on bare metal.
    pub fn from_cmdline(cmdline: &str) -> (Self, bool) {
        let Some(name) = cmdline.split_ascii_whitespace().filter_map(|w| w.strip_prefix("backend=")).next_back() else {
            return (BackendKind::Native, false);
        };
        match Self::from_name(name) {
            Some(kind) => (kind, true),
            None => panic!(
                "boot-select: unknown backend `backend={name}` on the command line (expected native, vmi or xen)"
            ),
        }
    }
}
