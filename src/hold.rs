// SPDX-License-Identifier: GPL-2.0

//! Holds: zero-copy stable buffers on page-cache folios.
//!
//! A stable splice from ext4 or xfs leaves the page-cache folio itself in
//! the pipe and registers a hold on it. From then on nobody may change
//! the folio in place while anybody but the page cache can see it. Every
//! in-place writer of those file systems passes a choke point first (see
//! `src/writers.rs`), where [`Holds::break_locked`] puts a *copy* of the
//! folio into the page cache in its place (`replace_page_cache_folio`):
//! the writer gets the copy, warm and without I/O, and the old folio stays
//! with the pipe, the sockets it went on to and everybody reading it,
//! unchanged and out of every writer's reach.
//!
//! Lifetime by references: a hold's readers are whoever besides the page
//! cache, its mappings and the folio's private data references the folio
//! (pipe buffers, tee copies, skbs after full or partial consumption, a
//! consumer in the middle of a copy). A hold's entry owns no reference
//! and nothing ends it per hold: a writer that meets it checks the
//! readers under the folio lock and takes the entry out (writing in place
//! when there are none, breaking the folio when there are); a file's
//! eviction, the shrinker and debugfs `reap` take entries out too
//! ([`reap`]). An entry outlives its folio where nobody took it out, so it
//! is only ever compared, never dereferenced. References that are not
//! readers (per-CPU LRU batches) only cost a writer one page copy.
//!
//! Taking a hold: under the folio lock, and only when nothing but the page
//! cache, its mappings and this splice's buffers references the folio (and,
//! on a folio off the LRU, the LRU's own reference: `FolioLock::unshared`).
//! A writer that looked the folio up holds a reference from its lookup
//! until its write ends (also across ext4's unlock and relock in
//! `write_begin`), and its lookup checked for holds under the folio lock:
//! either the writer's check saw the hold, or the hold's check sees the
//! writer's reference and the splice copies instead.
//!
//! Holds are indexed per file: buckets of files by mapping under one
//! spinlock per bucket, and per file an index by page index in blocks of
//! 64 entries (`src/hold_index.rs`), so the folios of one splice are
//! checked and stored a block at a time, writers of other files never
//! touch the lock (they do not find their file in [`table`]), and
//! a size change finds a range without a full scan. What a hold needs
//! besides its folio reference (when a splice last used it, whether writers
//! wait for it, a module reference) is kept once per file.
//!
//! The registry is here; taking and joining holds in [`take`], breaking
//! them for writers in [`breaks`], ending the ones nobody reads in
//! [`reap`], and showing what is held in [`report`].

mod breaks;
mod reap;
mod report;
pub(crate) mod table;
mod take;

pub(crate) use breaks::{nocopy_sleep_ms, write_back, Break, NOCOPY_ROUNDS};
pub(crate) use reap::reap_now;
pub(crate) use report::HoldsReport;
pub(crate) use take::{Joins, Taken};

use crate::{
    bindings as b,
    counters::COUNTERS,
    folio::{FolioLock, Mapping, RawFolio},
    ftrace::{ModuleRef, Pinned},
    hold_index::HoldIndex,
    policy::Policy,
    registry::Global,
};
use table::{HeldFiles, Slot};
use kernel::{
    new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{
        barrier::{smp_mb, Full},
        SpinLock,
    },
};
use core::sync::atomic::Ordering::Relaxed;

/// A bucket's count of holds (entries), read by the walks without the lock
/// (they skip buckets without any). A core atomic, as the module's counters
/// are (`src/counters.rs`): a `kernel::sync::atomic` operation is an
/// out-of-line C helper call on GCC-built kernels. Changed under the
/// bucket lock; C takes it as an `atomic_t`, which has the same layout.
pub(crate) type HoldCount = core::sync::atomic::AtomicI32;

