// SPDX-License-Identifier: GPL-2.0

//! Breaking a hold for a writer: a copy takes the held folio's place in the
//! page cache, the writer gets the copy, the pipe keeps the old folio.

use super::{ended, Bucket, Holds};
use crate::{
    bindings as b,
    counters::COUNTERS,
    folio::{FolioLock, FolioRef, LockedFolio, Mapping},
};
use kernel::{error::from_err_ptr, prelude::*, sync::SpinLock};

/// What a writer that wants to change a folio of the page cache must do.
pub(crate) enum Break {
    /// Not held (any more): write it in place.
    Free,
    /// A copy took the held folio's place in the page cache: write that.
    Replaced(LockedFolio),
    /// A copy in small folios took the held large folio's place (see
    /// `ss_folio_break_copy`): the one at the writer's index, which was
    /// unlocked a moment unless it is the first, so a splice may have held
    /// it meanwhile: check it again before writing it.
    Split(LockedFolio),
    /// No copy could be allocated, and the clean held folio left the page
    /// cache (the pipe keeps it): look up again, which reads the page back
    /// from the file.
    Evicted,
    /// Held and dirty: unlock it, write it back, look it up again.
    WriteBack,
    /// `policy=block`: unlock it, wait a little, look it up again.
    Wait,
    /// Held, and no copy could be made now (the folio could not be
    /// unmapped or its file-system state released): unlock it, wait a
    /// little, look it up again, or fail the write with `ENOMEM` (see
    /// [`NOCOPY_ROUNDS`]). Never write it.
    NoCopy,
}

/// How many times a writer retries a break that could not make its copy
/// before its write fails with `ENOMEM`; it sleeps [`nocopy_sleep_ms`]
/// between tries (about 100 ms in all).
pub(crate) const NOCOPY_ROUNDS: u32 = 8;

/// The sleep before retry `round` (from 1) of a break without a copy:
/// 1, 2, 4, 8, 16, 16... ms, for reclaim and writeback to make progress.
pub(crate) fn nocopy_sleep_ms(round: u32) -> u32 {
    1 << round.saturating_sub(1).min(4)
}

impl Holds {
    /// A writer holds the lock of `folio`, a folio of `mapping`, and
    /// `extra` references to it, and is about to change it in place, at
    /// page `at`. `may_wait`: `policy=block` holds may ask it to wait.
    pub(crate) fn break_locked(&self, folio: &FolioLock<'_>, mapping: *mut Mapping, at: usize, extra: i32, may_wait: bool) -> Break {
        if !self.may_hold(mapping) {
            return Break::Free;
        }
        let (key, index) = (mapping as usize, folio.index());
        let (bucket, count) = self.bucket(mapping);
        let mut b = bucket.lock();
        let Some(file) = b.files.get(&key) else {
            return Break::Free;
        };
        if file.index.get(index) != folio.as_ptr() || folio.mapping() != mapping {
            return Break::Free; // not held, or a stale entry of a folio that left the cache
        }
        let block = file.block;
        if ended(folio, extra) {
            let gone = b.remove_hold(key, index, folio.as_ptr(), count, &self.table);
            drop(b);
            drop(gone); // a file's entry with its last hold, after the lock
            return Break::Free;
        }
        if block && may_wait {
            return Break::Wait;
        }
        drop(b);
        folio.wait_writeback();
        // Its file-system state (buffer heads, iomap state: delalloc
        // reservations, unwritten extents, mapped blocks) and its dirtiness
        // move to the copy, as migration moves them. Where a dirty folio's
        // cannot, write it back first; a clean one's is released instead.
        let dirty = folio.is_dirty();
        let copy = match replace(folio, mapping, dirty, at) {
            Ok(copy) => copy,
            Err(_) if dirty => return Break::WriteBack,
            // No memory for the copy: a clean folio's bytes are the file's,
            // so it may leave the page cache to its readers instead.
            Err(e) if e == ENOMEM && evict(folio, mapping) => {
                let gone = bucket.lock().remove_hold(key, index, folio.as_ptr(), count, &self.table);
                drop(gone);
                COUNTERS.breaks_evicted.add(1);
                return Break::Evicted;
            }
            Err(_) => {
                COUNTERS.breaks_retried.add(1);
                return Break::NoCopy;
            }
        };
        if dirty {
            COUNTERS.breaks_dirty.add(1);
        }
        let gone = bucket.lock().remove_hold(key, index, folio.as_ptr(), count, &self.table);
        drop(gone);
        COUNTERS.breaks.add(1);
        COUNTERS.snapshot_bytes.add(folio.size());
        if copy.nr_pages() < folio.nr_pages() {
            COUNTERS.breaks_split.add(1);
            return Break::Split(copy);
        }
        Break::Replaced(copy)
    }

