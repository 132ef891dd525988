// SPDX-License-Identifier: GPL-2.0

//! Stable mode: `SPLICE_F_STABLE` for programs that do not pass it.
//!
//! Servers such as nginx send files with `sendfile()`, and Samba only uses
//! sendfile under an exclusive oplock because a concurrent write would
//! change bytes already on their way. A process in the stable mode gets
//! every splice from a page-cache file into a pipe made stable, as if it
//! had passed the flag: `splice()` with or without it, `sendfile()` (whose
//! internal pipe is filled by the same `splice_read`), `IORING_OP_SPLICE`
//! (run by io-wq threads of the same thread group).
//!
//! The mode belongs to a thread group and is inherited: the
//! `sched_process_fork` tracepoint puts every new process of a process in
//! the mode into it before the child first runs, `execve()` keeps the
//! thread group, and `sched_process_exit` of the group's last thread takes
//! it out before its pid can be reused. A process enters or leaves the mode
//! only for itself (`/dev/stable_splice`, see [`crate::control`]), so it can
//! reach only itself and what it starts afterwards.
//!
//! Every process in the mode pins the module: the promise cannot vanish
//! under a running server by an `rmmod`.

use crate::{
    bindings,
    counters::COUNTERS,
    ftrace::ModuleRef,
    registry::{CountedXArray, Global},
};
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;

/// One thread group in the mode.
struct Member {
    _module: ModuleRef,
}

/// How many thread groups in the mode have a thread-group id with these
/// low bits. While a process is in the mode every splice and `sendfile()`
/// in the system asks whether its own process is; for all others this
/// answers no with one load instead of taking the XArray's lock. Relaxed
/// as [`CountedXArray`]'s count is: a process asks about itself, and it
/// (or its parent, before it ran) recorded it. A counter is raised before
/// its entry is stored and lowered only after an entry was taken out, so
/// it never drops below its slot's members.
///
/// One per module, a static: with `direct_calls=1` the trampoline of
/// `do_splice_read` (rust/trampolines.S) reads the calling task's slot
/// itself, indexed by the low byte of its tgid, and asks
/// `ss_do_splice_read_wanted` only when that slot is counted.
#[repr(transparent)]
struct TgidFilter([AtomicU32; TgidFilter::SLOTS]);

impl TgidFilter {
    const SLOTS: usize = bindings::SS_MODE_FILTER_SLOTS as usize;

    const fn new() -> Self {
        Self([const { AtomicU32::new(0) }; Self::SLOTS])
    }

    fn slot(&self, tgid: usize) -> &AtomicU32 {
        &self.0[tgid % Self::SLOTS]
    }

    fn may_contain(&self, tgid: usize) -> bool {
        self.slot(tgid).load(Ordering::Relaxed) != 0
    }
}

/// The filter of the mode's members ([`Modes`], of which there is one).
#[export_name = "ss_mode_filter"]
static FILTER: TgidFilter = TgidFilter::new();

/// The thread groups in the stable mode, by global thread-group id.
#[pin_data]
pub(crate) struct Modes {
    /// While empty, lookups and the tracepoints cost one load.
    #[pin]
    by_tgid: CountedXArray<Member>,
}

impl Modes {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            by_tgid <- CountedXArray::new(&COUNTERS.mode_processes),
        })
    }

    pub(crate) fn insert(&self, tgid: usize, flags: kernel::alloc::Flags) -> Result {
        let module = ModuleRef::get().ok_or(ENODEV)?;
        let member = KBox::new(Member { _module: module }, flags)?;
        // Counted before it is stored, so that the process (which asks
        // about itself only) never finds the filter saying no to an entry.
        FILTER.slot(tgid).fetch_add(1, Ordering::Relaxed);
        match self.by_tgid.insert(tgid, member, flags) {
            Ok(true) => Ok(()),
            other => {
                FILTER.slot(tgid).fetch_sub(1, Ordering::Relaxed);
                other.map(|_| ())
            }
        }
    }

    pub(crate) fn remove(&self, tgid: usize) {
        let gone = self.by_tgid.remove(tgid);
        if gone.is_some() {
            FILTER.slot(tgid).fetch_sub(1, Ordering::Relaxed);
        }
        drop(gone); // the module reference goes last
    }

    /// While nobody is in the mode every slot is 0: one load.
    pub(crate) fn contains(&self, tgid: usize) -> bool {
        FILTER.may_contain(tgid) && self.by_tgid.with(tgid, |_| ()).is_some()
    }

    /// Whether the filter sends a lookup of `tgid` to the XArray.
    #[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
    pub(crate) fn filter_may_contain(&self, tgid: usize) -> bool {
        FILTER.may_contain(tgid)
    }

    /// Puts the calling process into the mode (`on`) or takes it out.
    pub(crate) fn set_current(&self, on: bool) -> Result {
        let tgid = current_tgid();
        if on {
            self.insert(tgid, GFP_KERNEL)?;
            crate::entry_gate::arm().inspect_err(|_| self.remove(tgid))
        } else {
            self.remove(tgid);
            Ok(())
        }
    }

    /// Whether the calling task's process is in the mode.
    pub(crate) fn current(&self) -> bool {
        self.contains(current_tgid())
    }

    /// `sched_process_fork`: `parent` is the forking task (always
    /// `current`), the child has not run yet.
    fn forked(&self, parent: *mut bindings::task_struct, child: *mut bindings::task_struct) {
        if self.by_tgid.is_empty() {
            return;
        }
        // SAFETY: both tasks are alive for the tracepoint.
        let (ptgid, ctgid) = unsafe { (bindings::ss_task_tgid(parent), bindings::ss_task_tgid(child)) };
        if ptgid == ctgid || !self.contains(ptgid as usize) {
            return; // a thread (same group) or not in the mode
        }
        // Preemption is off in a tracepoint: no sleeping allocation.
        if self.insert(ctgid as usize, GFP_ATOMIC).is_err() {
            // A child that silently left the mode would serve unstable
            // data; it has not run a single instruction yet.
            COUNTERS.mode_fork_failures.add(1);
            pr_warn!("stable_splice: no memory to keep pid {} in the stable mode: killed\n", ctgid);
            // SAFETY: `child` is a valid task.
            unsafe { bindings::ss_task_kill(child) };
        }
    }

    /// `sched_process_exit` of the group's last thread.
    fn exited(&self, task: *mut bindings::task_struct) {
        if self.by_tgid.is_empty() {
            return;
        }
        // SAFETY: `task` is exiting but alive for the tracepoint.
        let tgid = unsafe { bindings::ss_task_tgid(task) };
        self.remove(tgid as usize);
    }
}

