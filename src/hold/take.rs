// SPDX-License-Identifier: GPL-2.0

//! Taking a hold, and joining the holds a file has: under the folio lock,
//! and only when nothing but the page cache, its mappings and this
//! splice's buffers references the folio, the LRU's reference aside
//! ([`FolioLock::unshared`]; see the registry, [`super`]).

use super::{now_ns, Bucket, FileHolds, HeldFiles, HoldCount, Holds, Spare, CHUNK};
use crate::{
    bindings as b,
    ftrace::Pinned,
    counters::COUNTERS,
    folio::{FolioLock, IndexStore, Mapping, RawFolio},
};
use core::mem::MaybeUninit;
use kernel::{
    prelude::*,
    sync::{
        barrier::{smp_mb, Full},
        SpinLockGuard,
    },
};
use core::sync::atomic::Ordering::Relaxed;

/// How a stable splice gets a buffer of a page-cache folio.
pub(crate) enum Taken {
    /// Held: the buffer keeps the page-cache folio (zero copy).
    Held,
    /// The folio left the page cache already: nobody can write it.
    Orphan,
    /// Somebody else references it (or the file is being truncated): copy.
    Copy,
}

impl Holds {
    /// The holds of `mapping` under one bucket lock, to join many folios of
    /// one splice at once; None if the mapping has none or is fenced.
    pub(crate) fn joins(&self, mapping: *const Mapping) -> Option<Joins<'_>> {
        if !self.may_hold(mapping) {
            return None;
        }
        self.lock_mapping(mapping)
    }

    /// The holds of `mapping` under its bucket lock, to join and create
    /// holds without sleeping; None while the mapping is fenced.
    pub(crate) fn lock_mapping(&self, mapping: *const Mapping) -> Option<Joins<'_>> {
        let (bucket, count) = self.bucket(mapping);
        let bucket = bucket.lock();
        (bucket.fences == 0).then(|| Joins { bucket, count, table: &self.table, mapping: mapping as usize, now: now_ns(), added: false })
    }

    /// The holds of `mapping` under its bucket lock, with its registry
    /// entry in place (taken from `spare`, filled first if need be); None
    /// while the mapping is fenced.
    ///
    pub(crate) fn lock_mapping_for_new(
        &self,
        mapping: *const Mapping,
        spare: &mut Spare,
        block: bool,
        pinned: Pinned<'_>,
    ) -> Result<Option<Joins<'_>>> {
        let Some(joins) = self.lock_mapping(mapping) else {
            return Ok(None);
        };
        if joins.has_file() {
            return Ok(Some(joins));
        }
        drop(joins);
        spare.fill(pinned)?;
        let Some(mut joins) = self.lock_mapping(mapping) else {
            return Ok(None);
        };
        joins.add_file(spare, block);
        Ok(Some(joins))
    }

    /// Holds `folio` of `mapping`, which `own` new pipe buffers of a stable
    /// splice from `file` reference, if nobody else does.
    ///
    /// # Safety
    ///
    /// The caller holds the pipe lock (no consumer has seen the buffers),
    /// the buffers' references to `folio`, and `file` is the splice's source.
    pub(crate) unsafe fn take(
        &self,
        folio: *mut RawFolio,
        mapping: *mut Mapping,
        file: *mut b::file,
        own: i32,
        spare: &mut Spare,
        pinned: Pinned<'_>,
    ) -> Result<Taken> {
        let block = self.blocking_for(file);
        let mut has_entry = false;
        if self.may_hold(mapping) {
            let Some(mut joins) = self.lock_mapping(mapping) else {
                return Ok(Taken::Copy); // fenced
            };
            // SAFETY: referenced by the caller's buffers.
            if unsafe { joins.held(folio, block) } {
                return Ok(Taken::Held);
            }
            has_entry = joins.has_file();
        }
        if !has_entry {
            spare.fill(pinned)?;
        }
        // SAFETY: referenced by the caller's buffers, which outlive the
        // lock. Lock order pipe -> folio, as in filemap_splice_read.
        let Some(locked) = (unsafe { FolioLock::lock_in(folio, mapping) }) else {
            return Ok(Taken::Orphan); // broken or truncated since splice_read
        };
        if locked.mapping() != mapping {
            return Ok(Taken::Orphan);
        }
        // Stores through shared mappings fault from now on; a GUP-fast pin
        // racing with this shows in the count below or backs off.
        locked.write_protect();
        if !locked.unshared(own) {
            // Another stable splice of the folio (a large folio that
            // several requests in flight read pieces of) may have held it
            // while this one waited for its lock: its buffers are the
            // references seen, and its hold is joined as the fast path
            // joins one.
            if let Some(mut joins) = self.lock_mapping(mapping) {
                // SAFETY: referenced by the caller's buffers.
                if unsafe { joins.held(folio, block) } {
                    return Ok(Taken::Held);
                }
            }
            COUNTERS.holds_refused.add(1);
            return Ok(Taken::Copy);
        }
        // A fence that went up since the check above may have done its
        // range break already: then no new hold.
        let Some(mut joins) = self.lock_mapping(mapping) else {
            return Ok(Taken::Copy);
        };
        joins.add_file(spare, block);
        // SAFETY: locked, in `mapping`, write-protected; pinned (caller).
        Ok(if unsafe { joins.insert_locked(&locked, own, block) } { Taken::Held } else { Taken::Copy })
    }
}

