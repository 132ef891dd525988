// SPDX-License-Identifier: GPL-2.0

//! Which tasks are inside a `splice(..., SPLICE_F_STABLE)` right now, and
//! which io_uring splice requests asked for the flag.
//!
//! The syscall replacement strips the flag before the kernel checks it, so
//! the file system's `splice_read` (reached through the kernel's own
//! splice code) learns about it here: from a mark in the task's saved
//! registers (see [`SYSCALL_MARK`]), or for io_uring workers from the set
//! of marked tasks.
//! An `IORING_OP_SPLICE` request is prepared in the submitter and issued
//! later in an io-wq worker: the request is remembered from prep to issue,
//! and the worker is marked like a syscall caller while it runs it.

use crate::{counters::COUNTERS, ftrace::ModuleRef, registry::CountedXArray};
use kernel::prelude::*;

/// A `splice()` with the flag is marked in its own saved register frame:
/// this bit of `r9`, above the 32 bits of the syscall's flags argument, is
/// set by the syscall replacement for the call (no allocation, no shared
/// state). io_uring workers, which have no such frame, are marked here.
pub(crate) const SYSCALL_MARK: usize = 1 << 63;

/// What a marked task asked for.
pub(crate) struct StableCall {
    /// The flags the caller passed, including `SPLICE_F_STABLE`.
    pub(crate) flags: u32,
}

/// A prepared io_uring splice request that asked for the flag.
struct Request {
    flags: u32,
    /// The module stays until the request is cleaned up.
    _module: ModuleRef,
}

/// The set of tasks in a stable splice.
#[pin_data]
pub(crate) struct Calls {
    /// Marked tasks by thread id; plain splices skip the lookup while
    /// there are none.
    #[pin]
    by_pid: CountedXArray<StableCall>,
    /// Prepared io_uring splice requests with the flag, by request address;
    /// prep of a request without the flag must drop a stale entry for a
    /// recycled request, and skips that while there are none.
    #[pin]
    by_request: CountedXArray<Request>,
}

impl Calls {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            by_pid <- CountedXArray::new(&COUNTERS.calls_in_flight),
            by_request <- CountedXArray::new(&COUNTERS.calls_in_flight),
        })
    }

    /// The current task's thread id: unique among live tasks, small and
    /// dense, so the XArray stays one or two levels deep. Read in C, not
    /// with `Task::pid()`: on GCC-built kernels bindgen's `task_struct`
    /// layout can differ from the compiler's (seen on 7.3: `pid` 48 bytes
    /// off), and then every task reads the same "pid".
    fn current_index() -> usize {
        // SAFETY: no preconditions; `current` is always valid in task context.
        unsafe { crate::bindings::ss_current_tid() as usize }
    }

    /// Marks the current task until the returned guard drops.
    pub(crate) fn mark_current(&self, flags: u32) -> Result<Marked<'_>> {
        let call = KBox::new(StableCall { flags }, GFP_KERNEL)?;
        let idx = Self::current_index();
        self.by_pid.store(idx, call, GFP_KERNEL)?;
        let marked = Marked { calls: self, idx };
        crate::entry_gate::arm()?; // a recorded request has done so already
        Ok(marked)
    }

    /// Whether any task may be in a stable splice: stable `splice()` calls
    /// (counted by the syscall replacement), marked io_uring workers and
    /// prepared requests all count in `calls_in_flight`. While there are
    /// none, a plain splice learns it here with one load, without reading
    /// its own register frame.
    pub(crate) fn any_in_flight() -> bool {
        COUNTERS.calls_in_flight.get() != 0
    }

    /// Whether the current task may be in a stable splice: its `splice()`
    /// is marked, or some task (an io_uring worker) is. Asked for every
    /// splice in the system, so no lookup.
    pub(crate) fn maybe_current(&self) -> bool {
        Self::any_in_flight() && (!self.by_pid.is_empty() || Self::marked_flags().is_some())
    }

    /// Whether the current task is in a stable splice.
    pub(crate) fn current_is_stable(&self) -> bool {
        Self::any_in_flight()
            && (Self::marked_flags().is_some()
                || !self.by_pid.is_empty() && self.recorded_flags().is_some_and(|f| f & crate::splice::SPLICE_F_STABLE != 0))
    }

    /// Whether any io_uring request asked for the flag and was not cleaned
    /// up yet.
    pub(crate) fn has_requests(&self) -> bool {
        !self.by_request.is_empty()
    }

    /// The flags of the current task's stable splice, if it is in one.
    pub(crate) fn current_flags(&self) -> Option<u32> {
        Self::marked_flags().or_else(|| self.recorded_flags())
    }

    /// The flags of the current task's `splice()` if its frame carries the
    /// mark.
    fn marked_flags() -> Option<u32> {
        // SAFETY: no preconditions; reads the current task's own frame.
        let r9 = unsafe { crate::bindings::ss_current_splice_r9() } as usize;
        (r9 & SYSCALL_MARK != 0).then(|| r9 as u32 | crate::splice::SPLICE_F_STABLE)
    }

    /// The flags recorded for the current task's stable call.
    fn recorded_flags(&self) -> Option<u32> {
        self.by_pid.with(Self::current_index(), |c| c.flags)
    }

    /// Records that the io_uring request at `req` asked for the flag. The
    /// record holds a module reference until [`Calls::forget_request`]
    /// (the request's cleanup), so the module cannot go between prep and
    /// issue and leave an accepted request to run as a plain splice.
    pub(crate) fn set_request(&self, req: usize, flags: u32) -> Result {
        let module = ModuleRef::get().ok_or(ENODEV)?; // being unloaded
        let request = KBox::new(Request { flags, _module: module }, GFP_KERNEL)?;
        // A recycled request whose cleanup we missed: the old record (and
        // its module reference) goes.
        self.by_request.store(req, request, GFP_KERNEL)?;
        crate::entry_gate::arm().inspect_err(|_| self.forget_request(req))
    }

    /// Forgets the request at `req` (its cleanup, or a new request at a
    /// recycled address) and lets go of its module reference (the caller
    /// runs in a redirected function, which holds its own).
    pub(crate) fn forget_request(&self, req: usize) {
        drop(self.by_request.remove(req));
    }

    /// The flags recorded for the request at `req`.
    pub(crate) fn request_flags(&self, req: usize) -> Option<u32> {
        self.by_request.with(req, |c| c.flags)
    }
}

/// The current task is marked while this lives.
pub(crate) struct Marked<'a> {
    calls: &'a Calls,
    idx: usize,
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        drop(self.calls.by_pid.remove(self.idx));
    }
}
