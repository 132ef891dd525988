// SPDX-License-Identifier: GPL-2.0

//! Holds: zero-copy stable buffers on page-cache folios.
//!
//! A stable splice from ext4 or xfs leaves the page-cache folio itself in
//! the pipe and registers a [`Hold`] on it. From then on nobody may change
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
//! Holds are indexed per mapping (buckets by mapping, keyed by mapping and
//! page index under one spinlock per bucket): writers of other files never
//! touch the lock, and a size change finds a range without a full scan.

use crate::{
    bindings as b,
    counters::COUNTERS,
    folio::{FolioLock, FolioRef, LockedFolio, Mapping, RawFolio},
    ftrace::ModuleRef,
};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::{
    new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{
        atomic::{Atomic, Relaxed},
        SpinLock,
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

/// One held folio.
pub(crate) struct Hold {
    /// The hold's own reference.
    folio: FolioRef,
    /// Writers wait for this hold instead of breaking it (`policy=block`).
    block: bool,
    /// When a splice last took or joined it (ns): the reaper keeps holds
    /// of files that are being served again and again (see `REAP_IDLE_NS`).
    used: u64,
    /// A hold keeps the module: unloading it would let writers change the
    /// folio in place under whoever still reads it (a pipe, an skb). Stable
    /// pipe buffers themselves run only core kernel code.
    _module: ModuleRef,
}

/// Key of a hold: the mapping's address and the folio's page index.
type Key = (usize, usize);

/// A registry node allocated ahead, outside every lock, for one new hold.
pub(crate) struct Spare(Option<RBTreeNodeReservation<Key, Hold>>);

impl Spare {
    pub(crate) fn new() -> Self {
        Self(None)
    }

    fn fill(&mut self) -> Result {
        if self.0.is_none() {
            self.0 = Some(RBTreeNodeReservation::new(GFP_KERNEL)?);
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

/// The clock of `Hold::used`: jiffies. A tick's precision is plenty for a
/// second of idleness, and it costs one load, not a clock read.
fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { b::ss_jiffies_ns() }
}

/// A registry node allocated ahead, outside every lock.
pub(crate) type Reservation = RBTreeNodeReservation<Key, Hold>;

/// Buckets of the registry (hashed mapping addresses).
const BUCKETS: usize = 64;

fn bucket_of(mapping: *const Mapping) -> usize {
    let a = mapping as usize;
    (a ^ (a >> 12) ^ (a >> 24)) / 64 % BUCKETS
}

/// What one bucket's lock protects.
struct Bucket {
    holds: RBTree<Key, Hold>,
    /// Size changes and fallocate calls in progress on mappings that hash
    /// here: no new holds until they are done.
    fences: u32,
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
            let bucket = Bucket { holds: RBTree::new(), fences: 0 };
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

    /// Holds `folio` of `mapping`, which `own` new pipe buffers of a stable
    /// splice from `file` reference, if nobody else does. `spare` must be
    /// filled; a new hold uses it up.
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
        if self.may_hold(mapping) {
            let Some(mut joins) = self.lock_mapping(mapping) else {
                return Ok(Taken::Copy); // fenced
            };
            // SAFETY: referenced by the caller's buffers.
            if unsafe { joins.held(folio, block) } {
                return Ok(Taken::Held);
            }
        }
        spare.fill()?;
        // SAFETY: referenced by the caller's buffers, which outlive the
        // lock. Lock order pipe -> folio, as in filemap_splice_read.
        let locked = unsafe {
            b::ss_folio_lock(folio);
            FolioLock::adopt(folio)
        };
        if locked.mapping() != mapping {
            return Ok(Taken::Orphan); // truncated or broken since splice_read
        }
        if locked.is_large() {
            // replace_page_cache_folio() moves one page-cache slot: a break
            // could not replace it. Large folios are copied instead.
            return Ok(Taken::Copy);
        }
        // Stores through shared mappings fault from now on; a GUP-fast pin
        // racing with this shows in the count below or backs off.
        locked.write_protect();
        if locked.extra_refs() != own {
            COUNTERS.holds_refused.add(1);
            return Ok(Taken::Copy);
        }
        let Some(reservation) = spare.0.take() else {
            return Err(ENOMEM); // filled above
        };
        // A fence that went up since the check above may have done its
        // range break already: then no new hold.
        let Some(mut joins) = self.lock_mapping(mapping) else {
            return Ok(Taken::Copy);
        };
        // SAFETY: the module is pinned by the caller.
        unsafe { joins.insert(&locked, block, reservation) };
        Ok(Taken::Held)
    }

    /// A writer holds the lock of `folio`, a folio of `mapping`, and
    /// `extra` references to it, and is about to change it in place.
    /// `may_wait`: `policy=block` holds may ask it to wait.
    pub(crate) fn break_locked(&self, folio: &FolioLock<'_>, mapping: *mut Mapping, extra: i32, may_wait: bool) -> Break {
        if !self.may_hold(mapping) {
            return Break::Free;
        }
        let key = (mapping as usize, folio.index());
        let (bucket, count) = self.bucket(mapping);
        let mut b = bucket.lock();
        let (same, block) = match b.holds.get(&key) {
            None => return Break::Free,
            Some(h) => (h.folio.as_ptr() == folio.as_ptr(), h.block),
        };
        if !same || folio.mapping() != mapping {
            return Break::Free; // a stale entry of a folio that left the cache
        }
        if ended(folio, extra) {
            let node = b.holds.remove(&key);
            count.add(-1, Relaxed);
            COUNTERS.holds_active.sub(1);
            drop(b);
            drop(node);
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
            COUNTERS.break_failures.add(1);
            return Break::Free;
        };
        let node = {
            let mut b = bucket.lock();
            let node = b.holds.remove(&key);
            if node.is_some() {
                count.add(-1, Relaxed);
                COUNTERS.holds_active.sub(1);
            }
            node
        };
        drop(node);
        COUNTERS.breaks.add(1);
        COUNTERS.snapshot_bytes.add(b::SS_PAGE_SIZE);
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

    /// Breaks every hold on folios `first..=last` of `mapping`.
    ///
    /// # Safety
    ///
    /// The caller keeps `mapping` alive, holds no folio lock, and may sleep
    /// and write back (no journal handle open).
    pub(crate) unsafe fn break_range(&self, mapping: *mut Mapping, first: usize, last: usize) {
        let mut from = first;
        while self.may_hold(mapping) {
            let next = {
                let (bucket, _) = self.bucket(mapping);
                let b = bucket.lock();
                b.holds.cursor_lower_bound(&(mapping as usize, from)).and_then(|c| {
                    let (k, h) = c.current();
                    // SAFETY: the hold's reference keeps the folio alive.
                    (k.0 == mapping as usize && k.1 <= last).then(|| (k.1, unsafe { FolioRef::get(h.folio.as_ptr()) }))
                })
            };
            let Some((index, folio)) = next else {
                return;
            };
            for round in 0..=4 {
                let locked = folio.lock();
                match self.break_locked(&locked, mapping, 1, false) {
                    // SAFETY: no preconditions.
                    Break::WriteBack if round == 4 || unsafe { b::ss_in_fs_transaction() } => {
                        COUNTERS.break_failures.add(1);
                    }
                    Break::WriteBack => {
                        drop(locked);
                        // SAFETY: `mapping` alive, no locks held (caller).
                        unsafe { write_back(mapping, index) };
                        continue;
                    }
                    _ => {}
                }
                break;
            }
            if index == usize::MAX {
                return;
            }
            from = index + 1;
        }
    }

    /// Ends the holds nobody reads any more; returns how many remain.
    ///
    /// Only idle holds (not joined for [`REAP_IDLE_NS`]) are looked at
    /// closely (folio trylock, references); a hold on a folio that left the
    /// page cache waits for that too, then goes. The bucket lock is dropped
    /// every [`REAP_BATCH`] holds: splicers of a large file must not spin
    /// while the reaper walks all of its holds.
    fn reap(&self) -> usize {
        let mut left = 0;
        let now = now_ns();
        for (bucket, count) in self.buckets.iter().zip(self.counts.iter()) {
            let mut resume: Option<Key> = None;
            loop {
                if count.load(Relaxed) == 0 {
                    break;
                }
                let mut b = bucket.lock();
                let mut cursor = match &resume {
                    None => b.holds.cursor_front_mut(),
                    Some(k) => b.holds.cursor_lower_bound_mut(k),
                };
                resume = None;
                let mut seen = 0;
                while let Some(c) = cursor {
                    if seen == REAP_BATCH {
                        resume = Some(*c.current().0);
                        break;
                    }
                    seen += 1;
                    let done = {
                        let (k, h) = c.current();
                        let mapping = k.0;
                        if now.saturating_sub(h.used) <= REAP_IDLE_NS {
                            None
                        } else {
                            h.folio.try_lock().map(|l| l.mapping() as usize != mapping || ended(&l, 0))
                        }
                    };
                    if done == Some(true) {
                        let (next, node) = c.remove_current();
                        count.add(-1, Relaxed);
                        COUNTERS.holds_active.sub(1);
                        drop(node); // folio_put: fine under a spinlock
                        cursor = next;
                    } else {
                        left += 1;
                        cursor = c.move_next();
                    }
                }
                drop(b);
                if resume.is_none() {
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
            let tree = core::mem::replace(&mut b.holds, RBTree::new());
            drop(b);
            drop(tree);
            COUNTERS.holds_active.sub(n as i64);
            count.store(0, Relaxed);
        }
    }
}

/// The holds of one mapping, locked (see [`Holds::joins`]).
pub(crate) struct Joins<'a> {
    bucket: kernel::sync::SpinLockGuard<'a, Bucket>,
    count: &'a Atomic<i32>,
    mapping: usize,
    now: u64,
    /// New holds were taken: the reaper must run (queued once, on drop).
    created: bool,
}

impl Drop for Joins<'_> {
    fn drop(&mut self) {
        if self.created {
            // SAFETY: no preconditions; queueing work is fine under a spinlock.
            unsafe { b::ss_schedule_reap() };
        }
    }
}

impl Joins<'_> {
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
        let key = (self.mapping, unsafe { b::ss_folio_index(folio) } as usize);
        match self.bucket.holds.get_mut(&key) {
            Some(h) if h.folio.as_ptr() == folio => {
                h.block &= block;
                h.used = self.now;
                true
            }
            _ => false,
        }
    }

    /// [`Joins::held`] for many folios at once: `folios` are (index, folio,
    /// joined) in increasing index order (a splice's buffers are), found
    /// with one walk of the tree instead of one lookup each.
    ///
    /// # Safety
    ///
    /// The caller's buffers reference every folio.
    pub(crate) unsafe fn held_sorted(&mut self, folios: &mut [(usize, *mut RawFolio, bool)], block: bool) {
        let Some(&(first, _, _)) = folios.first() else {
            return;
        };
        let (mapping, now) = (self.mapping, self.now);
        let mut cursor = self.bucket.holds.cursor_lower_bound_mut(&(mapping, first));
        for item in folios.iter_mut() {
            while let Some(c) = cursor.take() {
                let (k, _) = c.current();
                if *k < (mapping, item.0) {
                    cursor = c.move_next();
                    continue;
                }
                cursor = Some(c);
                break;
            }
            let Some(c) = cursor.as_mut() else {
                return;
            };
            let (k, h) = c.current_mut();
            if *k == (mapping, item.0) && h.folio.as_ptr() == item.1 {
                h.block &= block;
                h.used = now;
                item.2 = true;
            }
        }
    }

    /// Takes a new hold on `folio` without sleeping, as [`Holds::take`]
    /// does: only if its lock is free right now, it is small, in this
    /// mapping, not mapped (write-protecting sleeps) and referenced by
    /// nothing but the page cache and `own` buffers of this splice.
    /// Otherwise gives `reservation` back, and the caller takes the slow
    /// path.
    ///
    /// # Safety
    ///
    /// The caller holds the pipe lock and the buffers' references to
    /// `folio`; the module is pinned while it runs.
    pub(crate) unsafe fn create(
        &mut self,
        folio: *mut RawFolio,
        own: i32,
        block: bool,
        reservation: Reservation,
    ) -> core::result::Result<(), Reservation> {
        // SAFETY: referenced by the caller's buffers.
        if !unsafe { b::ss_folio_trylock(folio) } {
            return Err(reservation);
        }
        // SAFETY: locked just above; the buffers' references outlive this.
        let locked = unsafe { FolioLock::adopt(folio) };
        if locked.mapping() as usize != self.mapping || locked.is_large() || locked.is_mapped() || locked.extra_refs() != own {
            return Err(reservation);
        }
        // SAFETY: the module is pinned (caller).
        unsafe { self.insert(&locked, block, reservation) };
        Ok(())
    }

    /// Registers a new hold on `locked`, which passed the checks of
    /// [`Holds::take`] under its lock; replaces a stale entry of a folio
    /// that left the cache at that index.
    ///
    /// # Safety
    ///
    /// The module is pinned while this runs.
    unsafe fn insert(&mut self, locked: &FolioLock<'_>, block: bool, reservation: Reservation) {
        let key = (self.mapping, locked.index());
        // SAFETY: locked, hence alive.
        let folio = unsafe { FolioRef::get(locked.as_ptr()) };
        // SAFETY: pinned (caller).
        let module = unsafe { ModuleRef::another() };
        let node = reservation.into_node(key, Hold { folio, block, used: self.now, _module: module });
        if self.bucket.holds.insert(node).is_none() {
            self.count.add(1, Relaxed);
            COUNTERS.holds_active.add(1);
        }
        COUNTERS.holds_taken.add(1);
        self.created = true;
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
