// SPDX-License-Identifier: GPL-2.0

//! The held folios of one file, by page index.
//!
//! Entries are folios, kept in blocks of 64 consecutive page indices that an XArray finds by index / 64
//! (`rust/hold_index.c`): a splice's new holds are pointer stores into a
//! few blocks, not an XArray store per page. The index remembers the block
//! it found last: a file served again finds its next splice's folios there
//! without an XArray load. The registry's bucket lock serializes every
//! user (of the blocks and that memory alike); the XArray's own lock,
//! taken by the C side for changes, keeps each call sound on its own.
//!
//! An entry owns no reference: it outlives its folio where nobody ends it
//! (see `Documentation/stable-splice.rst`, "A record that owns nothing"),
//! so it is only ever compared with a folio that somebody else references,
//! never dereferenced.

use crate::{
    bindings as b,
    folio::{IndexStore, Mapping, RawFolio},
};
use kernel::{prelude::*, types::Opaque};

/// Page index -> held folio.
///
/// # Invariants
///
/// Every entry is a folio that was stored at its own first page index; it
/// owns no reference and is never dereferenced (the folio may be gone).
/// Only used under the registry's bucket lock of its file, or by its owner
/// alone (drop, KUnit).
#[pin_data(PinnedDrop)]
pub(crate) struct HoldIndex {
    #[pin]
    idx: Opaque<b::ss_hold_index>,
}

// SAFETY: the XArray and its blocks are plain memory that any task may use
// and free; the entries are plain addresses.
// Not `Sync`: the blocks have no locking of their own, so one index is used
// by one task at a time (under its bucket lock).
unsafe impl Send for HoldIndex {}

impl HoldIndex {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `idx` is valid and unused while the closure runs.
            idx <- Opaque::ffi_init(|idx| unsafe { b::ss_hold_index_init(idx) }),
        })
    }

    /// The index for C that stores into it under the bucket lock
    /// (`ss_pipe_hold_new`, rust/hold_take.c).
    pub(crate) fn raw(&self) -> *mut b::ss_hold_index {
        self.idx.get()
    }

    /// The folio held at `index`: only compared, never dereferenced
    /// beyond the caller's own reference.
    pub(crate) fn get(&self, index: usize) -> *mut RawFolio {
        // SAFETY: initialised XArray (type invariant).
        unsafe { b::ss_hold_index_load(self.raw(), index as _) }
    }

    /// Whether `folio` is held at its own index (one C call, where its
    /// index and [`HoldIndex::get`] would be two).
    ///
    /// # Safety
    ///
    /// The caller references `folio`.
    pub(crate) unsafe fn holds(&self, folio: *mut RawFolio) -> bool {
        // SAFETY: initialised index (type invariant); `folio` is referenced
        // (caller), so its index can be read.
        unsafe { b::ss_hold_index_holds(self.raw(), folio) }
    }

    /// Stores `folio` at `index` without sleeping; returns the entry it
    /// replaced (null if none), or `ENOMEM`.
    #[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
    pub(crate) fn insert(&self, index: usize, folio: *mut RawFolio) -> Result<*mut RawFolio> {
        let mut store = [IndexStore::new(index, folio)];
        if self.insert_all(&mut store) == 0 {
            return Err(ENOMEM);
        }
        Ok(store[0].old)
    }

    /// Stores each entry's folio at its index without sleeping, under one
    /// hold of the XArray's lock; its `old` gets the entry replaced.
    /// Returns how many, from the first, were stored.
    pub(crate) fn insert_all(&self, stores: &mut [IndexStore]) -> usize {
        // SAFETY: initialised XArray; the slice holds that many elements.
        unsafe { b::ss_hold_index_store_all(self.raw(), stores.as_mut_ptr(), stores.len() as u32) as usize }
    }

    /// Takes the entry at `index` out; whether there was one.
    pub(crate) fn remove(&self, index: usize) -> bool {
        // SAFETY: initialised XArray.
        !unsafe { b::ss_hold_index_erase(self.raw(), index as _) }.is_null()
    }

    /// The first entry at `from..=max`: its index and folio.
    pub(crate) fn next(&self, from: usize, max: usize) -> Option<(usize, *mut RawFolio)> {
        let mut index = from as _;
        // SAFETY: initialised XArray.
        let folio = unsafe { b::ss_hold_index_find(self.raw(), &mut index, max as _) };
        (!folio.is_null()).then_some((index as usize, folio))
    }

    /// One step of a walk that takes out entries that may go: from index
    /// `from` on, looks at up to `budget` entries, each against the folio
    /// the page cache of `mapping` has at its index (none or another: the
    /// entry's folio left; the same, and nobody but the page cache, its
    /// mappings, private data and this lookup references it: no reader
    /// left). A folio somebody else has locked keeps its entry.
    pub(crate) fn reap(&self, mapping: *mut Mapping, from: usize, budget: usize) -> Reaped {
        let mut w = b::ss_reap_walk { seen: 0, next: 0 };
        // SAFETY: initialised XArray, used under its bucket lock (type
        // invariant); `mapping` is the index's file's, alive while the
        // registry has its entry (eviction takes it out first).
        let ended = unsafe { b::ss_hold_index_reap(self.raw(), mapping, from as _, budget as u32, &mut w) };
        Reaped::from(ended, w)
    }

    /// One step of the shrinker's walk: from index `from` on, looks at up
    /// to `budget` blocks and frees those whose range of `mapping` has no
    /// folio in the page cache, with their entries (all stale). `seen`
    /// counts blocks.
    pub(crate) fn drop_uncached(&self, mapping: *mut Mapping, from: usize, budget: usize) -> Reaped {
        let mut w = b::ss_reap_walk { seen: 0, next: 0 };
        // SAFETY: as for `reap`.
        let ended = unsafe { b::ss_hold_index_drop_uncached(self.raw(), mapping, from as _, budget as u32, &mut w) };
        Reaped::from(ended, w)
    }
}

/// What one step of a walk did ([`HoldIndex::reap`],
/// [`HoldIndex::drop_uncached`]).
pub(crate) struct Reaped {
    /// Entries taken out.
    pub(crate) ended: usize,
    /// Entries (or blocks) looked at.
    pub(crate) seen: usize,
    /// Where the next step goes on; `None`: no entry is left after them.
    pub(crate) next: Option<usize>,
}

impl Reaped {
    fn from(ended: u32, w: b::ss_reap_walk) -> Self {
        Self {
            ended: ended as usize,
            seen: w.seen as usize,
            next: (w.next != usize::MAX as _).then_some(w.next as usize),
        }
    }
}

#[pinned_drop]
impl PinnedDrop for HoldIndex {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: no longer used; the entries own nothing.
        unsafe { b::ss_hold_index_destroy(self.raw()) };
    }
}
