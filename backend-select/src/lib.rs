//! The paravirt backend of a kernel, picked with a cargo feature of this crate: the card's
//! "pick a backend via cargo features" for any kernel, not only the demo.
//!
//! | features | [`Backend`] | what [`new`] needs ([`Platform`]) |
//! | --- | --- | --- |
//! | none | `backend_native::Native` | nothing (`()`) |
//! | `vmi` | `backend_vmi::Vmi<M, P>` | the memory its shadow frames come from |
//! | `xen` | `backend_xen::Xen<'h, M, P>` | the `backend_xen::Hypervisor` the guest runs on |
//!
//! A kernel names one type and calls one constructor, whatever the build picked:
//!
//! ```toml
//! [dependencies]
//! i386-mm = { path = "../i386-mm" }
//! backend-select = { path = "../backend-select", features = ["vmi"] } # or "xen", or none
//! ```
//!
//! ```
//! use backend_select::{Backend, Platform, NAME};
//! use i386_mm::{InitOptions, KernelMm, TwoLevel};
//! use mm_testkit::{EmulatedRam, HostCpu};
//! use paravirt_core::Policy;
//!
//! let ram = EmulatedRam::sixteen_mib();
//! # #[cfg(not(any(feature = "vmi", feature = "xen")))]
//! let platform = (); // native: nothing; vmi: `&ram`; xen: `&hypervisor`
//! # #[cfg(feature = "vmi")]
//! # let platform = &ram;
//! # #[cfg(feature = "xen")]
//! # let hv = backend_xen::Hypervisor::<TwoLevel, _>::boot(&ram)?;
//! # #[cfg(feature = "xen")]
//! # let platform = &hv;
//! let backend: Backend<'_, TwoLevel, &EmulatedRam> = backend_select::new::<TwoLevel, &EmulatedRam>(platform, Policy::Panic)?;
//! let cpu = HostCpu::<TwoLevel>::new(&ram);
//! let k = KernelMm::<TwoLevel, _, _, _>::pagetable_init(&ram, &backend, &cpu, InitOptions::default())?;
//! k.activate_swapper();
//! let mm = k.create()?;
//! k.destroy(mm);
//! println!("running over the {NAME} backend");
//! # #[cfg(not(any(feature = "vmi", feature = "xen")))]
//! assert_eq!(NAME, "native");
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! Choosing at boot instead, in one image holding several backends, is what
//! [`ParavirtOps`](paravirt_core::ParavirtOps) is for (see the kernel demo's `boot-select`).
//! `vmi` and `xen` exclude each other.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(feature = "vmi", feature = "xen"))]
compile_error!("backend-select: pick one backend: features `vmi` and `xen` exclude each other");

use core::fmt;
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::Policy;

/// Why the backend could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error(&'static str);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME} backend: {}", self.0)
    }
}

impl core::error::Error for Error {}

#[cfg(not(any(feature = "vmi", feature = "xen")))]
mod chosen {
    use super::*;
    impl<'h, M: PagingMode, P: PhysMem> Pick<'h, M, P> for Build {
        type Backend = backend_native::Native;
        type Platform = ();
    }
    /// The backend's name.
    pub const NAME: &str = "native";

    /// Builds the native backend (`policy` has nothing to act on).
    ///
    /// # Errors
    /// None: the native backend always builds.
    pub fn new<'h, M: PagingMode, P: PhysMem>(
        platform: Platform<'h, M, P>,
        policy: Policy,
    ) -> Result<Backend<'h, M, P>, Error> {
        let ((), _) = (platform, policy);
        Ok(backend_native::Native)
    }
}

#[cfg(feature = "vmi")]
mod chosen {
    use super::*;
    impl<'h, M: PagingMode, P: PhysMem> Pick<'h, M, P> for Build {
        type Backend = backend_vmi::Vmi<M, P>;
        type Platform = P;
    }
    /// The backend's name.
    pub const NAME: &str = "vmi";

    /// Builds the VMI backend over `mem`, reserving its shadow frames.
    ///
    /// # Errors
    /// When `mem` cannot supply the shadow frames.
    pub fn new<'h, M: PagingMode, P: PhysMem>(
        mem: Platform<'h, M, P>,
        policy: Policy,
    ) -> Result<Backend<'h, M, P>, Error> {
        backend_vmi::Vmi::new(mem, policy).map_err(|_| Error("no memory for the shadow pool"))
    }
}

#[cfg(all(feature = "xen", not(feature = "vmi")))]
mod chosen {
    use super::*;
    impl<'h, M: PagingMode, P: PhysMem + 'h> Pick<'h, M, P> for Build {
        type Backend = backend_xen::Xen<'h, M, P>;
        type Platform = &'h backend_xen::Hypervisor<M, P>;
    }
    /// The backend's name.
    pub const NAME: &str = "xen";

    /// Builds the guest side of the domain `hv` runs, reserving its per-page flags.
    ///
    /// # Errors
    /// When the domain's memory cannot supply the per-page flags.
    pub fn new<'h, M: PagingMode, P: PhysMem>(
        hv: Platform<'h, M, P>,
        policy: Policy,
    ) -> Result<Backend<'h, M, P>, Error> {
        backend_xen::Xen::boot(hv, policy).map_err(|_| Error("no memory for the per-page flags"))
    }
}

/// What the build picked, for paging mode `M` over physical memory `P`.
pub trait Pick<'h, M: PagingMode, P: PhysMem> {
    /// The backend type.
    type Backend;
    /// What building it needs.
    type Platform;
}

/// The build's choice (implements [`Pick`] once, for the backend its features select).
#[derive(Debug)]
pub enum Build {}

/// The backend this build picked (see the table above), for paging mode `M` over physical
/// memory `P`, borrowing for `'h` what it runs on.
pub type Backend<'h, M, P> = <Build as Pick<'h, M, P>>::Backend;
/// What [`new`] needs to build it (see the table above).
pub type Platform<'h, M, P> = <Build as Pick<'h, M, P>>::Platform;

pub use chosen::{new, NAME};