/// The holds of one mapping, locked (see [`Holds::joins`]).
///
/// # Invariants
///
/// `bucket` is the locked bucket of `mapping`, `count` its count of holds,
/// and the mapping is not fenced.
pub(crate) struct Joins<'a> {
    bucket: SpinLockGuard<'a, Bucket>,
    count: &'a HoldCount,
    table: &'a HeldFiles,
    mapping: usize,
    now: u64,
    /// The mapping's registry entry was put in place here: if no hold was
    /// taken after all, it goes on drop (every other entry has holds).
    added: bool,
}

impl Drop for Joins<'_> {
    fn drop(&mut self) {
        // An entry put in place for new holds that were not taken after
        // all: nothing else would end it (walks skip buckets without
        // holds), and it keeps the module.
        if self.added && self.file().is_some_and(|f| f.count == 0) {
            drop(self.bucket.remove_file(self.mapping, self.table));
        }
    }
}

impl Joins<'_> {
    /// Whether the mapping has its registry entry.
    fn has_file(&self) -> bool {
        self.bucket.files.get(&self.mapping).is_some()
    }

    /// The mapping's registry entry.
    fn file(&mut self) -> Option<&mut FileHolds> {
        self.bucket.files.get_mut(&self.mapping)
    }

    /// Puts the entry of `spare` in place for this mapping, unless it has
    /// one.
    fn add_file(&mut self, spare: &mut Spare, block: bool) {
        if self.has_file() {
            return;
        }
        if let Some((node, mut file)) = spare.0.take() {
            file.block = block;
            file.used = self.now;
            // Before any hold of the file is checked (see insert_locked).
            file.slot = self.table.insert(self.mapping);
            self.bucket.files.insert(node.into_node(self.mapping, file));
            self.added = true;
        }
    }

    /// Whether `folio`, which new buffers of a stable splice reference, is
    /// held already; if so the buffers share the hold. The hold was taken
    /// when no writer had the folio, and every writer since would have
    /// broken it. No folio lock is needed: a writer decides that a hold
    /// ended under this bucket lock, and the buffers' references were taken
    /// before it was taken here, so the writer sees them. A writer that is
    /// replacing the folio right now leaves it to the buffers, out of the
    /// page cache.
    ///
    /// # Safety
    ///
    /// The caller's buffers reference `folio`.
    pub(crate) unsafe fn held(&mut self, folio: *mut RawFolio, block: bool) -> bool {
        let now = self.now;
        let Some(file) = self.file() else {
            return false;
        };
        // SAFETY: referenced by the caller's buffers.
        let held = unsafe { file.index.holds(folio) };
        if held {
            file.mark_used(now, block);
        }
        held
    }

    /// A file served again: the buffers of `chunk` from its first on, in a
    /// row, whose folios are held join those holds, in one pass
    /// (`ss_pipe_join_held`, rust/hold_take.c; as [`Joins::held`], no folio
    /// lock needed). Returns the slot of the first buffer whose folio is not
    /// held (`chunk.from` if the first's is not: a file served once) and the
    /// joined bytes.
    ///
    /// # Safety
    ///
    /// `chunk` is the new buffers of a stable splice from this mapping's
    /// file, under the pipe lock (no consumer has seen them).
    pub(crate) unsafe fn join_held(&mut self, chunk: &b::ss_pipe_chunk, block: bool) -> (u32, u64) {
        let now = self.now;
        let Some(file) = self.file() else {
            return (chunk.from, 0);
        };
        let mut bytes = 0;
        // SAFETY: per the caller; this bucket lock is held and the index
        // is this mapping's.
        let next = unsafe { b::ss_pipe_join_held(chunk, file.index.raw(), &mut bytes) };
        if next != chunk.from {
            file.mark_used(now, block);
        }
        (next, bytes)
    }

    /// Joins and new holds for up to [`CHUNK`] runs of a stable splice's
    /// new buffers (`chunk`; a large folio's pages are one run) in one pass
    /// (`ss_pipe_hold_new`, rust/hold_take.c): buffers on folios the index
    /// holds join those holds (as [`Joins::held`], no folio lock needed);
    /// folios whose lock is free right now, that are in this mapping and
    /// not mapped (write-protecting sleeps), and that nothing but the page
    /// cache, private data, the LRU and the run's buffers references get
    /// new holds, with the protocol of [`Joins::insert_locked`] for the
    /// chunk at once (counted, one barrier, then each one checked under its
    /// lock; this bucket lock, held throughout, makes a writer that saw the
    /// count wait until the entries are stored). Those buffers become
    /// stable buffers; the others are left to the slow path. None if the
    /// mapping has no registry entry: all are left.
    ///
    /// # Safety
    ///
    /// `chunk` is the new buffers of a stable splice from this mapping's
    /// file, under the pipe lock (no consumer has seen them); the module is
    /// pinned while this runs.
    pub(crate) unsafe fn hold_new(&mut self, chunk: &mut b::ss_pipe_chunk, block: bool) -> Option<b::ss_new_holds> {
        let (now, mapping, count) = (self.now, self.mapping as *mut Mapping, self.count.as_ptr().cast());
        let file = self.file()?;
        let mut out = MaybeUninit::<b::ss_new_holds>::uninit();
        // SAFETY: per the caller; `count` is this bucket's hold count (an
        // `atomic_t` in layout), this bucket lock is held, and the index
        // is this mapping's.
        let out = unsafe {
            b::ss_pipe_hold_new(chunk, CHUNK as u32, mapping, file.index.raw(), count, out.as_mut_ptr());
            out.assume_init()
        };
        if out.stored + out.joined > 0 {
            file.mark_used(now, block);
        }
        file.count += out.fresh as usize;
        if out.refused > 0 {
            COUNTERS.holds_refused.add(out.refused.into());
        }
        if out.stored > 0 {
            COUNTERS.holds_active.add(out.fresh.into());
            COUNTERS.holds_taken.add(out.stored.into());
        }
        Some(out)
    }

    /// A new hold on `folio`, locked in this mapping and write-protected,
    /// which `own` buffers of this splice reference, if nothing but the
    /// page cache, its mappings, private data, the LRU and those buffers
    /// references it; returns whether it is held. Otherwise it must be
    /// copied: somebody else references it, or the mapping has no registry
    /// entry, or the index no memory.
    ///
    /// The file is in the table of files with holds *before* the
    /// references are checked, with a full barrier between: a writer takes
    /// its folio reference before it asks [`Holds::writer_may_hold`], so
    /// either this check sees the writer's reference, or the writer finds
    /// the file and waits for this bucket lock, after which it finds the
    /// hold. Checking first and entering after would let both miss each
    /// other.
    ///
    /// # Safety
    ///
    /// The module is pinned while this runs; the mapping has its registry
    /// entry (hence its table slot).
    unsafe fn insert_locked(&mut self, folio: &FolioLock<'_>, own: i32, block: bool) -> bool {
        smp_mb(Full);
        if !folio.unshared(own) {
            COUNTERS.holds_refused.add(1);
            return false;
        }
        let mut stores = [IndexStore::new(folio.index(), folio.as_ptr())];
        // SAFETY: counted and checked above; pinned (caller).
        unsafe { self.store_counted(&mut stores, block) == 1 }
    }

    /// Registers new holds: stores `stores` (each a folio at its index),
    /// all checked after the file was in the table (see
    /// [`Joins::insert_locked`]); replaces stale entries (of folios that
    /// left the cache) at those indices. Returns how many, from the first,
    /// were stored (under one lock of the index) and counts the new ones
    /// in the bucket; those that could not be (no memory, or no registry
    /// entry) are left to be copied.
    ///
    /// # Safety
    ///
    /// Each store's folio was checked in this mapping under its lock, not
    /// mapped or write-protected; the module is pinned while this runs.
    unsafe fn store_counted(&mut self, stores: &mut [IndexStore], block: bool) -> usize {
        if stores.is_empty() {
            return 0;
        }
        let now = self.now;
        let (stored, fresh) = match self.file() {
            None => (0, 0),
            Some(file) => {
                let stored = file.index.insert_all(stores);
                let fresh = stores[..stored].iter().filter(|s| s.old.is_null()).count();
                if stored > 0 {
                    file.count += fresh;
                    file.mark_used(now, block);
                }
                (stored, fresh)
            }
        };
        self.count.fetch_add(fresh as i32, Relaxed);
        if stored > 0 {
            COUNTERS.holds_active.add(fresh as i64);
            COUNTERS.holds_taken.add(stored as i64);
        }
        stored
    }
}
