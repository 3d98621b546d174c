//! The paravirt backend and the paging mode this kernel was built with,
//! selected by cargo features (`vmi`, `xen`, `pae`; see [`crate::config`]).
//!
//! The boot stub builds its tables in the same mode (see [`crate::boot`]), so
//! the CPU's paging mode (CR4.PAE) always matches what `i386-mm` builds.

use crate::phys::KernelPhys;

/// The paging mode: PAE (three-level) with the `pae` feature.
#[cfg(feature = "pae")]
pub type Mode = i386_mm::Pae;
/// The paging mode: two-level (non-PAE) without the `pae` feature.
#[cfg(not(feature = "pae"))]
pub type Mode = i386_mm::TwoLevel;

/// The backend: bare metal, every hook compiled out.
#[cfg(not(any(feature = "vmi", feature = "xen")))]
pub type Backend<'m> = backend_native::Native;

/// Creates the backend over the kernel's physical memory.
#[cfg(not(any(feature = "vmi", feature = "xen")))]
pub fn new(mem: &KernelPhys) -> Backend<'_> {
    let _ = mem;
    backend_native::Native
}
