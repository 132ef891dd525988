// SPDX-License-Identifier: GPL-2.0

//! The held folios of one file, by page index.
//!
//! Entries are folios, each owning one reference (the hold's), kept in
//! blocks of 64 consecutive page indices that an XArray finds by index / 64
//! (`rust/hold_index.c`): a splice's new holds are pointer stores into a
//! few blocks, not an XArray store per page. The index remembers the block
//! it found last: a file served again finds its next splice's folios there
//! without an XArray load. The registry's bucket lock serializes every
//! user (of the blocks and that memory alike); the XArray's own lock,
//! taken by the C side for changes, keeps each call sound on its own.

use crate::{
    bindings as b,
    folio::{FolioRef, IndexStore, Mapping, RawFolio},
};
use kernel::{prelude::*, types::Opaque};

/// Page index -> held folio.
///
/// # Invariants
///
/// Every entry is a folio stored at its own first page index, and owns
/// one reference to it (given back when the entry is erased or the index
/// dropped). Only used under the registry's bucket lock of its file, or
/// by its owner alone (drop, KUnit).
#[pin_data(PinnedDrop)]
pub(crate) struct HoldIndex {
    #[pin]
    idx: Opaque<b::ss_hold_index>,
}

// SAFETY: the XArray and its blocks are plain memory that any task may use
// and free; the entries are folio references, which any task may drop.
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
    /// replaced, or gives `folio` back when no memory could be had.
    #[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
    pub(crate) fn insert(&self, index: usize, folio: FolioRef) -> Result<Option<FolioRef>, FolioRef> {
        let mut store = [IndexStore::new(index, folio.into_raw())];
        // SAFETY: the folio carries the reference that its entry owns once stored.
        if unsafe { self.insert_all(&mut store) } == 0 {
            // SAFETY: not stored: the reference is still ours.
            return Err(unsafe { FolioRef::adopt(store[0].folio) });
        }
        let old = store[0].old;
        // SAFETY: a replaced entry owned its reference; now the caller does.
        Ok((!old.is_null()).then(|| unsafe { FolioRef::adopt(old) }))
    }

    /// Stores each entry's folio at its index without sleeping, under one
    /// hold of the XArray's lock; its `old` gets the entry replaced.
    /// Returns how many, from the first, were stored.
    ///
    /// # Safety
    ///
    /// Each folio carries a reference that its entry owns once stored; the
    /// replaced entries' references are the caller's.
    pub(crate) unsafe fn insert_all(&self, stores: &mut [IndexStore]) -> usize {
        // SAFETY: initialised XArray; the slice holds that many elements.
        unsafe { b::ss_hold_index_store_all(self.raw(), stores.as_mut_ptr(), stores.len() as u32) as usize }
    }

    /// Takes the entry at `index` out, with its reference.
    pub(crate) fn remove(&self, index: usize) -> Option<FolioRef> {
        // SAFETY: initialised XArray; an erased entry's reference is ours.
        let old = unsafe { b::ss_hold_index_erase(self.raw(), index as _) };
        // SAFETY: see above.
        (!old.is_null()).then(|| unsafe { FolioRef::adopt(old) })
    }

    /// The first entry at `from..=max`: its index and folio.
    pub(crate) fn next(&self, from: usize, max: usize) -> Option<(usize, *mut RawFolio)> {
        let mut index = from as _;
        // SAFETY: initialised XArray.
        let folio = unsafe { b::ss_hold_index_find(self.raw(), &mut index, max as _) };
        (!folio.is_null()).then_some((index as usize, folio))
    }

    /// One step of the reaper's walk: from index `from` on, looks at up
    /// to `budget` entries and ends the holds that ended (nobody but the
    /// page cache, its mappings, private data and the hold references the
    /// folio, or it left `mapping`, which is only compared), putting their
    /// references. A folio somebody else has locked stays held.
    pub(crate) fn reap(&self, mapping: *mut Mapping, from: usize, budget: usize) -> Reaped {
        let mut w = b::ss_reap_walk { seen: 0, next: 0 };
        // SAFETY: initialised XArray, used under its bucket lock (type
        // invariant), which keeps each entry's folio alive while the walk
        // looks at it.
        let ended = unsafe { b::ss_hold_index_reap(self.raw(), mapping, from as _, budget as u32, &mut w) };
        Reaped {
            ended: ended as usize,
            seen: w.seen as usize,
            next: (w.next != usize::MAX as _).then_some(w.next as usize),
        }
    }
}

/// What one step of the reaper's walk did ([`HoldIndex::reap`]).
pub(crate) struct Reaped {
    /// Holds ended (their entries taken out, references put).
    pub(crate) ended: usize,
    /// Entries looked at.
    pub(crate) seen: usize,
    /// Where the next step goes on; `None`: no entry is left after them.
    pub(crate) next: Option<usize>,
}

#[pinned_drop]
impl PinnedDrop for HoldIndex {
    fn drop(self: Pin<&mut Self>) {
        while let Some((index, _)) = self.next(0, usize::MAX) {
            drop(self.remove(index));
        }
        // SAFETY: empty and no longer used.
        unsafe { b::ss_hold_index_destroy(self.raw()) };
    }
}
