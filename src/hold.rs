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
//! Lifetime by references: a hold lasts while anybody besides the page
//! cache, its mappings, the folio's private data and the hold itself
//! references the folio (pipe buffers, tee copies, skbs after full or
//! partial consumption, a consumer in the middle of a copy). Writers check
//! that under the folio lock; a reaper ends holds nobody reads any more.
//! References that are not readers (per-CPU LRU batches) only make a hold
//! last longer than needed, which costs a writer one page copy.
//!
//! Taking a hold: under the folio lock, and only when nothing but the page
//! cache, its mappings and this splice's buffers references the folio.
//! A writer that looked the folio up holds a reference from its lookup
//! until its write ends (also across ext4's unlock and relock in
//! `write_begin`), and its lookup checked for holds under the folio lock:
//! either the writer's check saw the hold, or the hold's check sees the
//! writer's reference and the splice copies instead.
//!
//! Holds are indexed per file: buckets of files by mapping under one
//! spinlock per bucket, and per file an XArray by page index
//! (`src/hold_index.rs`), so the folios of one splice are checked in one
//! walk of adjacent slots, writers of other files never touch the lock, and
//! a size change finds a range without a full scan. What a hold needs
//! besides its folio reference (when a splice last used it, whether writers
//! wait for it, a module reference) is kept once per file.

use crate::{
    bindings as b,
    counters::COUNTERS,
    folio::{FolioLock, FolioRef, LockedFolio, Mapping, RawFolio},
    ftrace::ModuleRef,
    hold_index::HoldIndex,
};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::{
    new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{
        atomic::{Atomic, Relaxed},
        barrier::{smp_mb, Full},
        SpinLock, SpinLockGuard,
    },
};

/// Writer policy on contention, from the `policy` module parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Writers put a copy in the page cache and go on (the default).
    Cow,
    /// Writers wait until the hold ends, for splicers that could write the
    /// file themselves; everybody else still gets `Cow`.
    Block,
}

impl core::fmt::Debug for Policy {
    /// As the parameter spells it (also the debugfs file `policy`).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Cow => "cow",
            Self::Block => "block",
        })
    }
}

impl Policy {
    /// The policy the module was loaded with.
    pub(crate) fn from_param() -> Result<Self> {
        // SAFETY: no preconditions.
        match unsafe { b::ss_policy() } {
            0 => Ok(Self::Cow),
            1 => Ok(Self::Block),
            _ => {
                pr_err!("stable_splice: policy must be \"cow\" or \"block\"\n");
                Err(EINVAL)
            }
        }
    }
}

/// The holds of one file (one mapping).
pub(crate) struct FileHolds {
    /// The held folios, each with the hold's own reference.
    index: Pin<KBox<HoldIndex>>,
    /// Entries in `index`.
    count: usize,
    /// Writers wait for these holds instead of breaking them
    /// (`policy=block`): only while every splice that took or joined one
    /// may write the file itself.
    block: bool,
    /// When a splice last took or joined one (ns): the reaper keeps the
    /// holds of files that are being served again and again (see
    /// `REAP_IDLE_NS`).
    used: u64,
    /// Holds keep the module: unloading it would let writers change held
    /// folios in place under whoever still reads them (a pipe, an skb).
    /// Stable pipe buffers themselves run only core kernel code.
    _module: ModuleRef,
}

