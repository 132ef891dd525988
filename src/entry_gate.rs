// SPDX-License-Identifier: GPL-2.0

//! The splice entry points that only stable splices need, redirected only
//! while stable splices may come.
//!
//! Every `splice()` passes `do_splice` and `do_splice_read`, and every
//! `sendfile()` the latter. As ftrace callbacks (the default) their
//! redirects cost each such call ftrace's register-saving trampoline even
//! where the callback declines at once; their replacements act only for a
//! stable splice, counted in `calls_in_flight` from before it can reach
//! them, or for a process in the stable mode (`mode_processes`). So once
//! both counts are 0 and no stable splice came for a whole
//! `entries_idle_secs` (a module parameter, 10 by default), the two
//! redirects are taken out ([`idle`]), and whoever raises a count from
//! there puts them back ([`arm`]) before its call can reach them.
//! `__x64_sys_splice`'s redirect stays: that is where the flag is seen.
//! Direct calls (`direct_calls=1`) decline a plain call in a few
//! instructions and stay as well.
//!
//! Why no stable call misses them: [`arm`] reads [`ARMED`] after its
//! caller raised its count, [`idle`] clears [`ARMED`] before it reads the
//! counts, each with a full barrier in between. So either `idle` sees the
//! count and leaves the redirects in place, or the caller sees [`ARMED`]
//! clear and registers them again under the gate's lock, which `idle` holds
//! until they are out.

use crate::{bindings, counters::COUNTERS, ftrace::Redirect, registry::Global};
use core::{
    ptr::NonNull,
    sync::atomic::{fence, AtomicBool, Ordering::Relaxed, Ordering::SeqCst},
};
use kernel::{new_mutex, prelude::*, sync::Mutex};

/// The redirects the gate takes out: `do_splice` and `do_splice_read`.
pub(crate) const GATED: usize = 2;

/// Whether the gated redirects are in place (or there is no gate: then
/// they always are). Read by every stable splice; written under the gate's
/// lock.
static ARMED: AtomicBool = AtomicBool::new(true);

static GATE: Global<EntryGate> = Global::new();

/// Whether a failed registration was reported.
static WARNED: AtomicBool = AtomicBool::new(false);

/// The gate over the redirects of [`GATED`].
#[pin_data(PinnedDrop)]
pub(crate) struct EntryGate {
    #[pin]
    state: Mutex<State>,
}

struct State {
    /// The redirects the gate takes out: those registered as callbacks.
    redirects: [Option<NonNull<Redirect>>; GATED],
    /// Whether they are registered.
    armed: bool,
    /// `stable_calls` when [`idle`] last looked.
    calls_seen: i64,
}

// SAFETY: the pointers are to pinned redirects that outlive the gate (see
// `EntryGate::start`), used only under the gate's lock.
unsafe impl Send for State {}

impl EntryGate {
    /// A gate over `redirects`, which are registered; those registered as
    /// callbacks it takes out while no stable splice needs them.
    ///
    /// # Safety
    ///
    /// `redirects` stay pinned and registered (but for the gate's own
    /// doing) until the returned gate is dropped.
    pub(crate) unsafe fn start(redirects: [Option<Pin<&Redirect>>; GATED]) -> Result<Pin<KBox<Self>>> {
        let gated = redirects.map(|r| r.filter(|r| r.is_callback()).map(|r| NonNull::from(r.get_ref())));
        let gate = KBox::pin_init(
            pin_init!(Self {
                state <- new_mutex!(
                    State { redirects: gated, armed: true, calls_seen: COUNTERS.stable_calls.get() },
                    "stable_splice:entry_gate"
                ),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: dropping the gate unpublishes it and waits for its work
        // before the gate goes.
        unsafe { GATE.publish(&gate) };
        if gated.iter().any(Option::is_some) {
            // SAFETY: no preconditions.
            unsafe { bindings::ss_schedule_entry_idle() };
        }
        Ok(gate)
    }
}

#[pinned_drop]
impl PinnedDrop for EntryGate {
    fn drop(self: Pin<&mut Self>) {
        GATE.unpublish();
        // SAFETY: no preconditions; the work finds no gate from here on.
        unsafe { bindings::ss_cancel_entry_idle() };
    }
}

/// Makes sure the gated redirects are in place, after the caller raised
/// `calls_in_flight` or `mode_processes` and before its call can reach
/// them. May sleep (the first call after an idle spell registers them).
pub(crate) fn arm() -> Result {
    fence(SeqCst); // the caller's count before `ARMED` (see the module doc)
    if ARMED.load(Relaxed) {
        return Ok(());
    }
    arm_slow()
}

#[cold]
fn arm_slow() -> Result {
    let gate = GATE.get().ok_or(ENODEV)?; // only while unloading
    let mut state = gate.state.lock();
    if !state.armed {
        let mut done = 0;
        for r in state.redirects.iter().flatten() {
            // SAFETY: per `EntryGate::start`.
            let redirect = unsafe { r.as_ref() };
            if let Err(e) = redirect.register_again() {
                // Once: every stable splice would try again (a livepatch of
                // the function, another IPMODIFY user, keeps it out).
                if !WARNED.swap(true, Relaxed) {
                    pr_err!("stable_splice: cannot redirect the splice entry points again: {:?}\n", e);
                }
                for r in state.redirects.iter().flatten().take(done) {
                    // SAFETY: as above.
                    unsafe { r.as_ref() }.unregister_callback();
                }
                return Err(e);
            }
            done += 1;
        }
        state.armed = true;
        COUNTERS.splice_entries_idle.sub(1);
        COUNTERS.splice_entries_rearmed.add(1);
        // SAFETY: no preconditions.
        unsafe { bindings::ss_schedule_entry_idle() };
    }
    ARMED.store(true, Relaxed);
    Ok(())
}

/// Takes the gated redirects out if no stable splice is in flight, no
/// process is in the mode and (unless `now`) no stable splice came since
/// the last look; returns whether they are out. The delayed work's (every
/// `entries_idle_secs` while they are in; never with 0), and debugfs
/// `idle`'s with `now`.
pub(crate) fn idle(now: bool) -> bool {
    let Some(gate) = GATE.get() else {
        return false;
    };
    let mut state = gate.state.lock();
    if !state.armed {
        return true;
    }
    if state.redirects.iter().all(Option::is_none) {
        return false; // direct calls: nothing to gain
    }
    let calls = COUNTERS.stable_calls.get();
    // SAFETY: no preconditions.
    let quiet = now || calls == state.calls_seen && unsafe { bindings::ss_entries_idle_secs() } != 0;
    state.calls_seen = calls;
    if quiet {
        ARMED.store(false, Relaxed);
        fence(SeqCst); // `ARMED` before the counts (see the module doc)
        if COUNTERS.calls_in_flight.get() == 0 && COUNTERS.mode_processes.get() == 0 {
            // ftrace waits for the callbacks still running; replacements
            // still running keep their module references and go on.
            for r in state.redirects.iter().flatten() {
                // SAFETY: per `EntryGate::start`.
                unsafe { r.as_ref() }.unregister_callback();
            }
            state.armed = false;
            COUNTERS.splice_entries_idle.add(1);
            return true;
        }
        ARMED.store(true, Relaxed);
    }
    // SAFETY: no preconditions.
    unsafe { bindings::ss_schedule_entry_idle() };
    false
}

/// The delayed work (rust/ftrace.c).
#[no_mangle]
pub(crate) extern "C" fn ss_entry_idle() {
    idle(false);
}