    /// Keeps new holds out of `mapping` until the returned fence drops
    /// (size changes, fallocate: writers that may zero or write inside
    /// journal handles, where no break may be needed).
    pub(crate) fn fence(&self, mapping: *const Mapping) -> Fence<'_> {
        let (bucket, _) = self.bucket(mapping);
        bucket.lock().fences += 1;
        Fence { bucket }
    }

    /// Breaks every hold on folios `first..=last` of `mapping`. `ENOMEM`
    /// if a held folio could not be copied after [`NOCOPY_ROUNDS`] tries,
    /// or stayed dirty after four writebacks, or is dirty while the caller
    /// is inside a journal handle: the caller must then not change the
    /// range (that folio is still in the page cache and still held).
    ///
    /// # Safety
    ///
    /// The caller keeps `mapping` alive, holds no folio lock, and may sleep
    /// and write back (no journal handle open).
    pub(crate) unsafe fn break_range(&self, mapping: *mut Mapping, first: usize, last: usize) -> Result {
        // Holds are indexed by a folio's first page: a large folio that
        // starts before `first` may reach into the range.
        // SAFETY: no preconditions.
        let mut from = first.saturating_sub(unsafe { b::ss_max_folio_pages() } as usize - 1);
        while self.may_hold(mapping) && from <= last {
            let next = {
                let (bucket, _) = self.bucket(mapping);
                let b = bucket.lock();
                b.files.get(&(mapping as usize)).and_then(|file| file.index.next(from, last))
            };
            let Some((index, entry)) = next else {
                return Ok(());
            };
            // The entry owns nothing: what the page cache has at its index
            // is the held folio only if it is the entry's.
            // SAFETY: the caller keeps `mapping` alive.
            let cached = unsafe { FolioRef::lookup(mapping, index) };
            let Some(folio) = cached.filter(|f| f.as_ptr() == entry && f.index() == index) else {
                // Its folio left the page cache (the pipes keep it).
                let (bucket, count) = self.bucket(mapping);
                let gone = bucket.lock().remove_hold(mapping as usize, index, entry, count, &self.table);
                drop(gone);
                if index == usize::MAX {
                    return Ok(());
                }
                from = index + 1;
                continue;
            };
            if index.saturating_add(folio.nr_pages() - 1) < first {
                from = index + 1; // ends before the range
                continue;
            }
            let (mut writebacks, mut nocopies) = (0, 0);
            loop {
                let locked = folio.lock();
                match self.break_locked(&locked, mapping, index, 1, false) {
                    // Dirtied again after every writeback, or a journal
                    // handle is open: the held folio stays as it is, and
                    // the caller must not change the range.
                    // SAFETY: no preconditions.
                    Break::WriteBack if writebacks == 4 || unsafe { b::ss_in_fs_transaction() } => {
                        COUNTERS.breaks_retried.add(1);
                        return Err(ENOMEM);
                    }
                    Break::WriteBack => {
                        drop(locked);
                        writebacks += 1;
                        // SAFETY: `mapping` alive, no locks held (caller).
                        unsafe { write_back(mapping, index) };
                        continue;
                    }
                    Break::NoCopy => {
                        drop(locked);
                        nocopies += 1;
                        // SAFETY: task context, no locks held (caller).
                        if nocopies > NOCOPY_ROUNDS || unsafe { b::ss_sleep_killable_ms(nocopy_sleep_ms(nocopies)) } {
                            return Err(ENOMEM);
                        }
                        continue;
                    }
                    _ => {}
                }
                break;
            }
            if index == usize::MAX {
                return Ok(());
            }
            from = index + 1;
        }
        Ok(())
    }
}

/// New holds are kept out of a mapping while this lives (see [`Holds::fence`]).
pub(crate) struct Fence<'a> {
    bucket: &'a SpinLock<Bucket>,
}

impl Drop for Fence<'_> {
    fn drop(&mut self) {
        self.bucket.lock().fences -= 1;
    }
}

/// Puts a copy of locked `folio` into the page cache of `mapping` in its
/// place, with the folio's file-system state and, if `dirty`, its
/// dirtiness (no writeback); returns the copy, locked and referenced, or,
/// where a large folio's copy was split into small folios, the one at page
/// `at` (`ss_folio_break_copy`). The
/// old folio stays with its readers, clean, out of the page cache: their
/// references keep it unchanged. `ENOMEM`: no copy could be allocated;
/// `EBUSY`: the folio could not be unmapped, or its state neither moved
/// nor released. Either way nothing changed but a clean folio's released
/// state (see `ss_folio_replace_with`).
fn replace(folio: &FolioLock<'_>, mapping: *mut Mapping, dirty: bool, at: usize) -> Result<LockedFolio> {
    let mut raced = b::ss_split_races::default();
    // SAFETY: locked, in `mapping` (the caller's lookup checked), not under
    // writeback (waited for under this lock); `dirty` read under the lock;
    // `raced` is ours.
    let new = unsafe { b::ss_folio_break_copy(mapping, folio.as_ptr(), dirty, at as _, &mut raced) };
    COUNTERS.split_pages_faulted.add(raced.faulted.into());
    COUNTERS.split_pages_truncated.add(raced.truncated.into());
    let new = from_err_ptr(new)?;
    // SAFETY: a new folio, locked, whose reference is ours.
    Ok(unsafe { LockedFolio::adopt(new) })
}

/// Takes locked, clean `folio`, for which no copy could be allocated, out
/// of the page cache of `mapping` for its readers alone (see
/// `ss_folio_evict`); false with nothing changed but its released
/// file-system state.
fn evict(folio: &FolioLock<'_>, mapping: *mut Mapping) -> bool {
    // SAFETY: locked, in `mapping` (the caller's lookup checked), not under
    // writeback; the caller's reference keeps it alive after the page
    // cache lets go of it.
    unsafe { b::ss_folio_evict(mapping, folio.as_ptr()) }
}

/// Writes folio `index` of `mapping` back and waits for it.
///
/// # Safety
///
/// `mapping` is alive; no folio lock or journal handle is held.
pub(crate) unsafe fn write_back(mapping: *mut Mapping, index: usize) {
    let first = index as i64 * b::SS_PAGE_SIZE;
    COUNTERS.breaks_written_back.add(1);
    // SAFETY: no preconditions.
    if unsafe { b::ss_injected(b::ss_injected_failure_SS_WRITEBACK_SKIPPED) } {
        return; // a test's: the folio stays dirty, as if dirtied again
    }
    // SAFETY: per the caller.
    let _ = unsafe { b::filemap_write_and_wait_range(mapping, first, first + b::SS_PAGE_SIZE - 1) };
}
