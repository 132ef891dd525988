// SPDX-License-Identifier: GPL-2.0

//! Holds: zero-copy stable buffers on page-cache folios.
//!
//! A stable splice from ext4 or xfs leaves the page-cache folio itself in
//! the pipe and registers a [`Hold`] on it. From then on the folio must not
//! change while anybody but the page cache can see it. Every in-place writer
//! of those file systems passes one of three choke points first (see
//! `src/writers.rs`): the locked folio lookup of `write_begin` and partial
//! block zeroing, `do_page_mkwrite` for stores through shared mappings, and
//! `truncate_inode_pages_range` for partial truncation and hole punching.
//! There, [`Holds::break_hold`] takes the held folio out of the page cache
//! (writing it back first if it is dirty) before the writer gets it; the
//! writer then works on a fresh folio read from disk, and the old one stays
//! with the pipe, the sockets it went on to and everybody reading it,
//! unchanged. That is copy-on-write without a copy: a writer waits for at
//! most one writeback and one read of the folio, never for the pipe.
//!
//! A hold ends with the last pipe buffer that references it, counted
//! exactly (`buffers`). Except when a buffer went to a socket: splice to
//! TCP keeps page references in skbs until the peer acknowledged the data
//! (and retransmits read the folio again), so such a hold *lingers* until
//! nobody but the page cache and its mappings references the folio; a
//! periodic reaper ([`ss_reap_lingering`]) checks that.
//!
//! With `policy=block`, holds of splicers that may write the file
//! themselves make writers wait until the hold ends instead (killable).

use crate::{bindings as b, counters::COUNTERS};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::{
    new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    sync::{
        atomic::{Atomic, Relaxed},
        SpinLock,
    },
};

type Folio = b::folio;
type Mapping = b::address_space;

/// Writer policy on contention, from the `policy` module parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Writers evict the held folio and go on (the default).
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
struct Hold {
    /// The folio; the hold owns one reference.
    folio: *mut Folio,
    /// The mapping the folio was held in, for the per-mapping filter.
    mapping: usize,
    /// Writers wait for this hold instead of evicting the folio.
    block: bool,
    /// Pipe buffers (ours) that reference the folio.
    buffers: u32,
    /// A buffer went to a socket, which may still reference the folio.
    socket: bool,
}

impl Hold {
    /// A hold on `folio` with a reference of its own, for one buffer.
    ///
    /// # Safety
    ///
    /// The caller holds a reference to `folio`.
    unsafe fn new(folio: *mut Folio, mapping: *mut Mapping, block: bool) -> Result<Node> {
        let hold = Self { folio, mapping: mapping as usize, block, buffers: 1, socket: false };
        // SAFETY: the caller's reference keeps the folio alive meanwhile.
        let pfn = unsafe { b::ss_folio_pfn(folio) } as usize;
        let node = RBTreeNode::new(pfn, hold, GFP_KERNEL);
        if node.is_ok() {
            // SAFETY: as above; owned by the hold from here on.
            unsafe { b::ss_folio_get(folio) };
        }
        node
    }

    /// Whether the hold can end: no buffer of ours, and no socket or other
    /// party that got the folio through one (`extra`: references of the
    /// caller, which are not readers).
    fn ended(&self, extra: i32) -> bool {
        // SAFETY: the hold owns a reference to its folio.
        self.buffers == 0 && (!self.socket || unsafe { b::ss_folio_unshared(self.folio, extra) })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // SAFETY: the reference `Hold::new` took; never under the registry
        // lock (see `Holds::release`).
        unsafe { b::ss_folio_put(self.folio) };
    }
}

// SAFETY: `folio` is a counted reference, usable from any task.
unsafe impl Send for Hold {}

type Node = RBTreeNode<usize, Hold>;

/// Buckets of the per-mapping counters (hashed mapping addresses).
const BUCKETS: usize = 64;

fn bucket(mapping: *const Mapping) -> usize {
    let a = mapping as usize;
    (a ^ (a >> 12) ^ (a >> 24)) / 64 % BUCKETS
}

/// What happened to a held folio a writer wanted.
enum Outcome {
    /// Out of the page cache: the pipe keeps it, the writer gets another.
    Evicted,
    /// Somebody else already took it out of `mapping` (truncate, reclaim).
    Gone,
    /// Still in the page cache (raced with a writer of the mapping).
    Busy,
}

