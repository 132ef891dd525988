// SPDX-License-Identifier: GPL-2.0

//! Redirecting a kernel function to a replacement in this module with ftrace.
//!
//! The kernel rejects unknown splice flags before any hookable extension
//! point, so the module takes over a few functions the way livepatch does:
//! an `IPMODIFY` ftrace callback rewrites the return address of the fentry
//! call to the replacement. The replacement calls the original through the
//! address ftrace reported; that call enters the fentry again, and the
//! callback lets it through because the caller lies in this module.
//!
//! Every redirected call takes a module reference in the callback and the
//! replacement drops it when done (see [`ModuleRef`]), so `rmmod` cannot
//! free the replacement while a task sleeps in it.

use crate::bindings;
use kernel::ffi::c_ulong;
use kernel::{
    error::to_result,
    prelude::*,
    str::CStr,
    sync::atomic::{Acquire, Atomic, Relaxed, Release},
    types::Opaque,
};

/// Where the original of a redirected function lives; filled in by the
/// first redirected call.
pub(crate) struct Original(Atomic<usize>);

impl Original {
    pub(crate) const fn new() -> Self {
        Self(Atomic::new(0))
    }

    /// Address of the original function. Only meaningful inside the
    /// replacement, which runs only after the callback stored it.
    pub(crate) fn addr(&self) -> usize {
        self.0.load(Acquire)
    }
}

/// An ftrace redirect of one kernel function, active while registered.
#[pin_data(PinnedDrop)]
pub(crate) struct Redirect {
    #[pin]
    ops: Opaque<bindings::ftrace_ops>,
    target: usize,
    original: &'static Original,
    /// Which calls to redirect, judged from their arguments in the
    /// callback; `None`: all. Calls the replacement would only pass on to
    /// the original then cost no trampoline return, module reference or
    /// replacement.
    wanted: Option<fn(&Args) -> bool>,
    registered: Atomic<bool>,
}

/// The arguments of a traced call, as the callback sees them.
pub(crate) struct Args(*mut bindings::ftrace_regs);

impl Args {
    /// Argument `n` (from 0) of the traced function.
    pub(crate) fn get(&self, n: u32) -> usize {
        // SAFETY: the callback's `fregs`, valid while it runs (`Args` does
        // not outlive it).
        unsafe { bindings::ss_ftrace_arg(self.0, n) as usize }
    }
}

// SAFETY: after initialisation the ftrace_ops is only touched by ftrace under
// its own locking; the other fields are immutable or atomic.
unsafe impl Sync for Redirect {}
// SAFETY: see `Sync`; nothing is tied to the creating thread.
unsafe impl Send for Redirect {}

impl Redirect {
    /// A redirect to `target`, which must be an `extern "C"` function with the
    /// same signature as the function later named in [`Redirect::register`].
    pub(crate) fn new(target: usize, original: &'static Original) -> impl PinInit<Self> {
        Self::filtered(target, original, None)
    }

    /// [`Redirect::new`] for the calls `wanted` picks; the others run the
    /// original directly. `wanted` must pick every call whose replacement
    /// would do more than call the original.
    pub(crate) fn filtered(
        target: usize,
        original: &'static Original,
        wanted: Option<fn(&Args) -> bool>,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            ops <- Opaque::ffi_init(|ops: *mut bindings::ftrace_ops| {
                // SAFETY: `ops` points at uninitialised memory for an
                // ftrace_ops; an all-zero ftrace_ops is its documented
                // initial state, then we set the callback and flags.
                unsafe {
                    ops.write_bytes(0, 1);
                    (*ops).func = Some(redirect_callback);
                    // No FTRACE_OPS_FL_RECURSION: the callback calls no
                    // function that any redirect traces, so it cannot
                    // recurse, and the trampoline calls it directly.
                    (*ops).flags = bindings::SS_FTRACE_REDIRECT_FLAGS as c_ulong;
                }
            }),
            target,
            original,
            wanted,
            registered: Atomic::new(false),
        })
    }

    /// Starts redirecting calls of the kernel function `name`.
    pub(crate) fn register(self: Pin<&Self>, name: &CStr) -> Result {
        // ftrace parses the pattern in place with strsep(): it wants a
        // writable, NUL-terminated copy.
        let mut buf = KVec::with_capacity(name.to_bytes_with_nul().len(), GFP_KERNEL)?;
        buf.extend_from_slice(name.to_bytes_with_nul(), GFP_KERNEL)?;
        let len = name.to_bytes().len() as i32;
        // SAFETY: `ops` is initialised and pinned; `buf` is a writable,
        // NUL-terminated buffer of `len` characters.
        to_result(unsafe { bindings::ftrace_set_filter(self.ops.get(), buf.as_mut_ptr(), len, 1) })
        .inspect_err(|_| pr_err!("stable_splice: cannot trace {:?}\n", name))?;
        // SAFETY: as above; unregistered in `drop` before `ops` goes away.
        to_result(unsafe { bindings::register_ftrace_function(self.ops.get()) })
            .inspect_err(|e| pr_err!("stable_splice: cannot redirect {:?}: {:?}\n", name, e))?;
        self.registered.store(true, Release);
        Ok(())
    }

    /// Whether calls are being redirected right now.
    pub(crate) fn is_registered(&self) -> bool {
        self.registered.load(Relaxed)
    }
}

