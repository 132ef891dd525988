// SPDX-License-Identifier: GPL-2.0

//! Taking out entries that may go, never per hold: on demand (debugfs
//! `reap`, before an unmount or `rmmod`: every entry whose folio has no
//! reader left or left the page cache) and under memory pressure (a
//! shrinker: the blocks of entries whose range has no folio in the page
//! cache any more, one look a block). An entry owns nothing and nothing
//! needs it gone for soundness (see [`super`]): what these walks give
//! back is the index's memory and, with a file's last entry, its module
//! reference.

use super::{holds, Holds};
use crate::{bindings as b, counters::COUNTERS, folio::Mapping};
use core::{
    ffi::c_void,
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};
use kernel::prelude::*;

/// The registered shrinker (`rust/hold.c`); unregistered on drop, after its
/// callbacks in flight.
pub(crate) struct Shrinker(NonNull<c_void>);

// SAFETY: a shrinker may be unregistered from any task.
unsafe impl Send for Shrinker {}
// SAFETY: shared access does nothing.
unsafe impl Sync for Shrinker {}

impl Shrinker {
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: no preconditions; the callbacks find the registry through
        // `holds()`, which says None until it is published.
        NonNull::new(unsafe { b::ss_shrinker_new() }).map(Self).ok_or(ENOMEM)
    }
}

impl Drop for Shrinker {
    fn drop(&mut self) {
        // SAFETY: ours, registered once.
        unsafe { b::ss_shrinker_free(self.0.as_ptr()) };
    }
}

/// Entries a walk looks at per hold of a bucket lock.
const REAP_BATCH: usize = 64;

/// Takes out at once every entry whose folio has no reader left or left
/// the page cache (debugfs `reap`: tests and tools that wait for holds to
/// end, before an unmount or rmmod). An entry whose folio somebody still
/// reads stays.
pub(crate) fn reap_now() {
    if let Some(holds) = holds() {
        holds.walk(Walk::Readers, usize::MAX);
    }
}

/// The shrinker's count: entries there are.
#[no_mangle]
pub(crate) extern "C" fn ss_hold_entries() -> usize {
    COUNTERS.holds_active.get().max(0) as usize
}

/// The shrinker's scan: looks at blocks of about `n` entries, from where
/// the last scan stopped (by bucket); returns how many entries went.
#[no_mangle]
pub(crate) extern "C" fn ss_reap_some(n: usize) -> usize {
    holds().map_or(0, |h| h.walk(Walk::Uncached, n.div_ceil(b::SS_BLOCK_SLOTS as usize)))
}

/// What a walk takes out.
#[derive(Clone, Copy)]
enum Walk {
    /// Entries whose folio has no reader left or left the page cache.
    Readers,
    /// Blocks of entries whose range has no folio in the page cache.
    Uncached,
}

/// The bucket the next budgeted walk starts at.
static NEXT_BUCKET: AtomicUsize = AtomicUsize::new(0);

impl Holds {
    /// Looks at up to `budget` entries or blocks (all of them with
    /// `usize::MAX`), bucket by bucket from [`NEXT_BUCKET`], and takes out
    /// those that may go (`HoldIndex::reap`, `HoldIndex::drop_uncached`);
    /// returns how many entries went. The bucket lock is dropped every
    /// [`REAP_BATCH`] looks: splicers of a large file must not spin while a
    /// walk looks at all of its entries.
    fn walk(&self, walk: Walk, budget: usize) -> usize {
        let (mut seen_all, mut gone_all) = (0usize, 0usize);
        let n = self.buckets.len();
        // Also spares the `%` below a division-by-zero panic path (whose
        // callee objtool does not know as noreturn).
        if n == 0 {
            return 0;
        }
        let start = NEXT_BUCKET.load(Relaxed) % n;
        for k in 0..n {
            let i = (start + k) % n;
            if seen_all >= budget {
                NEXT_BUCKET.store(i, Relaxed);
                break;
            }
            let (bucket, count) = (&self.buckets[i], &self.counts[i]);
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
                    loop {
                        let batch = REAP_BATCH - seen;
                        if batch == 0 {
                            // A file whose last entry the batch just took
                            // out goes now, below: the entry would keep
                            // the module.
                            if file.count > 0 {
                                resume = (mapping, from);
                                paused = true;
                            }
                            break;
                        }
                        let r = match walk {
                            Walk::Readers => file.index.reap(mapping as *mut Mapping, from, batch),
                            Walk::Uncached => file.index.drop_uncached(mapping as *mut Mapping, from, batch),
                        };
                        seen += r.seen;
                        file.count -= r.ended;
                        count.fetch_sub(r.ended as i32, Relaxed);
                        COUNTERS.holds_active.sub(r.ended as i64);
                        gone_all += r.ended;
                        match r.next {
                            Some(next) => from = next,
                            None => break, // the file's last entry
                        }
                    }
                    cursor = if file.count == 0 {
                        let (next, node) = c.remove_current();
                        let (_, file) = node.to_key_value();
                        self.table.remove(file.slot);
                        drop(file); // an empty entry: its module reference
                        next
                    } else {
                        c.move_next()
                    };
                    if paused {
                        break;
                    }
                }
                drop(b);
                seen_all += seen;
                if !paused || seen_all >= budget {
                    break;
                }
            }
        }
        gone_all
    }
}