/// What the registry lock protects.
struct Registry {
    /// All holds, by the folio's page frame number.
    by_pfn: RBTree<usize, Hold>,
    /// Partial truncations in progress per mapping bucket: no new holds
    /// there until they are done.
    truncating: [u32; BUCKETS],
}

/// All holds.
///
/// Lock order: pipe -> folio -> registry (a spinlock; nothing allocates or
/// sleeps under it). Eviction runs without it, so writers never wait on
/// it for I/O.
///
/// Dropping it (module unload, after the writer hooks are gone) ends every
/// hold: lingering ones, which only sockets still reference, protect
/// nothing without the hooks. Pipe buffers pin the module, so none is left.
#[pin_data]
pub(crate) struct Holds {
    #[pin]
    registry: SpinLock<Registry>,
    /// Holds per mapping bucket: writers of other files skip the lookup.
    per_mapping: [Atomic<i32>; BUCKETS],
    policy: Policy,
}

static HOLDS: AtomicPtr<Holds> = AtomicPtr::new(core::ptr::null_mut());

/// The registry while the module is loaded.
pub(crate) fn holds() -> Option<&'static Holds> {
    let p = HOLDS.load(Ordering::Acquire);
    // SAFETY: see `publish`.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Publishes `holds` to the pipe buffer operations and the writer hooks.
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

/// The periodic reaper of lingering holds (called from C, a delayed work).
#[no_mangle]
pub(crate) extern "C" fn ss_reap_lingering() {
    if let Some(holds) = holds() {
        if holds.reap_lingering() > 0 {
            // SAFETY: no preconditions.
            unsafe { b::ss_schedule_reap() };
        }
    }
}

impl Holds {
    pub(crate) fn new(policy: Policy) -> impl PinInit<Self> {
        pin_init!(Self {
            registry <- new_spinlock!(
                Registry { by_pfn: RBTree::new(), truncating: [0; BUCKETS] },
                "stable_splice:holds"
            ),
            per_mapping: [const { Atomic::new(0) }; BUCKETS],
            policy,
        })
    }

    /// Holds `folio`, which a new pipe buffer of a stable splice from `file`
    /// references, in the page cache of `mapping`. `Ok(true)`: the buffer
    /// may keep pointing at the folio (and counts as one of the hold's);
    /// `Ok(false)`: copy it instead.
    ///
    /// # Safety
    ///
    /// The caller holds a reference to `folio` and the pipe lock (so no
    /// consumer can see the buffer yet); `file` is the splice's source.
    pub(crate) unsafe fn hold(
        &self,
        folio: *mut Folio,
        mapping: *mut Mapping,
        file: *mut b::file,
    ) -> Result<bool> {
        // SAFETY: `folio` is referenced by the caller.
        if unsafe { b::ss_folio_maybe_pinned(folio) } {
            // A DMA pin (O_DIRECT read into a mapping of this file) may
            // still write the folio behind every hook.
            return Ok(false);
        }
        // SAFETY: `file` is the open source file.
        let block = self.policy == Policy::Block && unsafe { b::ss_file_may_write(file) };
        // SAFETY: the caller references `folio`.
        let node = unsafe { Hold::new(folio, mapping, block) }?;
        // SAFETY: lock order pipe -> folio, as in filemap_splice_read.
        unsafe { b::ss_folio_lock(folio) };
        let (held, unused) = self.insert_locked(folio, mapping, block, node);
        if held && unused.is_none() {
            // SAFETY: folio locked and newly held: stores through shared
            // mappings now fault into do_page_mkwrite first.
            unsafe { b::ss_folio_write_protect(folio) };
        }
        // SAFETY: locked above.
        unsafe { b::folio_unlock(folio) };
        drop(unused); // puts its folio reference: not under the folio lock
        Ok(held)
    }

    /// The registry part of [`Holds::hold`], folio locked: whether the
    /// folio is held, and `node` back if it was not used.
    fn insert_locked(
        &self,
        folio: *mut Folio,
        mapping: *mut Mapping,
        block: bool,
        node: Node,
    ) -> (bool, Option<Node>) {
        // SAFETY: `folio` is referenced; `mapping` is stable while it is locked.
        if unsafe { b::ss_folio_mapping(folio) } != mapping {
            return (false, Some(node)); // truncated or evicted since splice_read
        }
        let bkt = bucket(mapping);
        // SAFETY: as above.
        let pfn = unsafe { b::ss_folio_pfn(folio) } as usize;
        let mut reg = self.registry.lock();
        if reg.truncating[bkt] > 0 {
            return (false, Some(node));
        }
        if let Some(old) = reg.by_pfn.get_mut(&pfn) {
            old.buffers += 1;
            // A hold everybody may break stays breakable.
            old.block &= block;
            return (true, Some(node));
        }
        reg.by_pfn.insert(node);
        self.per_mapping[bkt].add(1, Relaxed);
        COUNTERS.holds_active.add(1);
        (true, None)
    }

