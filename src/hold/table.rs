// SPDX-License-Identifier: GPL-2.0

//! Which files have holds, for writers to ask without a lock.
//!
//! Every buffered write and store fault into ext4 and xfs asks whether its
//! file may have holds. A count per bucket of the registry used to answer,
//! but a bucket's count is up while any file hashed there has holds: a
//! server with folios of a few dozen files held has every bucket up, and
//! then every writer of every file took a bucket lock only to learn that
//! its file has none. This table answers per file: open addressing over
//! mapping addresses, changed under its own lock when a file's registry
//! entry comes or goes (once per file, not per hold), read with plain
//! loads.
//!
//! Why a writer cannot miss a file that gets a hold: the file's slot is
//! stored before any of its holds' references are checked, with a full
//! barrier in between (the hold count's protocol, see
//! `Holds::writer_may_hold`). A slot becomes empty again only while the
//! next one is empty, so the slots from a file's home to the file are
//! never empty and a reader that stops at an empty slot has passed every
//! place the file can be; the other removals leave tombstones, which
//! readers walk past. A file with no free slot within [`PROBES`] of its
//! home is counted in `overflow` instead, and while any is, every file
//! may have holds (the bucket lock answers, as before the table).

use kernel::{
    new_spinlock,
    prelude::*,
    sync::SpinLock,
};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Slots of the table: files with entries at once (entries outlive their
/// readers until a walk or the eviction takes them out), with room to
/// spare; 128 KiB.
const SLOTS: usize = 16384;
/// How far from its home slot a file may be.
pub(crate) const PROBES: usize = 32;
const EMPTY: usize = 0;
/// A removed file's slot, walked past by readers and reused by inserts.
const TOMBSTONE: usize = 1;

/// Where a file's registry entry is in the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Slot {
    /// Not entered (yet).
    Out,
    At(usize),
    /// Counted in `overflow`.
    Overflow,
}

/// The files with holds, by mapping address.
pub(crate) struct HeldFiles {
    slots: KVVec<AtomicUsize>,
    /// Files that found no slot.
    overflow: AtomicUsize,
    /// Serializes inserts and removals (readers take no lock).
    lock: Pin<KBox<SpinLock<()>>>,
}

pub(crate) fn home(mapping: usize) -> usize {
    // Mappings live in inodes, hundreds of bytes apart.
    (mapping >> 6 ^ mapping >> 18) % SLOTS
}

impl HeldFiles {
    pub(crate) fn new() -> Result<Self> {
        let mut slots = KVVec::with_capacity(SLOTS, GFP_KERNEL)?;
        for _ in 0..SLOTS {
            slots.push(AtomicUsize::new(EMPTY), GFP_KERNEL)?;
        }
        let lock = KBox::pin_init(new_spinlock!((), "stable_splice:held_files"), GFP_KERNEL)?;
        Ok(Self { slots, overflow: AtomicUsize::new(0), lock })
    }

    fn at(&self, i: usize) -> &AtomicUsize {
        &self.slots[i % SLOTS]
    }

    /// Whether `mapping` may have holds. A writer asks after taking its
    /// folio reference and a full barrier (see the module doc).
    pub(crate) fn may_have(&self, mapping: usize) -> bool {
        if self.overflow.load(Relaxed) != 0 {
            return true;
        }
        let h = home(mapping);
        for i in h..h + PROBES {
            match self.at(i).load(Relaxed) {
                m if m == mapping => return true,
                EMPTY => return false,
                _ => {}
            }
        }
        false
    }

    /// Enters `mapping`, which has no slot yet; before any of its holds
    /// is checked (the caller's barrier follows).
    pub(crate) fn insert(&self, mapping: usize) -> Slot {
        let _guard = self.lock.lock();
        let h = home(mapping);
        for i in h..h + PROBES {
            let slot = self.at(i);
            if matches!(slot.load(Relaxed), EMPTY | TOMBSTONE) {
                slot.store(mapping, Relaxed);
                return Slot::At(i % SLOTS);
            }
        }
        self.overflow.fetch_add(1, Relaxed);
        Slot::Overflow
    }

    /// Takes a file out (its registry entry is gone: no holds left).
    pub(crate) fn remove(&self, slot: Slot) {
        let mut i = match slot {
            Slot::Out => return,
            Slot::At(i) => i,
            Slot::Overflow => {
                self.overflow.fetch_sub(1, Relaxed);
                return;
            }
        };
        let _guard = self.lock.lock();
        if self.at(i + 1).load(Relaxed) != EMPTY {
            self.at(i).store(TOMBSTONE, Relaxed);
            return;
        }
        // Nothing lies beyond an empty slot: this one and the tombstones
        // before it may be empty too.
        loop {
            self.at(i).store(EMPTY, Relaxed);
            i = (i + SLOTS - 1) % SLOTS;
            if self.at(i).load(Relaxed) != TOMBSTONE {
                break;
            }
        }
    }

    /// Slots not empty (files and tombstones), for the KUnit cases.
    #[cfg(stable_splice_kunit)]
    pub(crate) fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| s.load(Relaxed) != EMPTY).count()
    }
}
