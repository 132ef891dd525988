// SPDX-License-Identifier: GPL-2.0

//! Folio references and folio locks as owned values.
//!
//! [`FolioRef`] is one counted reference (`folio_put` on drop), [`FolioLock`]
//! the folio lock (`folio_unlock` on drop). Hold and writer code takes and
//! releases both only through them.

use crate::bindings as b;
use core::{marker::PhantomData, ptr::NonNull};

pub(crate) type RawFolio = b::folio;
pub(crate) type Mapping = b::address_space;

/// One counted reference to a folio.
///
/// # Invariants
///
/// The pointer is a folio of which this value owns one reference.
pub(crate) struct FolioRef(NonNull<RawFolio>);

// SAFETY: a folio reference may be dropped from any task or context.
unsafe impl Send for FolioRef {}
// SAFETY: shared access only reads the pointer.
unsafe impl Sync for FolioRef {}

impl FolioRef {
    /// Takes a new reference to `folio`.
    #[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
    ///
    /// # Safety
    ///
    /// `folio` is alive: the caller holds a reference or a lock that keeps it.
    pub(crate) unsafe fn get(folio: *mut RawFolio) -> Self {
        // SAFETY: alive per the caller.
        unsafe { b::ss_folio_get(folio) };
        // SAFETY: a live folio is not null.
        Self(unsafe { NonNull::new_unchecked(folio) })
    }

    /// The folio that `mapping` caches at `index` (the one spanning it),
    /// referenced. Does not sleep.
    ///
    /// # Safety
    ///
    /// `mapping` is alive.
    pub(crate) unsafe fn lookup(mapping: *mut Mapping, index: usize) -> Option<Self> {
        // SAFETY: alive per the caller; the lookup takes its own reference.
        NonNull::new(unsafe { b::ss_folio_lookup(mapping, index as _) }).map(Self)
    }

    /// The page index of its first page in its file.
    pub(crate) fn index(&self) -> usize {
        // SAFETY: referenced, hence alive.
        unsafe { b::ss_folio_index(self.as_ptr()) as usize }
    }

    /// Takes over a reference the caller owns.
    ///
    /// # Safety
    ///
    /// The caller owns one reference to `folio` and gives it up.
    pub(crate) unsafe fn adopt(folio: *mut RawFolio) -> Self {
        // SAFETY: a referenced folio is not null.
        Self(unsafe { NonNull::new_unchecked(folio) })
    }

    /// Gives the reference up to the caller.
    pub(crate) fn into_raw(self) -> *mut RawFolio {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    pub(crate) fn as_ptr(&self) -> *mut RawFolio {
        self.0.as_ptr()
    }

    /// Pages it spans (more than one for a large folio; fixed while
    /// referenced).
    pub(crate) fn nr_pages(&self) -> usize {
        // SAFETY: referenced, hence alive.
        unsafe { b::ss_folio_nr_pages(self.as_ptr()) as usize }
    }

    /// Sleeps until the folio lock is ours.
    pub(crate) fn lock(&self) -> FolioLock<'_> {
        // SAFETY: referenced, so alive; may sleep, as callers of this do.
        unsafe { b::ss_folio_lock(self.as_ptr()) };
        FolioLock { folio: self.0, _ref: PhantomData }
    }
}

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: we own this reference.
        unsafe { b::ss_folio_put(self.as_ptr()) };
    }
}

/// The lock of a folio that somebody keeps alive for `'a`.
///
/// # Invariants
///
/// `folio` is locked, and this value owns that lock; a reference that
/// outlives `'a` keeps the folio alive.
pub(crate) struct FolioLock<'a> {
    folio: NonNull<RawFolio>,
    _ref: PhantomData<&'a FolioRef>,
}

