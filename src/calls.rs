// SPDX-License-Identifier: GPL-2.0

//! Which tasks are inside a `splice(..., SPLICE_F_STABLE)` right now.
//!
//! The syscall replacement strips the flag before the kernel checks it, so
//! the file system's `splice_read` (reached through the kernel's own
//! splice code) learns about it here, keyed by the calling task's pid.

use kernel::{
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    xarray::{AllocKind, XArray},
};

/// What a marked task asked for.
pub(crate) struct StableCall {
    /// The flags the caller passed, including `SPLICE_F_STABLE`.
    pub(crate) flags: u32,
}

/// The set of tasks in a stable splice.
#[pin_data]
pub(crate) struct Calls {
    #[pin]
    by_pid: XArray<KBox<StableCall>>,
    /// Entries in `by_pid`: lets plain splices skip the lookup. A task
    /// always sees its own entry, so a relaxed count is enough.
    active: Atomic<i64>,
}

impl Calls {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            by_pid <- XArray::new(AllocKind::Alloc),
            active: Atomic::new(0),
        })
    }

    fn current_index() -> usize {
        // Thread ids of live tasks are unique and positive.
        kernel::current!().pid() as usize
    }

    /// Marks the current task until the returned guard drops.
    pub(crate) fn mark_current(&self, flags: u32) -> Result<Marked<'_>> {
        let call = KBox::new(StableCall { flags }, GFP_KERNEL)?;
        let idx = Self::current_index();
        self.active.add(1, Relaxed);
        match self.by_pid.lock().store(idx, call, GFP_KERNEL) {
            Ok(_) => Ok(Marked { calls: self, idx }),
            Err(e) => {
                self.active.add(-1, Relaxed);
                Err(e.error)
            }
        }
    }

    /// The flags of the current task's stable splice, if it is in one.
    pub(crate) fn current_flags(&self) -> Option<u32> {
        if self.active.load(Relaxed) == 0 {
            return None;
        }
        let guard = self.by_pid.lock();
        guard.get(Self::current_index()).map(|c| c.flags)
    }
}

/// The current task is marked while this lives.
pub(crate) struct Marked<'a> {
    calls: &'a Calls,
    idx: usize,
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        drop(self.calls.by_pid.lock().remove(self.idx));
        self.calls.active.add(-1, Relaxed);
    }
}
