//! A single-CPU exclusive cell for kernel globals.
//!
//! The demo kernel runs on one CPU with interrupts off, so a global never
//! needs to wait for another holder; the only way to find it locked is
//! re-entrance (e.g. from an exception handler), which would deadlock a spin
//! lock. [`Lock::lock`] therefore panics with a clear message instead.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A global value with exclusive, checked access.
pub struct Lock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `held` (a second `lock()` panics
// instead of aliasing), so sharing the `Lock` only ever hands out one `&mut T`.
unsafe impl<T: Send> Sync for Lock<T> {}

impl<T> Lock<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self { held: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Takes exclusive access.
    ///
    /// # Panics
    /// If the lock is already held (re-entrant use).
    #[track_caller]
    pub fn lock(&self) -> LockGuard<'_, T> {
        if self.held.swap(true, Ordering::Acquire) {
            panic!("kernel Lock re-entered while held");
        }
        LockGuard { lock: self }
    }
}

/// Exclusive access to a [`Lock`]'s value; released on drop.
pub struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `held` is true, and only one guard
        // can exist at a time, so no `&mut T` aliases this reference.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, this guard is the unique accessor.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for LockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
    }
}