impl FileHolds {
    /// # Safety
    ///
    /// The module is pinned while this runs (a redirected call, module
    /// init).
    unsafe fn new() -> Result<Self> {
        Ok(Self {
            index: KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?,
            count: 0,
            block: false,
            used: 0,
            // SAFETY: pinned (caller).
            _module: unsafe { ModuleRef::another() },
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

    /// # Safety
    ///
    /// The module is pinned while this runs.
    pub(crate) unsafe fn fill(&mut self) -> Result {
        if self.0.is_none() {
            let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
            // SAFETY: per the caller.
            self.0 = Some((node, unsafe { FileHolds::new() }?));
        }
        Ok(())
    }
}

/// How long a hold nobody reads stays, if splices keep joining it: taking
/// a hold costs a folio lock, a reference check and a registry insert,
/// joining one a lookup. Until then the folio is pinned in the cache.
const REAP_IDLE_NS: u64 = 1_000_000_000;

/// Holds the reaper walks per hold of a bucket lock.
const REAP_BATCH: usize = 64;

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
pub(crate) const CHUNK: usize = 32;

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
    /// Ends the hold at `index` of `mapping` if it is on `folio`; drops the
    /// file's entry with its last hold. What was taken out is dropped by
    /// the caller, best after the lock.
    fn remove_hold(
        &mut self,
        mapping: usize,
        index: usize,
        folio: *mut RawFolio,
        count: &Atomic<i32>,
    ) -> (Option<FolioRef>, Option<FileHolds>) {
        let Some(file) = self.files.get_mut(&mapping) else {
            return (None, None);
        };
        if file.index.get(index) != folio {
            return (None, None);
        }
        let gone = file.index.remove(index);
        if gone.is_some() {
            file.count -= 1;
            count.add(-1, Relaxed);
            COUNTERS.holds_active.sub(1);
        }
        let empty = file.count == 0;
        (gone, if empty { self.files.remove(&mapping) } else { None })
    }
}

/// How a stable splice gets a buffer of a page-cache folio.
pub(crate) enum Taken {
    /// Held: the buffer keeps the page-cache folio (zero copy).
    Held,
    /// The folio left the page cache already: nobody can write it.
    Orphan,
    /// Somebody else references it (or the file is being truncated): copy.
    Copy,
}

/// What a writer that wants to change a folio of the page cache must do.
pub(crate) enum Break {
    /// Not held (any more): write it in place.
    Free,
    /// A copy took the held folio's place in the page cache: write that.
    Replaced(LockedFolio),
    /// Held and dirty: unlock it, write it back, look it up again.
    WriteBack,
    /// `policy=block`: unlock it, wait a little, look it up again.
    Wait,
    /// Held, and no copy could be made now (the folio could not be
    /// unmapped or its file-system state released, or there was no memory
    /// for the copy): unlock it, wait a little, look it up again, or fail
    /// the write with `ENOMEM` (see [`NOCOPY_ROUNDS`]). Never write it.
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

/// All holds.
///
/// Lock order: pipe -> folio -> bucket (a spinlock; nothing sleeps under
/// it). Breaks copy and replace under the folio lock only.
pub(crate) struct Holds {
    buckets: KVec<Pin<KBox<SpinLock<Bucket>>>>,
    /// Holds per bucket: writers of mappings without holds skip the lock.
    counts: [Atomic<i32>; BUCKETS],
    policy: Policy,
}

static HOLDS: AtomicPtr<Holds> = AtomicPtr::new(core::ptr::null_mut());

/// The registry while the module is loaded.
pub(crate) fn holds() -> Option<&'static Holds> {
    let p = HOLDS.load(Ordering::Acquire);
    // SAFETY: see `publish`.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Publishes `holds` to the stable buffers and the writer hooks.
///
/// # Safety
///
/// `holds` stays valid until [`unpublish`] and until every caller that
/// could have seen it returned (the module's teardown waits for that).
pub(crate) unsafe fn publish(holds: *const Holds) {
    HOLDS.store(holds.cast_mut(), Ordering::Release);
}

/// Stops publishing and waits for the reaper.
pub(crate) fn unpublish() {
    HOLDS.store(core::ptr::null_mut(), Ordering::Release);
    // SAFETY: no preconditions; the reaper finds no registry any more.
    unsafe { b::ss_cancel_reap() };
}

/// The periodic reaper (called from C, a delayed work).
#[no_mangle]
pub(crate) extern "C" fn ss_reap_holds() {
    if let Some(holds) = holds() {
        if holds.reap() > 0 {
            // SAFETY: no preconditions.
            unsafe { b::ss_schedule_reap() };
        }
    }
}

/// Whether a locked, held folio has no reader left: only the page cache,
/// its mappings, private data, the hold and `extra` known references.
fn ended(folio: &FolioLock<'_>, extra: i32) -> bool {
    folio.extra_refs() <= 1 + extra
}

impl Holds {
    pub(crate) fn new(policy: Policy) -> Result<Self> {
        let mut buckets = KVec::with_capacity(BUCKETS, GFP_KERNEL)?;
        for _ in 0..BUCKETS {
            let bucket = Bucket { files: RBTree::new(), fences: 0 };
            buckets.push(KBox::pin_init(new_spinlock!(bucket, "stable_splice:holds"), GFP_KERNEL)?, GFP_KERNEL)?;
        }
        Ok(Self { buckets, counts: [const { Atomic::new(0) }; BUCKETS], policy })
    }

    fn bucket(&self, mapping: *const Mapping) -> (&SpinLock<Bucket>, &Atomic<i32>) {
        let i = bucket_of(mapping);
        (&self.buckets[i], &self.counts[i])
    }

    /// Whether any folio of `mapping` may be held (cheap, no lock).
    pub(crate) fn may_hold(&self, mapping: *const Mapping) -> bool {
        self.bucket(mapping).1.load(Relaxed) != 0
    }

    /// [`Holds::may_hold`] for a writer that holds its reference to the
    /// folio it is about to change. A new hold is counted before its
    /// folio's references are checked (see [`Joins::insert_locked`]); with
    /// a full barrier on both sides either the writer sees the count (and
    /// breaks the hold under the bucket lock) or the hold's check sees the
    /// writer's reference (and the splice copies).
    pub(crate) fn writer_may_hold(&self, mapping: *const Mapping) -> bool {
        smp_mb(Full);
        self.may_hold(mapping)
    }

    /// Whether holds taken for a splice from `file` make writers wait
    /// (`policy=block` and the splicer may write the file itself).
    pub(crate) fn blocking_for(&self, file: *mut b::file) -> bool {
        // SAFETY: `file` is an open file of the caller's.
        self.policy == Policy::Block && unsafe { b::ss_file_may_write(file) }
    }

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
        (bucket.fences == 0).then(|| Joins { bucket, count, mapping: mapping as usize, now: now_ns(), created: false })
    }

    /// The holds of `mapping` under its bucket lock, with its registry
    /// entry in place (taken from `spare`, filled first if need be); None
    /// while the mapping is fenced.
    ///
    /// # Safety
    ///
    /// The module is pinned while this runs.
    pub(crate) unsafe fn lock_mapping_for_new(&self, mapping: *const Mapping, spare: &mut Spare, block: bool) -> Result<Option<Joins<'_>>> {
        let Some(joins) = self.lock_mapping(mapping) else {
            return Ok(None);
        };
        if joins.has_file() {
            return Ok(Some(joins));
        }
        drop(joins);
        // SAFETY: per the caller.
        unsafe { spare.fill() }?;
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
    /// the buffers' references to `folio`, and `file` is the splice's source;
    /// the module is pinned while it runs (a redirected call, module init).
    pub(crate) unsafe fn take(
        &self,
        folio: *mut RawFolio,
        mapping: *mut Mapping,
        file: *mut b::file,
        own: i32,
        spare: &mut Spare,
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
            // SAFETY: pinned (caller).
            unsafe { spare.fill() }?;
        }
        // SAFETY: referenced by the caller's buffers, which outlive the
        // lock. Lock order pipe -> folio, as in filemap_splice_read.
        let locked = unsafe {
            b::ss_folio_lock(folio);
            FolioLock::adopt(folio)
        };
        if locked.mapping() != mapping {
            return Ok(Taken::Orphan); // truncated or broken since splice_read
        }
        // Stores through shared mappings fault from now on; a GUP-fast pin
        // racing with this shows in the count below or backs off.
        locked.write_protect();
        if locked.extra_refs() != own {
            COUNTERS.holds_refused.add(1);
            return Ok(Taken::Copy);
        }
        // A fence that went up since the check above may have done its
        // range break already: then no new hold.
        let Some(mut joins) = self.lock_mapping(mapping) else {
            return Ok(Taken::Copy);
        };
        joins.add_file(spare, block);
        let mut held = [false];
        // SAFETY: locked, in `mapping`, write-protected; pinned (caller).
        unsafe { joins.insert_locked(&[Some(&locked)], &[own], &mut held, block) };
        Ok(if held[0] { Taken::Held } else { Taken::Copy })
    }

    /// A writer holds the lock of `folio`, a folio of `mapping`, and
    /// `extra` references to it, and is about to change it in place.
    /// `may_wait`: `policy=block` holds may ask it to wait.
    pub(crate) fn break_locked(&self, folio: &FolioLock<'_>, mapping: *mut Mapping, extra: i32, may_wait: bool) -> Break {
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
            let gone = b.remove_hold(key, index, folio.as_ptr(), count);
            drop(b);
            drop(gone);
            return Break::Free;
        }
        if block && may_wait {
            return Break::Wait;
        }
        drop(b);
        folio.wait_writeback();
        if folio.is_dirty() {
            // Its buffer heads or iomap state (delalloc reservations,
            // unwritten extents) cannot move to a copy: write it back first.
            return Break::WriteBack;
        }
        let Some(copy) = replace(folio, mapping) else {
            COUNTERS.breaks_retried.add(1);
            return Break::NoCopy;
        };
        let gone = bucket.lock().remove_hold(key, index, folio.as_ptr(), count);
        drop(gone);
        COUNTERS.breaks.add(1);
        COUNTERS.snapshot_bytes.add(folio.size());
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
    /// if a held folio could not be copied after [`NOCOPY_ROUNDS`] tries:
    /// the caller must then not change the range (that folio is still in
    /// the page cache and still held).
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
                b.files.get(&(mapping as usize)).and_then(|file| file.index.next(from, last)).map(|(index, folio)| {
                    // SAFETY: the hold's reference keeps the folio alive.
                    (index, unsafe { FolioRef::get(folio) })
                })
            };
            let Some((index, folio)) = next else {
                return Ok(());
            };
            if index.saturating_add(folio.nr_pages() - 1) < first {
                from = index + 1; // ends before the range
                continue;
            }
            let (mut writebacks, mut nocopies) = (0, 0);
            loop {
                let locked = folio.lock();
                match self.break_locked(&locked, mapping, 1, false) {
                    // SAFETY: no preconditions.
                    Break::WriteBack if writebacks == 4 || unsafe { b::ss_in_fs_transaction() } => {
                        COUNTERS.break_failures.add(1);
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

    /// Ends the holds nobody reads any more; returns how many remain.
    ///
    /// Only the holds of idle files (no splice took or joined one for
    /// [`REAP_IDLE_NS`]) are looked at closely (folio trylock, references);
    /// a hold on a folio that left the page cache waits for that too, then
    /// goes. The bucket lock is dropped every [`REAP_BATCH`] holds:
    /// splicers of a large file must not spin while the reaper walks all
    /// of its holds.
    fn reap(&self) -> usize {
        let mut left = 0;
        let now = now_ns();
        for (bucket, count) in self.buckets.iter().zip(self.counts.iter()) {
            // Where to go on after the lock was dropped: (mapping, index).
            let mut resume = (0usize, 0usize);
            loop {
                if count.load(Relaxed) == 0 {
                    break;
                }
                let mut b = bucket.lock();
                let mut seen = 0;
                let mut paused = false;
                let mut cursor = b.files.cursor_lower_bound_mut(&resume.0);
                while let Some(mut c) = cursor {
                    let (&mapping, file) = c.current_mut();
                    let mut from = if mapping == resume.0 { resume.1 } else { 0 };
                    if now.saturating_sub(file.used) <= REAP_IDLE_NS {
                        left += file.count;
                        cursor = c.move_next();
                        continue;
                    }
                    // The file's holds a batch at a time: one walk to
                    // gather them, one lock of the index to erase the ended.
                    loop {
                        let budget = REAP_BATCH - seen;
                        if budget == 0 {
                            // A file whose last holds the batch just ended
                            // goes now, below: after the pause its bucket
                            // may count no holds and never be walked again,
                            // and the empty entry would keep the module.
                            if file.count > 0 {
                                resume = (mapping, from);
                                paused = true;
                            }
                            break;
                        }
                        let (mut indices, mut folios) = ([0usize; REAP_BATCH], [core::ptr::null_mut(); REAP_BATCH]);
                        let n = file.index.gather(from, &mut indices[..budget], &mut folios[..budget]);
                        seen += n;
                        // Which have ended (folio lock free, nobody reads it,
                        // or it left the page cache), in one C call.
                        let mut erase = [false; REAP_BATCH];
                        // SAFETY: each entry's reference keeps its folio
                        // alive while the bucket lock keeps the entry; the
                        // arrays hold `n` elements.
                        unsafe { b::ss_holds_ended(folios.as_ptr(), n as u32, mapping as *mut Mapping, erase.as_mut_ptr()) };
                        let mut gone = [const { None }; REAP_BATCH];
                        let removed = file.index.remove_all(&indices[..n], &folios[..n], &mut erase[..n], &mut gone[..n]);
                        file.count -= removed;
                        count.add(-(removed as i32), Relaxed);
                        COUNTERS.holds_active.sub(removed as i64);
                        left += n - removed;
                        drop(gone); // folio_put: fine under a spinlock
                        if n < budget || indices[n - 1] == usize::MAX {
                            break; // the file's last hold
                        }
                        from = indices[n - 1] + 1;
                    }
                    if paused {
                        break;
                    }
                    cursor = if file.count == 0 {
                        let (next, node) = c.remove_current();
                        drop(node); // an empty entry: its module reference
                        next
                    } else {
                        c.move_next()
                    };
                }
                drop(b);
                if !paused {
                    break;
                }
            }
        }
        left
    }
}

impl Drop for Holds {
    /// Module unload, after the writer hooks are gone: holds protect
    /// nothing any more. Holds pin the module, so none is left (but after a
    /// failed init).
    fn drop(&mut self) {
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

/// The holds of one mapping, locked (see [`Holds::joins`]).
pub(crate) struct Joins<'a> {
    bucket: SpinLockGuard<'a, Bucket>,
    count: &'a Atomic<i32>,
    mapping: usize,
    now: u64,
    /// New holds were taken: the reaper must run (queued once, on drop).
    created: bool,
}

impl Drop for Joins<'_> {
    fn drop(&mut self) {
        // An entry put in place for new holds that were not taken after
        // all: nothing else would end it (the reaper skips buckets without
        // holds), and it keeps the module.
        if self.file().is_some_and(|f| f.count == 0) {
            drop(self.bucket.files.remove(&self.mapping));
        }
        if self.created {
            // SAFETY: no preconditions; queueing work is fine under a spinlock.
            unsafe { b::ss_schedule_reap() };
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
            self.bucket.files.insert(node.into_node(self.mapping, file));
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
        // SAFETY: referenced by the caller's buffers.
        let index = unsafe { b::ss_folio_index(folio) } as usize;
        let now = self.now;
        let Some(file) = self.file() else {
            return false;
        };
        let held = file.index.get(index) == folio;
        if held {
            file.mark_used(now, block);
        }
        held
    }

    /// [`Joins::held`] for many folios at once: `held[i]` is set where
    /// `folios[i]`, at page index `indices[i]`, is held. Ascending indices
    /// (a splice's buffers are) make it one walk of the index.
    ///
    /// # Safety
    ///
    /// The caller's buffers reference every folio.
    pub(crate) unsafe fn held_all(&mut self, indices: &[usize], folios: &[*mut RawFolio], held: &mut [bool], block: bool) {
        let now = self.now;
        let Some(file) = self.file() else {
            return;
        };
        if file.index.matches(indices, folios, held) > 0 {
            file.mark_used(now, block);
        }
    }

    /// How many of the `n` new buffers of a stable splice from slot `from`
    /// of a locked pipe's ring (`bufs`, `mask`), in a row, are on held
    /// folios: they share those holds (see [`Joins::held`] for why no folio
    /// lock is needed).
    ///
    /// # Safety
    ///
    /// The caller holds the pipe lock; the `n` slots from `from` are
    /// occupied and referenced by the caller's buffers.
    pub(crate) unsafe fn held_prefix(&mut self, bufs: *const b::pipe_buffer, mask: u32, from: u32, n: u32, block: bool) -> u32 {
        let now = self.now;
        let Some(file) = self.file() else {
            return 0;
        };
        // SAFETY: per the caller.
        let held = unsafe { file.index.held_prefix(bufs, mask, from, n) };
        if held > 0 {
            file.mark_used(now, block);
        }
        held
    }

    /// Takes new holds on the folios without `held[i]` (`runs[i].1` buffers
    /// of this splice, the run from slot `runs[i].0`, reference
    /// `folios[i]`) without sleeping, as [`Holds::take`] does: on each folio
    /// whose lock is free right now, that is in this mapping and not mapped
    /// (write-protecting sleeps), then [`Joins::insert_locked`] for all of
    /// them at once. Sets `held[i]` for the new holds; the others take the
    /// slow path. The caller found the held ones under this same lock
    /// ([`Joins::held_all`]): no other splice can have held one since.
    ///
    /// # Safety
    ///
    /// The caller holds the pipe lock and the buffers' references to the
    /// folios; the module is pinned while this runs.
    pub(crate) unsafe fn create_all(&mut self, folios: &[*mut RawFolio], runs: &[(u32, u32)], held: &mut [bool], block: bool) {
        let n = folios.len().min(runs.len()).min(held.len()).min(CHUNK);
        let mut owns = [0i32; CHUNK];
        for (own, run) in owns.iter_mut().zip(&runs[..n]) {
            *own = run.1 as i32;
        }
        // The candidates' locks and checks in one C call.
        let mut locked = [false; CHUNK];
        // SAFETY: the caller's buffers reference the folios; the arrays
        // hold `n` elements.
        unsafe {
            b::ss_folios_trylock_unshared(
                folios.as_ptr(),
                owns.as_ptr(),
                held.as_ptr(),
                n as u32,
                self.mapping as *mut Mapping,
                locked.as_mut_ptr(),
            )
        };
        let locks: [Option<FolioLock<'_>>; CHUNK] = core::array::from_fn(|i| {
            // SAFETY: locked by the call above; the buffers' references
            // outlive this.
            (i < n && locked[i]).then(|| unsafe { FolioLock::adopt(folios[i]) })
        });
        let locks: [Option<&FolioLock<'_>>; CHUNK] = core::array::from_fn(|i| locks[i].as_ref());
        // SAFETY: locked, in this mapping, not mapped; pinned (caller).
        unsafe { self.insert_locked(&locks[..n], &owns[..n], held, block) };
    }

    /// Registers new holds on the `Some` folios of `locks`, each if nothing
    /// but the page cache, its mappings, private data and `owns[i]` buffers
    /// of this splice reference it, and sets `held[i]` for those; replaces
    /// stale entries of folios that left the cache at those indices. The
    /// others are copied instead: somebody else references them, or the
    /// mapping has no registry entry, or the index no memory.
    ///
    /// The holds are counted in the bucket *before* the references are
    /// checked, with a full barrier between: a writer takes its folio
    /// reference before it asks [`Holds::writer_may_hold`], so either this
    /// check sees the writer's reference, or the writer sees the count and
    /// waits for this bucket lock, after which it finds the hold. Checking
    /// first and counting after would let both miss each other. The index
    /// entries are stored under one lock of the index.
    ///
    /// # Safety
    ///
    /// Every `Some` folio is locked, in this mapping, and
    /// write-protected or not mapped; the module is pinned while this runs.
    unsafe fn insert_locked(&mut self, locks: &[Option<&FolioLock<'_>>], owns: &[i32], held: &mut [bool], block: bool) {
        let n = locks.len().min(owns.len()).min(held.len()).min(CHUNK);
        let k = locks[..n].iter().flatten().count() as i32;
        if k == 0 {
            return;
        }
        let count = self.count;
        count.add(k, Relaxed);
        smp_mb(Full);
        let (mut indices, mut refs, mut slots, mut m) = ([0usize; CHUNK], [core::ptr::null_mut(); CHUNK], [0usize; CHUNK], 0);
        for (i, locked) in locks[..n].iter().enumerate() {
            let Some(locked) = locked else { continue };
            if locked.extra_refs() != owns[i] {
                COUNTERS.holds_refused.add(1);
                continue;
            }
            // SAFETY: locked, hence alive; the entry will own it.
            refs[m] = unsafe { FolioRef::get(locked.as_ptr()) }.into_raw();
            indices[m] = locked.index();
            slots[m] = i;
            m += 1;
        }
        let now = self.now;
        let mut olds = [core::ptr::null_mut(); CHUNK];
        let (stored, fresh) = match self.file() {
            None => (0, 0),
            Some(file) => {
                // SAFETY: each of `refs` carries the reference its entry owns.
                let stored = unsafe { file.index.insert_all(&indices[..m], &refs[..m], &mut olds[..m]) };
                let fresh = olds[..stored].iter().filter(|o| o.is_null()).count();
                if stored > 0 {
                    file.count += fresh;
                    file.mark_used(now, block);
                }
                (stored, fresh)
            }
        };
        for &r in &refs[stored..m] {
            // SAFETY: not stored: the reference is still ours.
            drop(unsafe { FolioRef::adopt(r) });
        }
        for &o in olds[..stored].iter().filter(|o| !o.is_null()) {
            // SAFETY: a replaced (stale) entry's reference is ours now.
            drop(unsafe { FolioRef::adopt(o) }); // folio_put: fine under a spinlock
        }
        for &i in &slots[..stored] {
            held[i] = true;
        }
        // Only the new entries stay counted.
        count.add(fresh as i32 - k, Relaxed);
        if stored > 0 {
            COUNTERS.holds_active.add(fresh as i64);
            COUNTERS.holds_taken.add(stored as i64);
            self.created = true;
        }
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

/// Puts a copy of locked, clean `folio` into the page cache of `mapping` in
/// its place; returns the copy, locked and referenced. The pipe's
/// references keep the old folio, out of the page cache, unchanged.
fn replace(folio: &FolioLock<'_>, mapping: *mut Mapping) -> Option<LockedFolio> {
    let old = folio.as_ptr();
    // SAFETY: locked, clean and not under writeback; these are the steps
    // FUSE takes before replace_page_cache_folio(): not mapped (faults map
    // a folio only under its lock, which we hold), no private data, then
    // the swap of the page-cache slot, then the LRU.
    unsafe {
        if !b::ss_folio_unmap(mapping, old) || !b::ss_folio_release_private(old) {
            return None;
        }
        let new = b::ss_folio_copy_new(mapping, old);
        if new.is_null() {
            return None;
        }
        b::ss_folio_replace(old, new);
        Some(LockedFolio::adopt(new))
    }
}

/// Writes folio `index` of `mapping` back and waits for it.
///
/// # Safety
///
/// `mapping` is alive; no folio lock or journal handle is held.
pub(crate) unsafe fn write_back(mapping: *mut Mapping, index: usize) {
    let first = index as i64 * b::SS_PAGE_SIZE;
    COUNTERS.breaks_written_back.add(1);
    // SAFETY: per the caller.
    let _ = unsafe { b::filemap_write_and_wait_range(mapping, first, first + b::SS_PAGE_SIZE - 1) };
}
