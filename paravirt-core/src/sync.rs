//! The lock of the page-table code and of the backends' state: `spin::Mutex` normally (Linux's
//! spinlocks), loom's mutex under `cfg(loom)` so the loom models explore every interleaving
//! around `pgd_lock` *and* inside the backends (a shadow being cloned, a tree being pinned).
//!
//! [`const_unless_loom!`](crate::const_unless_loom) writes a constructor that is `const` in
//! kernels (for `static`s) and plain under loom, whose mutex cannot be built in a constant.

cfg_if::cfg_if! {
    if #[cfg(loom)] {
        extern crate std;

        /// A mutual-exclusion lock (loom's, for model checking).
        #[derive(Debug)]
        pub struct Lock<T> {
            inner: loom::sync::Mutex<T>,
            held: loom::sync::atomic::AtomicBool,
        }

        /// Guard of a [`Lock`].
        pub struct LockGuard<'a, T> {
            guard: loom::sync::MutexGuard<'a, T>,
            held: &'a loom::sync::atomic::AtomicBool,
        }

        impl<T> Lock<T> {
            /// A new unlocked lock.
            pub fn new(v: T) -> Self {
                Lock { inner: loom::sync::Mutex::new(v), held: loom::sync::atomic::AtomicBool::new(false) }
            }
            /// Takes the lock.
            pub fn lock(&self) -> LockGuard<'_, T> {
                let guard = self.inner.lock().unwrap();
                self.held.store(true, loom::sync::atomic::Ordering::SeqCst);
                LockGuard { guard, held: &self.held }
            }
            /// Whether the lock is held (diagnostics only).
            pub fn is_locked(&self) -> bool {
                self.held.load(loom::sync::atomic::Ordering::SeqCst)
            }
            /// Takes the lock if it is free.
            pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
                let guard = self.inner.try_lock().ok()?;
                self.held.store(true, loom::sync::atomic::Ordering::SeqCst);
                Some(LockGuard { guard, held: &self.held })
            }
        }

        impl<T> Drop for LockGuard<'_, T> {
            fn drop(&mut self) {
                self.held.store(false, loom::sync::atomic::Ordering::SeqCst);
            }
        }

        impl<T> core::ops::Deref for LockGuard<'_, T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.guard
            }
        }

        impl<T> core::ops::DerefMut for LockGuard<'_, T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.guard
            }
        }
    } else {
        /// A mutual-exclusion lock (`spin::Mutex`, like Linux's spinlocks).
        #[derive(Debug)]
        pub struct Lock<T>(spin::Mutex<T>);

        /// Guard of a [`Lock`].
        pub type LockGuard<'a, T> = spin::MutexGuard<'a, T>;

        impl<T> Lock<T> {
            /// A new unlocked lock.
            pub const fn new(v: T) -> Self {
                Lock(spin::Mutex::new(v))
            }
            /// Takes the lock (spinning).
            #[inline]
            pub fn lock(&self) -> LockGuard<'_, T> {
                self.0.lock()
            }
            /// Whether the lock is held (diagnostics only).
            pub fn is_locked(&self) -> bool {
                self.0.is_locked()
            }
            /// Takes the lock if it is free.
            #[inline]
            pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
                self.0.try_lock()
            }
        }
    }
}

/// Defines a function that is `const fn` in normal builds and a plain `fn` under `cfg(loom)`
/// (loom's mutex has no `const` constructor). Used for constructors that build a
/// [`Lock`] and that kernels call in `static` initialisers.
///
/// ```
/// paravirt_core::const_unless_loom! {
///     /// Doubles `x`.
///     pub fn double(x: u32) -> u32 { x * 2 }
/// }
/// assert_eq!(double(2), 4);
/// ```
#[macro_export]
macro_rules! const_unless_loom {
    ($(#[$m:meta])* $vis:vis fn $name:ident $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$m])*
        $vis const fn $name $($rest)*
        #[cfg(loom)]
        $(#[$m])*
        $vis fn $name $($rest)*
    };
}