impl FolioLock<'_> {
    /// Takes over the lock of a folio the caller locked.
    ///
    /// # Safety
    ///
    /// The caller holds the lock of `folio` and a reference that outlives
    /// the returned value; it gives the lock up.
    pub(crate) unsafe fn adopt<'a>(folio: *mut RawFolio) -> FolioLock<'a> {
        // SAFETY: a locked folio is not null.
        FolioLock { folio: unsafe { NonNull::new_unchecked(folio) }, _ref: PhantomData }
    }

    /// Sleeps until the lock of `folio` is ours.
    ///
    /// # Safety
    ///
    /// The caller holds a reference to `folio` that outlives the returned
    /// value, and may sleep.
    pub(crate) unsafe fn lock<'a>(folio: *mut RawFolio) -> FolioLock<'a> {
        // SAFETY: referenced, so alive (caller).
        unsafe {
            b::ss_folio_lock(folio);
            Self::adopt(folio)
        }
    }

    /// The lock of `folio`, a folio of `mapping` when the caller found it,
    /// taken as a stable splice does: a short spin before it sleeps, as a
    /// writer holds the lock for one write. `None` without the lock once
    /// the folio left `mapping`: whoever removed it (a break, a truncate)
    /// is done changing it, so its bytes are final.
    ///
    /// # Safety
    ///
    /// The caller holds a reference to `folio` that outlives the returned
    /// value, and may sleep.
    pub(crate) unsafe fn lock_in<'a>(folio: *mut RawFolio, mapping: *mut Mapping) -> Option<FolioLock<'a>> {
        // SAFETY: referenced, so alive (caller); `mapping` is only compared.
        unsafe { b::ss_folio_lock_in(folio, mapping) }.then(|| {
            // SAFETY: locked just now; the caller's reference outlives it.
            unsafe { Self::adopt(folio) }
        })
    }

    /// Leaves the folio locked for the caller's caller.
    pub(crate) fn keep_locked(self) -> *mut RawFolio {
        let p = self.folio.as_ptr();
        core::mem::forget(self);
        p
    }

    pub(crate) fn as_ptr(&self) -> *mut RawFolio {
        self.folio.as_ptr()
    }

    /// The page cache it is in; stable while locked.
    pub(crate) fn mapping(&self) -> *mut Mapping {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_mapping(self.as_ptr()) }
    }

    pub(crate) fn index(&self) -> usize {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_index(self.as_ptr()) as usize }
    }

    /// References beyond the page cache, private data and page tables;
    /// never less than the true number while locked (see rust/folio.c).
    pub(crate) fn extra_refs(&self) -> i32 {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_extra_refs(self.as_ptr()) }
    }

    /// Whether nothing but the page cache, its mappings, private data, the
    /// LRU's own bookkeeping and `own` references of the caller's
    /// references it (`ss_folio_unshared` in rust/folio.c has why a
    /// reference of the LRU's is never a writer's).
    pub(crate) fn unshared(&self, own: i32) -> bool {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_unshared(self.as_ptr(), own) }
    }

    pub(crate) fn nr_pages(&self) -> usize {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_nr_pages(self.as_ptr()) as usize }
    }

    /// Its size in bytes (a large folio spans several pages).
    pub(crate) fn size(&self) -> i64 {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_nr_pages(self.as_ptr()) as i64 * b::SS_PAGE_SIZE }
    }

    pub(crate) fn is_dirty(&self) -> bool {
        // SAFETY: locked, hence alive.
        unsafe { b::ss_folio_dirty(self.as_ptr()) }
    }

    /// Waits for writeback of the folio to end (it cannot start again
    /// while the folio is locked).
    pub(crate) fn wait_writeback(&self) {
        // SAFETY: locked; writeback ends without the folio lock.
        unsafe {
            if b::ss_folio_writeback(self.as_ptr()) {
                b::ss_folio_wait_writeback(self.as_ptr());
            }
        }
    }

    /// Write-protects the folio's ptes so the next store through a shared
    /// mapping faults into `do_page_mkwrite`; keeps dirty ptes' news in the
    /// folio's dirty bit.
    pub(crate) fn write_protect(&self) {
        // SAFETY: locked, as folio_mkclean() requires.
        unsafe { b::ss_folio_write_protect(self.as_ptr()) };
    }
}

impl Drop for FolioLock<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the lock.
        unsafe { b::folio_unlock(self.as_ptr()) };
    }
}

/// A folio that is both referenced and locked by its owner, such as the
/// copy a break puts into the page cache for the writer.
///
/// # Invariants
///
/// This value owns the folio's lock as well as the reference it wraps.
pub(crate) struct LockedFolio(FolioRef);

impl LockedFolio {
    /// # Safety
    ///
    /// The caller owns a reference to `folio` and its lock, and gives both up.
    pub(crate) unsafe fn adopt(folio: *mut RawFolio) -> Self {
        // SAFETY: per the caller.
        Self(unsafe { FolioRef::adopt(folio) })
    }

    pub(crate) fn nr_pages(&self) -> usize {
        self.0.nr_pages()
    }

    /// Hands reference and lock to the caller (a locked lookup's result).
    pub(crate) fn into_raw(self) -> *mut RawFolio {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: read out once; `this` is never dropped.
        unsafe { core::ptr::read(&this.0) }.into_raw()
    }
}

impl Drop for LockedFolio {
    fn drop(&mut self) {
        // SAFETY: we own the lock; the reference is dropped after it.
        unsafe { b::folio_unlock(self.0.as_ptr()) };
    }
}

/// An entry for [`crate::hold_index::HoldIndex::insert_all`]: the folio
/// to store at its index, and the entry it replaced.
pub(crate) type IndexStore = b::ss_index_store;

impl IndexStore {
    /// `folio` to be stored at `index`; `old` gets what it replaces.
    pub(crate) const fn new(index: usize, folio: *mut RawFolio) -> Self {
        IndexStore { index: index as _, folio, old: core::ptr::null_mut() }
    }
}

/// Where a pipe buffer's folio belongs (`folio_kind()` in rust/pipe.c,
/// which reads `->mapping` once: a concurrent eviction clears it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FolioKind {
    /// Anonymous or the zero page: private to the pipe already.
    Private,
    /// Out of the page cache (truncated, or replaced by a break): nobody
    /// can write it any more.
    Orphan,
    /// In a file's page cache.
    PageCache,
}

impl FolioKind {
    pub(crate) fn from_raw(kind: i32) -> Self {
        match kind {
            0 => Self::Private,
            1 => Self::Orphan,
            _ => Self::PageCache,
        }
    }
}