/// The holds of one file (one mapping).
///
/// # Invariants
///
/// `count` is the number of entries in `index`; an entry with no holds
/// left is removed from the registry (its module reference with it) by
/// whoever ends its last hold.
pub(crate) struct FileHolds {
    /// The held folios (entries own no reference).
    index: Pin<KBox<HoldIndex>>,
    /// Entries in `index`.
    count: usize,
    /// Writers wait for these holds instead of breaking them
    /// (`policy=block`): only while every splice that took or joined one
    /// may write the file itself.
    block: bool,
    /// When a splice last took or joined one (ns), for the debugfs report.
    used: u64,
    /// Where writers find the file without a lock ([`HeldFiles`]): taken
    /// when the entry goes into its bucket, given back when it leaves.
    slot: Slot,
    /// Holds keep the module: unloading it would let writers change held
    /// folios in place under whoever still reads them (a pipe, an skb).
    /// Stable pipe buffers themselves run only core kernel code.
    _module: ModuleRef,
}

impl FileHolds {
    fn new(pinned: Pinned<'_>) -> Result<Self> {
        Ok(Self {
            index: KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?,
            count: 0,
            block: false,
            used: 0,
            slot: Slot::Out,
            _module: ModuleRef::another(pinned),
        })
    }

    /// Marks the holds as used `now` by a splice that may (`block`) or
    /// may not write the file itself.
    fn mark_used(&mut self, now: u64, block: bool) {
        self.block &= block;
        self.used = now;
    }
}

/// A file's registry entry allocated ahead, outside every lock, for the
/// first hold on a file.
pub(crate) struct Spare(Option<(RBTreeNodeReservation<usize, FileHolds>, FileHolds)>);

impl Spare {
    pub(crate) fn new() -> Self {
        Self(None)
    }

    pub(crate) fn fill(&mut self, pinned: Pinned<'_>) -> Result {
        if self.0.is_none() {
            let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
            self.0 = Some((node, FileHolds::new(pinned)?));
        }
        Ok(())
    }
}

/// The clock of `FileHolds::used`: jiffies. A tick's precision is plenty for a
/// second of idleness, and it costs one load, not a clock read.
fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { b::ss_jiffies_ns() }
}

/// Buffers the fast path (`src/stable_buf.rs`) handles per pass over the
/// registry: its scratch lives on the stack (allocating it per call,
/// growing it push by push, cost a third of a 64 KiB stable splice under
/// the debug kernel).
pub(crate) const CHUNK: usize = b::SS_HOLD_CHUNK as usize;

/// Buckets of the registry (hashed mapping addresses).
const BUCKETS: usize = 64;

fn bucket_of(mapping: *const Mapping) -> usize {
    let a = mapping as usize;
    (a ^ (a >> 12) ^ (a >> 24)) / 64 % BUCKETS
}

/// What one bucket's lock protects.
struct Bucket {
    /// Files with holds, by mapping address.
    files: RBTree<usize, FileHolds>,
    /// Size changes and fallocate calls in progress on mappings that hash
    /// here: no new holds until they are done.
    fences: u32,
}

impl Bucket {
    /// Ends the hold at `index` of `mapping` if it is on `folio`; takes the
    /// file's entry out with its last hold, to be dropped by the caller,
    /// best after the lock.
    fn remove_hold(
        &mut self,
        mapping: usize,
        index: usize,
        folio: *mut RawFolio,
        count: &HoldCount,
        table: &HeldFiles,
    ) -> Option<FileHolds> {
        let file = self.files.get_mut(&mapping)?;
        if file.index.get(index) != folio {
            return None;
        }
        if file.index.remove(index) {
            file.count -= 1;
            count.fetch_sub(1, Relaxed);
            COUNTERS.holds_active.sub(1);
        }
        if file.count == 0 { self.remove_file(mapping, table) } else { None }
    }

    /// Takes the registry entry of `mapping` out, and the file out of
    /// `table`.
    fn remove_file(&mut self, mapping: usize, table: &HeldFiles) -> Option<FileHolds> {
        let file = self.files.remove(&mapping)?;
        table.remove(file.slot);
        Some(file)
    }
}

/// All holds.
///
/// Lock order: pipe -> folio -> bucket (a spinlock; nothing sleeps under
/// it). Breaks copy and replace under the folio lock only.
pub(crate) struct Holds {
    buckets: KVec<Pin<KBox<SpinLock<Bucket>>>>,
    /// Holds (entries) per bucket: the walks skip buckets without any.
    counts: [HoldCount; BUCKETS],
    /// The files with holds: writers of the others skip the lock.
    table: HeldFiles,
    policy: Policy,
    /// Gives the entries' memory back under pressure; unregistered first
    /// when the registry goes.
    shrinker: Option<reap::Shrinker>,
}