fn current_tgid() -> usize {
    // SAFETY: no preconditions; `current` is valid in task context.
    unsafe { bindings::ss_current_tgid() as usize }
}

/// The registry while the module is loaded.
static MODES: Global<Modes> = Global::new();

pub(crate) fn modes() -> Option<&'static Modes> {
    MODES.get()
}

/// Whether the calling process is in the stable mode (one load while no
/// process is: asked for every splice in the system).
pub(crate) fn current_in_mode() -> bool {
    modes().is_some_and(Modes::current)
}

/// The `sched_process_fork` probe.
///
/// # Safety
///
/// Called only by the tracepoint it was registered with, with the `Modes`
/// registered as its data and the tracepoint's task arguments.
unsafe extern "C" fn on_fork(
    data: *mut c_void,
    parent: *mut bindings::task_struct,
    child: *mut bindings::task_struct,
) {
    // SAFETY: `data` is the `Modes` registered with the probe, alive until
    // the probe is unregistered and the tracepoint synchronised.
    let modes = unsafe { &*data.cast::<Modes>() };
    modes.forked(parent, child);
}

/// The `sched_process_exit` probe.
///
/// # Safety
///
/// As for [`on_fork`].
unsafe extern "C" fn on_exit(data: *mut c_void, task: *mut bindings::task_struct, group_dead: bool) {
    if !group_dead {
        return;
    }
    // SAFETY: as in `on_fork`.
    let modes = unsafe { &*data.cast::<Modes>() };
    modes.exited(task);
}

/// The two tracepoint probes that carry the mode from parent to child and
/// drop it at exit; unregistered when dropped.
pub(crate) struct Tracking {
    fork: *mut bindings::tracepoint,
    exit: *mut bindings::tracepoint,
    modes: *const Modes,
}

// SAFETY: the tracepoint pointers are static kernel objects; `modes` is
// only read.
unsafe impl Send for Tracking {}
// SAFETY: as above.
unsafe impl Sync for Tracking {}

impl Tracking {
    /// Registers the probes and publishes `modes`.
    ///
    /// # Safety
    ///
    /// `modes` must outlive the returned value.
    pub(crate) unsafe fn start(modes: &Modes) -> Result<Self> {
        let find = |name: &CStr| {
            // SAFETY: `name` is NUL-terminated.
            let tp = unsafe { bindings::ss_tracepoint(name.as_char_ptr()) };
            if tp.is_null() {
                pr_err!("stable_splice: no tracepoint {:?}\n", name);
                Err(ENOENT)
            } else {
                Ok(tp)
            }
        };
        let fork = find(c"sched_process_fork")?;
        let exit = find(c"sched_process_exit")?;
        let data = core::ptr::from_ref(modes).cast_mut().cast::<c_void>();
        // SAFETY: `on_fork` has the prototype of sched_process_fork's
        // probes; `data` outlives the registration (caller's promise).
        kernel::error::to_result(unsafe {
            bindings::tracepoint_probe_register(fork, on_fork as *mut c_void, data)
        })?;
        // SAFETY: as above, for sched_process_exit.
        if let Err(e) = kernel::error::to_result(unsafe {
            bindings::tracepoint_probe_register(exit, on_exit as *mut c_void, data)
        }) {
            // SAFETY: registered just above.
            unsafe {
                bindings::tracepoint_probe_unregister(fork, on_fork as *mut c_void, data);
                bindings::ss_tracepoint_sync();
            }
            return Err(e);
        }
        // SAFETY: `modes` outlives the tracking (caller), whose drop
        // unpublishes it and waits for the probes.
        unsafe { MODES.publish(modes) };
        Ok(Self { fork, exit, modes })
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        MODES.unpublish();
        let data = self.modes.cast_mut().cast::<c_void>();
        // SAFETY: registered in `start` with these arguments; the sync waits
        // for probes still running before `modes` may go.
        unsafe {
            bindings::tracepoint_probe_unregister(self.exit, on_exit as *mut c_void, data);
            bindings::tracepoint_probe_unregister(self.fork, on_fork as *mut c_void, data);
            bindings::ss_tracepoint_sync();
        }
    }
}