    /// Whether `folio` of `mapping` is held.
    ///
    /// # Safety
    ///
    /// The caller holds a reference to `folio`.
    pub(crate) unsafe fn is_held(&self, mapping: *const Mapping, folio: *mut Folio) -> bool {
        if self.per_mapping[bucket(mapping)].load(Relaxed) == 0 {
            return false;
        }
        // SAFETY: `folio` is referenced.
        let pfn = unsafe { b::ss_folio_pfn(folio) } as usize;
        self.registry.lock().by_pfn.get(&pfn).is_some()
    }

    /// A held buffer on the folio at `pfn` was duplicated (tee).
    pub(crate) fn buffer_added(&self, pfn: usize) {
        if let Some(h) = self.registry.lock().by_pfn.get_mut(&pfn) {
            h.buffers += 1;
        }
    }

    /// A held buffer on the folio at `pfn` went away; `to_socket` if a
    /// socket took it (and may keep referencing the folio).
    pub(crate) fn buffer_released(&self, pfn: usize, to_socket: bool) {
        let mut reg = self.registry.lock();
        let Some(h) = reg.by_pfn.get_mut(&pfn) else {
            return; // already evicted by a writer
        };
        h.buffers = h.buffers.saturating_sub(1);
        if to_socket && !h.socket {
            h.socket = true;
            COUNTERS.holds_lingering.add(1);
        }
        let (ended, lingering) = (h.ended(0), h.buffers == 0 && h.socket);
        if ended {
            let node = reg.by_pfn.remove_node(&pfn);
            drop(reg);
            self.release(node);
        } else if lingering {
            drop(reg);
            // SAFETY: no preconditions.
            unsafe { b::ss_schedule_reap() };
        }
    }

    /// Ends the hold on the folio at `pfn` if it has ended (see
    /// [`Hold::ended`]). Returns whether the folio is not held (any more).
    fn reap(&self, pfn: usize, extra: i32) -> bool {
        let mut reg = self.registry.lock();
        match reg.by_pfn.get(&pfn) {
            None => true,
            Some(h) if h.ended(extra) => {
                let node = reg.by_pfn.remove_node(&pfn);
                drop(reg);
                self.release(node);
                true
            }
            Some(_) => false,
        }
    }

    /// Ends the lingering holds whose folios only the page cache still
    /// references; returns how many still linger.
    fn reap_lingering(&self) -> usize {
        let mut left = 0;
        let mut from = 0usize;
        loop {
            let mut reg = self.registry.lock();
            let mut next = None;
            for (pfn, h) in reg.by_pfn.iter().filter(|(pfn, _)| **pfn >= from) {
                if h.buffers == 0 && h.socket {
                    if h.ended(0) {
                        next = Some(*pfn);
                        break;
                    }
                    left += 1;
                }
            }
            let Some(pfn) = next else {
                return left;
            };
            let node = reg.by_pfn.remove_node(&pfn);
            drop(reg);
            self.release(node);
            from = pfn + 1;
        }
    }

    /// Ends the hold at `pfn` whatever references remain (the folio left
    /// the page cache, so no writer can reach it).
    fn forget(&self, pfn: usize) {
        let node = self.registry.lock().by_pfn.remove_node(&pfn);
        self.release(node);
    }

    fn release(&self, node: Option<Node>) {
        let Some(node) = node else {
            return;
        };
        let (_, hold) = node.to_key_value();
        self.per_mapping[bucket(hold.mapping as *const Mapping)].add(-1, Relaxed);
        COUNTERS.holds_active.sub(1);
        if hold.socket && hold.buffers == 0 {
            COUNTERS.holds_lingering.sub(1);
        }
        drop(hold); // registry lock not held
    }

    fn blocks(&self, pfn: usize) -> bool {
        self.registry.lock().by_pfn.get(&pfn).is_some_and(|h| h.block)
    }

