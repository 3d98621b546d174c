//! A log of every native entry store, for tests that must see each intermediate value.

use paravirt_core::native::set_store_observer;
use std::sync::{Mutex, MutexGuard};

/// One native entry store: where, how wide, what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    /// Host address of the entry.
    pub addr: usize,
    /// An 8-byte (PAE) store rather than a 4-byte one.
    pub wide: bool,
    /// The value stored (the low 32 bits for a 4-byte store).
    pub value: u64,
}

static LOG: Mutex<Vec<Store>> = Mutex::new(Vec::new());
/// One log at a time: the observer is process-wide.
static OWNER: Mutex<()> = Mutex::new(());

fn observe(addr: usize, wide: bool, value: u64) {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).push(Store { addr, wide, value });
}

/// Records every native entry store (`paravirt_core::native::set` / `clear`) made by any
/// thread while it lives. Only one `StoreLog` exists at a time; a second waits.
pub struct StoreLog {
    _owner: MutexGuard<'static, ()>,
}

impl StoreLog {
    /// Starts recording.
    pub fn start() -> Self {
        let owner = OWNER.lock().unwrap_or_else(|e| e.into_inner());
        LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
        set_store_observer(Some(observe));
        StoreLog { _owner: owner }
    }

    /// The stores so far, oldest first.
    pub fn stores(&self) -> Vec<Store> {
        LOG.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every value the 8-byte entry at `addr` took, starting from `initial`, replaying the
    /// stores that touched any of its bytes (a 4-byte store changes one half).
    pub fn values_at(&self, addr: usize, initial: u64) -> Vec<u64> {
        let mut v = initial;
        let mut out = vec![v];
        for s in self.stores() {
            if s.wide && s.addr == addr {
                v = s.value;
            } else if !s.wide && s.addr == addr {
                v = (v & !0xFFFF_FFFF) | (s.value & 0xFFFF_FFFF);
            } else if !s.wide && s.addr == addr + 4 {
                v = (v & 0xFFFF_FFFF) | (s.value << 32);
            } else {
                continue;
            }
            out.push(v);
        }
        out
    }
}

impl Drop for StoreLog {
    fn drop(&mut self) {
        set_store_observer(None);
    }
}