#[pinned_drop]
impl PinnedDrop for Redirect {
    fn drop(self: Pin<&mut Self>) {
        if self.registered.load(Relaxed) {
            // SAFETY: registered in `register`; ftrace waits for running
            // callbacks before this returns.
            unsafe { bindings::unregister_ftrace_function(self.ops.get()) };
        }
        // The hash that `ftrace_set_filter` allocated is freed with the ops.
        // SAFETY: the ops is unregistered (or never was) and not used again.
        unsafe { bindings::ftrace_free_filter(self.ops.get()) };
    }
}

/// The ftrace callback: runs at the entry of the traced function, maybe
/// preemptible (ftrace waits for tasks in callbacks when the ops is
/// unregistered).
unsafe extern "C" fn redirect_callback(
    ip: c_ulong,
    parent_ip: c_ulong,
    op: *mut bindings::ftrace_ops,
    fregs: *mut bindings::ftrace_regs,
) {
    // SAFETY: ftrace passes the ops we registered, which is the `ops` field
    // of a pinned `Redirect` that outlives its registration.
    let this = unsafe { &*kernel::container_of!(op.cast::<Opaque<bindings::ftrace_ops>>(), Redirect, ops) };
    // First the filter: most calls of a filtered function (page-cache
    // lookups of readers and faults) end here.
    if this.wanted.is_some_and(|wanted| !wanted(&Args(fregs))) {
        return; // the replacement would only call the original
    }
    // SAFETY: plain address comparison against this module's layout.
    if unsafe { bindings::ss_within_this_module(parent_ip) } {
        // Our replacement calling the original: let it run.
        return;
    }
    // The original's address is learnt once: reading the instruction
    // before the fentry site (for an ENDBR) and storing to a line that every
    // CPU's redirected calls share cost more than the rest of the callback.
    if this.original.0.load(Relaxed) == 0 {
        // SAFETY: `ip` is the fentry site of a traced kernel function.
        let start = unsafe { bindings::ss_func_start(ip) } as usize;
        this.original.0.store(start, Release);
    }
    // The replacement drops this reference when it returns.
    // SAFETY: no preconditions.
    if !unsafe { bindings::ss_module_get() } {
        return; // module going away: leave the call alone
    }
    // SAFETY: `fregs` comes from ftrace for an IPMODIFY ops.
    unsafe { bindings::ss_ftrace_regs_set_ip(fregs, this.target as c_ulong) };
}

/// A reference to this module, dropped with the value: what keeps `rmmod`
/// out while module code may still run or a promise made by it is still
/// being kept (a redirected call, a process in the stable mode, an
/// io_uring request that asked for the flag, a hold).
///
/// Dropping a redirected call's reference after the call to the original
/// also keeps that call from being compiled as a tail call: the original's
/// fentry must see a return address inside this module, or the callback
/// would redirect it again.
pub(crate) struct ModuleRef(());

impl ModuleRef {
    /// # Safety
    ///
    /// Only the replacement function of a [`Redirect`] may call this, once,
    /// at its start: it adopts the reference [`redirect_callback`] took.
    pub(crate) unsafe fn adopt() -> Self {
        Self(())
    }

    /// A new reference; `None` while the module is being unloaded.
    pub(crate) fn get() -> Option<Self> {
        // SAFETY: no preconditions.
        unsafe { bindings::ss_module_get() }.then(|| Self(()))
    }

    /// Another reference, without a liveness check.
    ///
    /// # Safety
    ///
    /// The caller, or one up its stack, holds a reference for the duration
    /// of the call (a redirected call's, or module init's).
    pub(crate) unsafe fn another() -> Self {
        // SAFETY: per the caller, the module is pinned: cannot fail.
        unsafe { bindings::ss_module_get_more() };
        Self(())
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: the reference this value owns (the callback's, or one
        // taken by `get`/`another`).
        unsafe { bindings::ss_module_put() };
    }
}