static HOLDS: Global<Holds> = Global::new();

/// The registry while the module is loaded.
pub(crate) fn holds() -> Option<&'static Holds> {
    HOLDS.get()
}

/// Publishes `holds` to the stable buffers and the writer hooks.
///
/// # Safety
///
/// As for [`Global::publish`].
pub(crate) unsafe fn publish(holds: &Holds) {
    // SAFETY: per the caller.
    unsafe { HOLDS.publish(holds) };
}

/// Stops publishing (the shrinker then finds no registry).
pub(crate) fn unpublish() {
    HOLDS.unpublish();
}

/// Whether a locked, held folio has no reader left: only the page cache,
/// its mappings, private data and `extra` known references (a hold owns
/// none).
fn ended(folio: &FolioLock<'_>, extra: i32) -> bool {
    folio.extra_refs() <= extra
}

impl Holds {
    pub(crate) fn new(policy: Policy) -> Result<Self> {
        let mut buckets = KVec::with_capacity(BUCKETS, GFP_KERNEL)?;
        for _ in 0..BUCKETS {
            let bucket = Bucket { files: RBTree::new(), fences: 0 };
            buckets.push(KBox::pin_init(new_spinlock!(bucket, "stable_splice:holds"), GFP_KERNEL)?, GFP_KERNEL)?;
        }
        Ok(Self {
            buckets,
            counts: [const { HoldCount::new(0) }; BUCKETS],
            table: HeldFiles::new()?,
            policy,
            shrinker: Some(reap::Shrinker::register()?),
        })
    }

    fn bucket(&self, mapping: *const Mapping) -> (&SpinLock<Bucket>, &HoldCount) {
        let i = bucket_of(mapping);
        (&self.buckets[i], &self.counts[i])
    }

    /// Whether any folio of `mapping` may be held (cheap, no lock).
    pub(crate) fn may_hold(&self, mapping: *const Mapping) -> bool {
        self.table.may_have(mapping as usize)
    }

    /// [`Holds::may_hold`] for a writer that holds its reference to the
    /// folio it is about to change. A file is entered in the table before
    /// any of its folios' references are checked for a new hold (see
    /// [`Joins::insert_locked`]); with a full barrier on both sides either
    /// the writer finds the file (and breaks the hold under the bucket
    /// lock) or the hold's check sees the writer's reference (and the
    /// splice copies). Counted in `writer_lookups` when it may.
    pub(crate) fn writer_may_hold(&self, mapping: *const Mapping) -> bool {
        smp_mb(Full);
        let may = self.may_hold(mapping);
        if may {
            COUNTERS.writer_lookups.add(1);
        }
        may
    }

    /// Ends every hold of `mapping`, whose inode is being evicted: its
    /// folios are out of the page cache (the pipes keep theirs), and its
    /// address may be another file's next.
    pub(crate) fn forget_file(&self, mapping: *const Mapping) {
        let (bucket, count) = self.bucket(mapping);
        let gone = bucket.lock().remove_file(mapping as usize, &self.table);
        if let Some(file) = gone {
            count.fetch_sub(file.count as i32, Relaxed);
            COUNTERS.holds_active.sub(file.count as i64);
            COUNTERS.holds_evicted.add(file.count as i64);
            drop(file); // its blocks and module reference, outside the lock
        }
    }

    /// Whether holds taken for a splice from `file` make writers wait
    /// (`policy=block` and the splicer may write the file itself).
    pub(crate) fn blocking_for(&self, file: *mut b::file) -> bool {
        // SAFETY: `file` is an open file of the caller's.
        self.policy == Policy::Block && unsafe { b::ss_file_may_write(file) }
    }
}

impl Drop for Holds {
    /// Module unload, after the writer hooks are gone: holds protect
    /// nothing any more. Holds pin the module, so none is left (but after a
    /// failed init).
    fn drop(&mut self) {
        drop(self.shrinker.take());
        for (bucket, count) in self.buckets.iter().zip(self.counts.iter()) {
            let n = count.load(Relaxed);
            let mut b = bucket.lock();
            let files = core::mem::replace(&mut b.files, RBTree::new());
            drop(b);
            drop(files);
            COUNTERS.holds_active.sub(n as i64);
            count.store(0, Relaxed);
        }
    }
}