    /// A writer is about to change `folio` of `mapping` in place. Returns
    /// once the folio is not held: the hold ended, or the folio left the
    /// page cache (the writer must look it up again). Returns `false` if
    /// the folio is still held (eviction kept failing); counted.
    ///
    /// # Safety
    ///
    /// The caller holds `extra` references to `folio` (at least one), no
    /// folio lock, and keeps `mapping` alive (an open file or a mapping).
    pub(crate) unsafe fn break_hold(&self, mapping: *mut Mapping, folio: *mut Folio, extra: i32) -> bool {
        // SAFETY: referenced by the caller.
        let pfn = unsafe { b::ss_folio_pfn(folio) } as usize;
        // SAFETY: no preconditions.
        let start = unsafe { b::ss_ktime_ns() };
        let mut killed = false;
        let mut tries = 0;
        let done = loop {
            if self.reap(pfn, extra) {
                break true;
            }
            if !killed && self.blocks(pfn) {
                // SAFETY: sleeps in task context, no locks of ours held.
                killed = unsafe { b::ss_sleep_killable_ms(5) };
                continue;
            }
            // SAFETY: forwarded from the caller.
            match unsafe { evict(mapping, folio) } {
                Outcome::Evicted => {
                    COUNTERS.breaks.add(1);
                    // SAFETY: referenced.
                    let pages = unsafe { b::ss_folio_nr_pages(folio) } as i64;
                    COUNTERS.snapshot_bytes.add(pages * b::SS_PAGE_SIZE);
                    self.forget(pfn);
                    break true;
                }
                Outcome::Gone => {
                    self.forget(pfn);
                    break true;
                }
                Outcome::Busy => {
                    tries += 1;
                    if tries == 3 {
                        COUNTERS.break_failures.add(1);
                        break false;
                    }
                }
            }
        };
        // SAFETY: no preconditions.
        let waited = (unsafe { b::ss_ktime_ns() } - start) as i64;
        COUNTERS.max_writer_wait_ns.max(waited);
        done
    }

    /// Keeps new holds out of `mapping` while a truncation that may zero a
    /// part of a folio in place runs; see `writers::truncate_inode_pages_range`.
    pub(crate) fn truncation(&self, mapping: *const Mapping) -> Truncation<'_> {
        let bkt = bucket(mapping);
        self.registry.lock().truncating[bkt] += 1;
        Truncation { holds: self, bkt }
    }
}

/// A truncation in progress (see [`Holds::truncation`]).
pub(crate) struct Truncation<'a> {
    holds: &'a Holds,
    bkt: usize,
}

impl Drop for Truncation<'_> {
    fn drop(&mut self) {
        self.holds.registry.lock().truncating[self.bkt] -= 1;
    }
}

/// Takes `folio` out of the page cache of `mapping` the way an O_DIRECT
/// write does: write it back if dirty, then invalidate it. The pipe's
/// references keep the folio, unchanged, after it left the cache.
///
/// # Safety
///
/// As for [`Holds::break_hold`].
unsafe fn evict(mapping: *mut Mapping, folio: *mut Folio) -> Outcome {
    // SAFETY: referenced; the lock makes mapping and index consistent.
    let (index, pages, dirty) = unsafe {
        b::ss_folio_lock(folio);
        if b::ss_folio_mapping(folio) != mapping {
            b::folio_unlock(folio);
            return Outcome::Gone;
        }
        let r = (b::ss_folio_index(folio), b::ss_folio_nr_pages(folio), b::ss_folio_dirty(folio));
        b::folio_unlock(folio);
        r
    };
    let first = index as i64 * b::SS_PAGE_SIZE;
    let last = (index + pages) as i64 * b::SS_PAGE_SIZE - 1;
    // SAFETY: `mapping` is kept alive by the caller; these are the calls
    // kiocb_invalidate_pages() makes before an O_DIRECT write. Writeback
    // inside an open journal handle could wait for that very handle: then
    // only a clean folio can go.
    unsafe {
        if dirty && !b::ss_in_fs_transaction() {
            let _ = b::filemap_write_and_wait_range(mapping, first, last);
        }
        let _ = b::invalidate_inode_pages2_range(mapping, index as _, (index + pages - 1) as _);
        if b::ss_folio_mapping(folio) != mapping {
            Outcome::Evicted
        } else {
            Outcome::Busy
        }
    }
}
