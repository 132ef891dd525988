// SPDX-License-Identifier: GPL-2.0

//! The held folios of one file, by page index.
//!
//! An XArray whose entries are folios, each owning one reference (the
//! hold's). Consecutive indices share a leaf node: a splice's folios are
//! checked in one walk (`rust/hold_index.c`; the Rust XArray abstraction
//! has no cursor). The registry's bucket lock serializes every user; the
//! XArray's own lock, taken by the C side for changes, keeps each call
//! sound on its own.

use crate::{
    bindings as b,
    folio::{FolioRef, RawFolio},
};
use kernel::{prelude::*, types::Opaque};

/// Page index -> held folio.
///
/// # Invariants
///
/// Every entry is a folio stored at its own first page index, and owns
/// one reference to it (given back when the entry is erased or the index
/// dropped).
#[pin_data(PinnedDrop)]
pub(crate) struct HoldIndex {
    #[pin]
    xa: Opaque<b::xarray>,
}

// SAFETY: the XArray is used through its own locking only; the entries are
// folio references, which any task may drop.
unsafe impl Send for HoldIndex {}
// SAFETY: as above: every method is sound under concurrent calls.
unsafe impl Sync for HoldIndex {}

impl HoldIndex {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `xa` is valid and unused while the closure runs.
            xa <- Opaque::ffi_init(|xa| unsafe { b::ss_hold_index_init(xa) }),
        })
    }

    fn raw(&self) -> *mut b::xarray {
        self.xa.get()
    }

    /// The folio held at `index`: only compared, never dereferenced
    /// beyond the caller's own reference.
    pub(crate) fn get(&self, index: usize) -> *mut RawFolio {
        // SAFETY: initialised XArray (type invariant).
        unsafe { b::ss_hold_index_load(self.raw(), index as _) }
    }

    /// Stores `folio` at `index` without sleeping; returns the entry it
    /// replaced, or gives `folio` back when no memory could be had.
    #[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
    pub(crate) fn insert(&self, index: usize, folio: FolioRef) -> Result<Option<FolioRef>, FolioRef> {
        let raw = folio.into_raw();
        let mut old = [core::ptr::null_mut()];
        // SAFETY: `raw` carries the reference that its entry owns once stored.
        if unsafe { self.insert_all(&[index], &[raw], &mut old) } == 0 {
            // SAFETY: not stored: the reference is still ours.
            return Err(unsafe { FolioRef::adopt(raw) });
        }
        // SAFETY: a replaced entry owned its reference; now the caller does.
        Ok((!old[0].is_null()).then(|| unsafe { FolioRef::adopt(old[0]) }))
    }

    /// Stores `folios[i]` at `indices[i]` without sleeping, under one hold
    /// of the XArray's lock; `old[i]` gets the entry replaced. Returns how
    /// many, from the first, were stored.
    ///
    /// # Safety
    ///
    /// Each folio carries a reference that its entry owns once stored; the
    /// replaced entries' references are the caller's.
    pub(crate) unsafe fn insert_all(&self, indices: &[usize], folios: &[*mut RawFolio], old: &mut [*mut RawFolio]) -> usize {
        let n = indices.len().min(folios.len()).min(old.len());
        // SAFETY: initialised XArray; the slices hold `n` elements each.
        unsafe {
            b::ss_hold_index_store_all(self.raw(), indices.as_ptr().cast(), folios.as_ptr().cast(), old.as_mut_ptr().cast(), n as u32) as usize
        }
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

    /// Up to `indices.len()` entries from index `from` on, in one walk:
    /// their indices and folios (only compared, or dereferenced under the
    /// lock that keeps the entries). Returns how many.
    pub(crate) fn gather(&self, from: usize, indices: &mut [usize], folios: &mut [*mut RawFolio]) -> usize {
        let n = indices.len().min(folios.len());
        // SAFETY: initialised XArray; the slices hold `n` elements each.
        unsafe { b::ss_hold_index_gather(self.raw(), from as _, indices.as_mut_ptr().cast(), folios.as_mut_ptr(), n as u32) as usize }
    }

    /// Takes out, under one hold of the XArray's lock, the entry at each
    /// `indices[i]` with `erase[i]` set if it is still `folios[i]`, its
    /// reference into `gone[i]`; clears `erase[i]` where it was not.
    /// Returns how many were taken out.
    pub(crate) fn remove_all(
        &self,
        indices: &[usize],
        folios: &[*mut RawFolio],
        erase: &mut [bool],
        gone: &mut [Option<FolioRef>],
    ) -> usize {
        let n = indices.len().min(folios.len()).min(erase.len()).min(gone.len());
        // SAFETY: initialised XArray; the slices hold `n` elements each.
        let done = unsafe {
            b::ss_hold_index_erase_all(self.raw(), indices.as_ptr().cast(), folios.as_ptr().cast(), erase.as_mut_ptr(), n as u32)
        };
        for i in (0..n).filter(|&i| erase[i]) {
            // SAFETY: an erased entry's reference is ours now.
            gone[i] = Some(unsafe { FolioRef::adopt(folios[i]) });
        }
        done as usize
    }

    /// Sets `held[i]` where `folios[i]` is the entry at `indices[i]`;
    /// returns how many are. Ascending indices make it one walk.
    pub(crate) fn matches(&self, indices: &[usize], folios: &[*mut RawFolio], held: &mut [bool]) -> usize {
        let n = indices.len().min(folios.len()).min(held.len());
        // SAFETY: initialised XArray; the slices hold `n` elements each.
        unsafe {
            b::ss_hold_index_match(self.raw(), indices.as_ptr().cast(), folios.as_ptr().cast(), held.as_mut_ptr(), n as u32)
                as usize
        }
    }

    /// How many of the `n` buffers from slot `from` of a locked pipe's ring
    /// (`bufs`, `mask`), in a row, reference held folios: one pass over the
    /// buffers and the index's adjacent slots.
    ///
    /// # Safety
    ///
    /// The pipe is locked and the `n` slots from `from` are occupied.
    pub(crate) unsafe fn held_prefix(&self, bufs: *const b::pipe_buffer, mask: u32, from: u32, n: u32) -> u32 {
        // SAFETY: initialised XArray; the slots per the caller.
        unsafe { b::ss_hold_index_held_prefix(self.raw(), bufs, mask, from, n) }
    }
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
