//! Build configuration chosen by cargo features: the paravirt backend (or, with
//! `boot-select`, that the command line picks it at boot) and the paging mode.

#[cfg(all(feature = "vmi", feature = "xen"))]
compile_error!("features `vmi` and `xen` each select a backend: enable at most one of them");

#[cfg(all(feature = "boot-select", any(feature = "vmi", feature = "xen")))]
compile_error!(
    "feature `boot-select` puts every backend in the image and picks one at boot \
     (`backend=native|vmi|xen` on the command line); it cannot be combined with `vmi` or \
     `xen`, which pick the backend at build time (`boot-select,pae` is fine)"
);

/// Name of the page-table hook backend this kernel was built with
/// (`boot-select`: chosen at boot from the command line, see the `select` module).
pub const BACKEND: &str = if cfg!(feature = "boot-select") {
    "boot-select"
} else if cfg!(feature = "vmi") {
    "vmi"
} else if cfg!(feature = "xen") {
    "xen"
} else {
    "native"
};

/// One-line description of the backend.
pub const BACKEND_DESCRIPTION: &str = if cfg!(feature = "boot-select") {
    "native, vmi and xen in one image; `backend=` on the command line picks one at boot"
} else if cfg!(feature = "vmi") {
    "VMI shadow page tables"
} else if cfg!(feature = "xen") {
    "Xen PV MMU model (pinned, read-only page tables)"
} else {
    "bare metal: the native hooks, counted by a recorder"
};

/// Whether the kernel uses PAE (three-level) paging.
pub const PAE: bool = cfg!(feature = "pae");

/// Name of the paging mode this kernel was built with.
pub const PAGING_MODE: &str =
    if PAE { "PAE (3-level, 2 MiB boot pages)" } else { "non-PAE (2-level, 4 MiB PSE boot pages)" };
