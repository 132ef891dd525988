// SPDX-License-Identifier: GPL-2.0

//! Ending the holds nobody reads any more, in batches, from a delayed work.

use super::{holds, now_ns, Holds};
use crate::{bindings as b, counters::COUNTERS, folio::Mapping};
use core::sync::atomic::Ordering::Relaxed;

/// How long a hold nobody reads stays, if splices keep joining it: taking
/// a hold costs a folio lock, a reference check and a registry insert,
/// joining one a lookup. Until then the folio is pinned in the cache.
const REAP_IDLE_NS: u64 = 1_000_000_000;

/// Holds the reaper walks per hold of a bucket lock.
const REAP_BATCH: usize = 64;

/// The periodic reaper (called from C, a delayed work).
#[no_mangle]
pub(crate) extern "C" fn ss_reap_holds() {
    if let Some(holds) = holds() {
        if holds.reap(REAP_IDLE_NS) > 0 {
            // SAFETY: no preconditions.
            unsafe { b::ss_schedule_reap() };
        }
    }
}

/// Ends at once the holds nobody reads any more, however recently a splice
/// used them (debugfs `reap`: tests and tools that wait for holds to end,
/// before an unmount or rmmod, need not wait out the idle second). A hold
/// whose folio somebody still reads stays, as with the periodic reaper.
pub(crate) fn reap_now() {
    if let Some(holds) = holds() {
        holds.reap(0);
    }
}

impl Holds {
    /// Ends the holds nobody reads any more; returns how many remain.
    ///
    /// Only the holds of files idle for `idle_ns` (no splice took or joined
    /// one; [`REAP_IDLE_NS`] for the periodic reaper) are looked at closely
    /// (references, and a folio trylock where private data or a mapping
    /// may count); a hold on a folio that left the page cache goes once its
    /// lock is free. The bucket lock is dropped every [`REAP_BATCH`] holds:
    /// splicers of a large file must not spin while the reaper walks all
    /// of its holds.
    fn reap(&self, idle_ns: u64) -> usize {
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
                    if idle_ns > 0 && now.saturating_sub(file.used) <= idle_ns {
                        left += file.count;
                        cursor = c.move_next();
                        continue;
                    }
                    // The file's holds a batch at a time, each in one walk
                    // that looks at them and takes out the ended.
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
                        let r = file.index.reap(mapping as *mut Mapping, from, budget);
                        seen += r.seen;
                        file.count -= r.ended;
                        count.fetch_sub(r.ended as i32, Relaxed);
                        COUNTERS.holds_active.sub(r.ended as i64);
                        left += r.seen - r.ended;
                        match r.next {
                            Some(next) => from = next,
                            None => break, // the file's last hold
                        }
                    }
                    if paused {
                        break;
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
