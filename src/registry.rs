// SPDX-License-Identifier: GPL-2.0

//! The two shapes module state takes: an object the redirects and probes
//! reach through a global while it is published ([`Global`]), and a set of
//! entries by index with a count beside it ([`CountedXArray`]).

use crate::counters::Counter;
use core::sync::atomic::{AtomicI64, AtomicPtr, Ordering};
use kernel::{
    prelude::*,
    xarray::{AllocKind, XArray},
};

/// State owned by the module instance that redirected calls and probes
/// reach without an argument: published at init, unpublished at unload.
///
/// # Invariants
///
/// A non-null pointer in it points at a `T` that stays valid until
/// [`Global::unpublish`] and until every caller of [`Global::get`] that
/// could have seen it has returned (see [`Global::publish`]).
pub(crate) struct Global<T>(AtomicPtr<T>);

impl<T: Sync> Global<T> {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Publishes `value`.
    ///
    /// # Safety
    ///
    /// `value` stays valid until [`Global::unpublish`] and until every
    /// caller that could have seen it returned (the module's teardown
    /// waits for that).
    pub(crate) unsafe fn publish(&self, value: &T) {
        self.0.store(core::ptr::from_ref(value).cast_mut(), Ordering::Release);
    }

    pub(crate) fn unpublish(&self) {
        self.0.store(core::ptr::null_mut(), Ordering::Release);
    }

    /// The published value, for the duration of the caller (a redirected
    /// call or a probe, which teardown waits for).
    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: by the type invariant, valid while the caller runs.
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

/// Boxed entries by index, counted: while there are none a lookup costs
/// one load (plain splices, every fork and exit pass here), and a debugfs
/// counter follows the number of entries. The count is relaxed: whoever
/// looks up an entry stored it itself (or its parent did, before it ran).
/// It is a core atomic, as [`Global`]'s pointer is: a `kernel::sync::atomic`
/// load is an out-of-line C helper call on kernels built without inlined
/// Rust helpers (GCC builds, Debian's), and every splice in the system
/// asks two of these counts.
#[pin_data]
pub(crate) struct CountedXArray<T> {
    #[pin]
    xa: XArray<KBox<T>>,
    len: AtomicI64,
    counter: &'static Counter,
}

impl<T> CountedXArray<T> {
    pub(crate) fn new(counter: &'static Counter) -> impl PinInit<Self> {
        pin_init!(Self {
            xa <- XArray::new(AllocKind::Alloc),
            len: AtomicI64::new(0),
            counter,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    fn counted(&self, n: i64) {
        self.len.fetch_add(n, Ordering::Relaxed);
        self.counter.add(n);
    }

    /// Stores `value` at `index`; returns the entry it replaced.
    pub(crate) fn store(&self, index: usize, value: KBox<T>, flags: kernel::alloc::Flags) -> Result<Option<KBox<T>>> {
        let old = self.xa.lock().store(index, value, flags).map_err(|e| e.error)?;
        if old.is_none() {
            self.counted(1);
        }
        Ok(old)
    }

    /// Stores `value` at `index` unless an entry is there already (then
    /// `value` is dropped, after the lock); whether it stored it.
    pub(crate) fn insert(&self, index: usize, value: KBox<T>, flags: kernel::alloc::Flags) -> Result<bool> {
        let mut guard = self.xa.lock();
        if guard.get(index).is_some() {
            return Ok(false);
        }
        guard.store(index, value, flags).map_err(|e| e.error)?;
        drop(guard);
        self.counted(1);
        Ok(true)
    }

    /// Takes the entry at `index` out.
    pub(crate) fn remove(&self, index: usize) -> Option<KBox<T>> {
        if self.is_empty() {
            return None;
        }
        let gone = self.xa.lock().remove(index);
        if gone.is_some() {
            self.counted(-1);
        }
        gone
    }

    /// `f` of the entry at `index`, under the lock.
    pub(crate) fn with<R>(&self, index: usize, f: impl FnOnce(&T) -> R) -> Option<R> {
        if self.is_empty() {
            return None;
        }
        self.xa.lock().get(index).map(f)
    }
}
