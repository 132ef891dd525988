// SPDX-License-Identifier: GPL-2.0

//! Redirecting a kernel function to a replacement in this module with ftrace.
//!
//! The kernel rejects unknown splice flags before any hookable extension
//! point, so the module takes over a few functions the way livepatch does:
//! an `IPMODIFY` ftrace callback rewrites the return address of the fentry
//! call to the replacement. The replacement calls the original through the
//! address looked up when the redirect was registered; that call enters
//! the fentry again, and the callback lets it through because the caller
//! lies in this module.
//!
//! Every redirected call takes a module reference in the callback and the
//! replacement drops it when done (see [`ModuleRef`]), so `rmmod` cannot
//! free the replacement while a task sleeps in it.
//!
//! The two redirects on paths of unrelated work (every writer's page-cache
//! lookup, every store fault into a shared file mapping) pick the calls to
//! redirect in a few instructions of C (callbacks in rust/direct.c) without
//! a module reference; their replacements count themselves in a per-CPU
//! reference ([`DirectCall`]) that unload waits for. With `direct_calls=1`
//! they are ftrace direct calls, as BPF trampolines are: the fentry call
//! goes straight to a trampoline in `rust/trampolines.S`, with no
//! ftrace_regs saved and no return through ftrace. A function has one
//! direct call at most, so that keeps BPF fentry/fexit programs off the two
//! functions, for 0.2% less work per buffered write; where a BPF program
//! has the direct call already, the redirect falls back to the callback.
//! With `direct_calls=1` the three splice entry points ([`Target::Entry`])
//! are direct calls too: their trampolines decline a plain splice in a few
//! instructions and take the module reference the replacement adopts, as
//! the callback does.

use crate::bindings;
use core::{
    marker::PhantomData,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};
use kernel::ffi::c_ulong;
use kernel::{
    error::to_result,
    prelude::*,
    str::CStr,
    sync::atomic::{Atomic, Relaxed, Release},
    types::Opaque,
};

/// Where the original of a redirected function lives: set when its
/// redirect is registered (or, for `do_page_mkwrite`, which no lookup by
/// name finds on every kernel, by the first redirected call).
///
/// A core atomic, not `kernel::sync::atomic`: every stable splice reads it,
/// and there a load is an out-of-line C helper call on kernels built
/// without inlined Rust helpers (GCC builds, Debian's).
pub(crate) struct Original {
    addr: AtomicUsize,
    direct: AtomicBool,
}

impl Original {
    pub(crate) const fn new() -> Self {
        Self { addr: AtomicUsize::new(0), direct: AtomicBool::new(false) }
    }

    /// Address of the original function. Only meaningful inside the
    /// replacement, which runs only after [`Original::set`] or
    /// [`Original::learn`].
    pub(crate) fn addr(&self) -> usize {
        self.addr.load(Ordering::Acquire)
    }

    /// Whether the replacement's calls come from a direct trampoline
    /// ([`Target::Entry`] with `direct_calls=1`), which knows the
    /// replacement's own call of the original by a mark in its arguments
    /// rather than by its caller. Set before the redirect is registered,
    /// cleared before it falls back to the callback, so no replacement
    /// (which holds a module reference, hence the registration) sees it
    /// change.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.load(Ordering::Relaxed)
    }

    fn set_direct(&self, direct: bool) {
        self.direct.store(direct, Ordering::Relaxed);
    }

    /// Sets the original from the address of its fentry call (behind the
    /// function's ENDBR on IBT kernels), before its redirect is registered.
    fn set(&self, fentry_ip: usize) {
        // SAFETY: `fentry_ip` is the fentry site of a kernel function.
        let start = unsafe { bindings::ss_func_start(fentry_ip as c_ulong) } as usize;
        self.addr.store(start, Ordering::Release);
    }

    /// Learns the original from the address of its fentry call, once:
    /// reading the instruction before it (for an ENDBR) and storing to a
    /// line that every CPU's redirected calls share would cost more than
    /// the rest of a redirect; `fentry_ip` is asked only then.
    pub(crate) fn learn(&self, fentry_ip: impl FnOnce() -> usize) {
        if self.addr.load(Ordering::Relaxed) == 0 {
            self.set(fentry_ip());
        }
    }
}

/// An ftrace redirect of one kernel function, active while registered.
#[pin_data(PinnedDrop)]
pub(crate) struct Redirect {
    #[pin]
    ops: Opaque<bindings::ftrace_ops>,
    kind: Kind,
    /// [`Via::raw`] of how it is registered, 0 while it is not.
    registered: Atomic<i32>,
}

enum Kind {
    /// [`redirect_callback`] sends every call but the replacement's own
    /// that `wants` picks (all without it) to `target`; `original` is set
    /// when it is registered. With a `trampoline` and `direct_calls=1` the
    /// fentry call goes to that trampoline instead, which picks the calls
    /// as `wants` does, unless the function's one direct call is taken.
    Callback { target: usize, original: &'static Original, wants: Option<Wants>, trampoline: Option<usize> },
    /// ftrace calls `callback` (rust/direct.c), which picks the calls for
    /// the replacement itself; with `direct_calls=1` the fentry call goes to
    /// `trampoline` (rust/trampolines.S), which picks them the same way,
    /// unless the function's one direct call is taken.
    Direct { trampoline: usize, callback: Callback },
}

/// Which calls of a redirected function its replacement has anything to
/// do with, asked in the callback with the call's arguments (read with
/// [`arg`]) before the module reference is taken: a call it does not pick
/// runs as if the module were not loaded but for the callback itself. The
/// splice entry points pick only stable splices (and what must be cleaned
/// up after one): every plain splice in the system passes through them,
/// and sending each to its replacement (a module reference, the ftrace
/// trampoline once more for the original) cost a 4 KiB plain splice a
/// third of its speed. It must pick every call whose replacement would
/// act; picking more only costs time.
pub(crate) type Wants = fn(*mut bindings::ftrace_regs) -> bool;

/// Argument `N` of the traced call, in a [`Wants`]. On x86-64 the
/// `ftrace_regs` of an `IPMODIFY` ops are the traced call's `pt_regs`
/// (rust/ftrace.c checks it at build time): read here, inline, rather than
/// through `ftrace_regs_get_argument()` in C, because every splice in the
/// system asks.
pub(crate) fn arg<const N: u32>(fregs: *mut bindings::ftrace_regs) -> usize {
    // The six register arguments of x86-64; no traced function here takes more.
    const { assert!(N < 6) };
    let regs = fregs.cast::<bindings::pt_regs>();
    // SAFETY: `fregs` is the traced call's, which ftrace hands the
    // callback, and begins with its saved `pt_regs`.
    let value = unsafe {
        match N {
            0 => (*regs).di,
            1 => (*regs).si,
            2 => (*regs).dx,
            3 => (*regs).cx,
            4 => (*regs).r8,
            _ => (*regs).r9,
        }
    };
    value as usize
}

/// Whether `addr` lies in this module's core text, where the replacements
/// call their originals from; inline for the same reason as [`arg`].
fn within_this_module(addr: c_ulong) -> bool {
    // SAFETY: `ss_direct_init` sets both before any redirect is
    // registered; they do not change afterwards.
    let (start, size) = unsafe { (bindings::ss_text_start, bindings::ss_text_size) };
    addr.wrapping_sub(start) < size
}

/// An ftrace callback of rust/direct.c.
pub(crate) type Callback =
    unsafe extern "C" fn(c_ulong, c_ulong, *mut bindings::ftrace_ops, *mut bindings::ftrace_regs);

/// The redirects `direct_calls=1` makes direct calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DirectCapable {
    /// A writer redirect ([`Target::Trampoline`]).
    Writer,
    /// A splice entry point ([`Target::Entry`]).
    SpliceEntry,
}

/// How a registered [`Redirect`] gets its calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Via {
    /// An ftrace callback (every redirect but those that, with
    /// `direct_calls=1`, found their function's direct call free: the two
    /// writer redirects and the three splice entry points).
    Callback,
    /// A direct call into a trampoline.
    DirectCall,
}

impl Via {
    /// As [`Redirect`] keeps it: never 0, which means not registered.
    fn raw(self) -> i32 {
        match self {
            Via::Callback => 1,
            Via::DirectCall => 2,
        }
    }

    fn from_raw(raw: i32) -> Option<Self> {
        [Via::Callback, Via::DirectCall].into_iter().find(|v| v.raw() == raw)
    }
}

// SAFETY: after initialisation the ftrace_ops is only touched by ftrace under
// its own locking; the other fields are immutable or atomic.
unsafe impl Sync for Redirect {}
// SAFETY: see `Sync`; nothing is tied to the creating thread.
unsafe impl Send for Redirect {}

/// Where a redirected kernel function goes.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// A replacement: an `extern "C"` function with the signature of the
    /// function it replaces, which calls the original through `Original`,
    /// for every call or those a [`Wants`] picks.
    Replacement(usize, &'static Original, Option<Wants>),
    /// A splice entry point: a trampoline of rust/trampolines.S (with
    /// `direct_calls=1`) and the [`Target::Replacement`] it stands for (the
    /// default, and where the function's direct call is taken). The
    /// trampoline picks the calls as the `Wants` does, in a few
    /// instructions while no stable splice is in flight, takes the module
    /// reference the replacement adopts, and lets the replacement's own
    /// call through by a mark in its arguments ([`Original::is_direct`]).
    Entry(usize, usize, &'static Original, Wants),
    /// A trampoline of rust/trampolines.S (with `direct_calls=1`) and its
    /// twin, an ftrace callback of rust/direct.c (the default, and where
    /// the function's direct call is taken): both pick the calls for their
    /// replacement themselves.
    Trampoline(usize, Callback),
}

impl Redirect {
    /// A redirect to `target` of the function later named in
    /// [`Redirect::register`].
    pub(crate) fn new(target: Target) -> impl PinInit<Self> {
        match target {
            // No FTRACE_OPS_FL_RECURSION: the callback calls no function
            // that any redirect traces, so it cannot recurse, and the
            // trampoline calls it directly.
            Target::Replacement(target, original, wants) => Self::with(
                Kind::Callback { target, original, wants, trampoline: None },
                Some(redirect_callback),
                bindings::SS_FTRACE_REDIRECT_FLAGS as c_ulong,
            ),
            // As a direct redirect; `register` makes it a callback one
            // where it does not become a direct call.
            Target::Entry(trampoline, target, original, wants) => Self::with(
                Kind::Callback { target, original, wants: Some(wants), trampoline: Some(trampoline) },
                None,
                0,
            ),
            // register_ftrace_direct() sets the ops' function and the
            // flags of a direct call (an IPMODIFY flag would be refused
            // beside them).
            Target::Trampoline(trampoline, callback) => {
                Self::with(Kind::Direct { trampoline, callback }, None, 0)
            }
        }
    }

    fn with(kind: Kind, func: bindings::ftrace_func_t, flags: c_ulong) -> impl PinInit<Self> {
        pin_init!(Self {
            ops <- Opaque::ffi_init(|ops: *mut bindings::ftrace_ops| {
                // SAFETY: `ops` points at uninitialised memory for an
                // ftrace_ops; an all-zero ftrace_ops is its documented
                // initial state, then we set the callback and flags.
                unsafe {
                    ops.write_bytes(0, 1);
                    (*ops).func = func;
                    // PERMANENT: where the ftrace_enabled sysctl still
                    // switches ftrace off (7.3 has deprecated it and refuses
                    // every 0 with EOPNOTSUPP; older kernels obey), a 0 would drop
                    // every redirect and leave holds unguarded; ftrace
                    // refuses it with EBUSY while we are loaded.
                    (*ops).flags = flags | bindings::SS_FTRACE_OPS_FL_PERMANENT as c_ulong;
                }
            }),
            kind,
            registered: Atomic::new(0),
        })
    }

    /// Starts redirecting calls of the kernel function `name`, found at
    /// `addr` by [`lookup`].
    pub(crate) fn register(self: Pin<&Self>, name: &CStr, addr: usize) -> Result {
        // SAFETY: `ops` is initialised and pinned; ftrace checks that
        // `addr` is a traceable function (-ENOENT otherwise).
        to_result(unsafe { bindings::ftrace_set_filter_ip(self.ops.get(), addr as c_ulong, 0, 1) })
            .inspect_err(|_| pr_err!("stable_splice: cannot trace {:?}\n", name))?;
        let via = match self.kind {
            Kind::Callback { original, trampoline: None, .. } => {
                original.set(addr);
                self.register_callback()
            }
            Kind::Callback { original, trampoline: Some(trampoline), .. } => {
                original.set(addr);
                // Before the first call can come through the trampoline,
                // and off again before one can come through the callback.
                // SAFETY: no preconditions.
                original.set_direct(unsafe { bindings::ss_direct_calls_wanted() });
                self.register_direct_or(name, trampoline, redirect_callback, || original.set_direct(false))
            }
            Kind::Direct { trampoline, callback } => self.register_direct_or(name, trampoline, callback, || ()),
        }
        .inspect_err(|e| pr_err!("stable_splice: cannot redirect {:?}: {:?}\n", name, e))?;
        self.registered.store(via.raw(), Release);
        Ok(())
    }

    /// With `direct_calls=1` a direct call to `trampoline`; otherwise, or
    /// where the function's one direct call is somebody else's (then after
    /// `falling_back`), a callback redirect to `callback`.
    fn register_direct_or(&self, name: &CStr, trampoline: usize, callback: Callback, falling_back: impl FnOnce()) -> Result<Via> {
        // SAFETY: no preconditions.
        if !unsafe { bindings::ss_direct_calls_wanted() } {
            return self.register_callback_instead(callback);
        }
        // SAFETY: the ops is initialised and pinned, without a callback or
        // flags; unregistered in `drop` before it goes away. EBUSY (the
        // function's one direct call is somebody else's) comes before
        // ftrace touches the ops.
        match to_result(unsafe { bindings::register_ftrace_direct(self.ops.get(), trampoline as c_ulong) }) {
            Ok(()) => Ok(Via::DirectCall),
            Err(e) if e == EBUSY => {
                pr_info!(
                    "stable_splice: {:?} has a direct call already (a BPF program?): redirecting through an ftrace callback, not direct_calls\n",
                    name
                );
                falling_back();
                self.register_callback_instead(callback)
            }
            Err(e) => Err(e),
        }
    }

    /// A direct redirect registered as a callback redirect to `callback`.
    fn register_callback_instead(&self, callback: Callback) -> Result<Via> {
        // SAFETY: the ops is not registered (register_ftrace_direct() left
        // it alone or was not called): a callback ops wants its function
        // and the redirect flags.
        unsafe {
            (*self.ops.get()).func = Some(callback);
            (*self.ops.get()).flags |= bindings::SS_FTRACE_REDIRECT_FLAGS as c_ulong;
        }
        self.register_callback()
    }

    fn register_callback(&self) -> Result<Via> {
        // SAFETY: `ops` is initialised and pinned, with its callback and
        // flags; unregistered in `drop` before it goes away.
        to_result(unsafe { bindings::register_ftrace_function(self.ops.get()) })?;
        Ok(Via::Callback)
    }

    /// How calls are being redirected right now; `None` when they are not.
    pub(crate) fn via(&self) -> Option<Via> {
        Via::from_raw(self.registered.load(Relaxed))
    }

    /// Which kind of redirect a direct call could take the calls of
    /// (`direct_calls=1`), if any.
    pub(crate) fn direct_capable(&self) -> Option<DirectCapable> {
        match self.kind {
            Kind::Direct { .. } => Some(DirectCapable::Writer),
            Kind::Callback { trampoline: Some(_), .. } => Some(DirectCapable::SpliceEntry),
            Kind::Callback { trampoline: None, .. } => None,
        }
    }

    /// Whether calls are being redirected right now.
    pub(crate) fn is_registered(&self) -> bool {
        self.via().is_some()
    }

    /// Whether calls are being redirected through an ftrace callback.
    pub(crate) fn is_callback(&self) -> bool {
        self.via() == Some(Via::Callback)
    }

    /// Stops redirecting calls, if through a callback, until
    /// [`Redirect::register_again`]. ftrace waits for the callbacks still
    /// running; a replacement they sent a call to keeps its module
    /// reference and runs on.
    pub(crate) fn unregister_callback(&self) {
        if !self.is_callback() {
            return;
        }
        // SAFETY: the ops is registered as a callback (`via`).
        if unsafe { bindings::unregister_ftrace_function(self.ops.get()) } == 0 {
            self.registered.store(0, Release);
        }
    }

    /// Redirects calls through the callback again after
    /// [`Redirect::unregister_callback`]: the ops kept its callback, flags
    /// and filter from [`Redirect::register`].
    pub(crate) fn register_again(&self) -> Result {
        if self.is_registered() {
            return Ok(());
        }
        self.register_callback()?;
        self.registered.store(Via::Callback.raw(), Release);
        Ok(())
    }
}

#[pinned_drop]
impl PinnedDrop for Redirect {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered in `register` as `via` says; ftrace waits for
        // tasks in callbacks and trampolines before this returns.
        unsafe {
            match (self.via(), &self.kind) {
                (None, _) => 0,
                (Some(Via::Callback), _) => bindings::unregister_ftrace_function(self.ops.get()),
                (Some(Via::DirectCall), Kind::Direct { trampoline, .. })
                | (Some(Via::DirectCall), Kind::Callback { trampoline: Some(trampoline), .. }) => {
                    bindings::unregister_ftrace_direct(self.ops.get(), *trampoline as c_ulong, false)
                }
                (Some(Via::DirectCall), Kind::Callback { trampoline: None, .. }) => 0, // never registered so
            }
        };
        // The hash that `ftrace_set_filter_ip` allocated is freed with the ops.
        // SAFETY: the ops is unregistered (or never was) and not used again.
        unsafe { bindings::ftrace_free_filter(self.ops.get()) };
    }
}

/// The addresses of the kernel functions `names`, all looked up at once
/// (rust/symbols.c: ftrace's lookup by name walks every traceable function
/// per name, and finds no static function's address for the module).
pub(crate) fn lookup<const N: usize>(names: &[&CStr; N]) -> Result<[usize; N]> {
    let ptrs = names.map(|n| n.as_ptr().cast::<kernel::ffi::c_char>());
    let mut addrs = [0 as c_ulong; N];
    // SAFETY: `ptrs` holds N NUL-terminated names and `addrs` room for N
    // addresses; both outlive the call.
    let ret = unsafe { bindings::ss_lookup_functions(ptrs.as_ptr(), addrs.as_mut_ptr(), N as i32) };
    to_result(ret).inspect_err(|e| pr_err!("stable_splice: cannot find the functions it uses: {:?}\n", e))?;
    Ok(addrs.map(|a| a as usize))
}

/// The ftrace callback: runs at the entry of the traced function, maybe
/// preemptible (ftrace waits for tasks in callbacks when the ops is
/// unregistered).
///
/// # Safety
///
/// Called only by ftrace for a registered [`Redirect`]'s ops, with that
/// ops and the traced call's `ftrace_regs`.
unsafe extern "C" fn redirect_callback(
    _ip: c_ulong,
    parent_ip: c_ulong,
    op: *mut bindings::ftrace_ops,
    fregs: *mut bindings::ftrace_regs,
) {
    // SAFETY: ftrace passes the ops we registered, which is the `ops` field
    // of a pinned `Redirect` that outlives its registration.
    let this = unsafe { &*kernel::container_of!(op.cast::<Opaque<bindings::ftrace_ops>>(), Redirect, ops) };
    let Kind::Callback { target, wants, .. } = this.kind else {
        return; // not registered with this callback
    };
    if within_this_module(parent_ip) {
        // Our replacement calling the original: let it run.
        return;
    }
    if wants.is_some_and(|wants| !wants(fregs)) {
        return; // nothing for the replacement to do
    }
    // The replacement drops this reference when it returns.
    // SAFETY: no preconditions.
    if !unsafe { bindings::ss_module_get() } {
        return; // module going away: leave the call alone
    }
    // SAFETY: `fregs` comes from ftrace for an IPMODIFY ops, which returns
    // to the saved `ip` (see [`arg`] for the layout).
    unsafe { (*fregs.cast::<bindings::pt_regs>()).ip = target as c_ulong };
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
///
/// # Invariants
///
/// Each value owns one reference to this module (`module_put` on drop).
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

    /// Proof, for as long as this reference lives, that the module stays.
    pub(crate) fn pinned(&self) -> Pinned<'_> {
        Pinned(PhantomData)
    }

    /// Another reference, without a liveness check: `pinned` proves one
    /// is held.
    pub(crate) fn another(_pinned: Pinned<'_>) -> Self {
        // SAFETY: a reference is held while `_pinned` lives (see
        // `Pinned`): this one cannot fail.
        unsafe { bindings::ss_module_get_more() };
        Self(())
    }
}

/// Proof that the module stays loaded for `'a`: only a live [`ModuleRef`]
/// hands one out, so what needs the module pinned (a new file entry of
/// the holds takes a module reference without a liveness check) takes a
/// `Pinned` instead of being `unsafe`.
///
/// # Invariants
///
/// A module reference is held for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct Pinned<'a>(PhantomData<&'a ModuleRef>);

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: the reference this value owns (the callback's, or one
        // taken by `get`/`another`).
        unsafe { bindings::ss_module_put() };
    }
}

/// A replacement entered through a direct trampoline, counted until it
/// returns: module unload waits for these after the direct redirects are
/// gone (`ss_direct_drain`).
///
/// # Invariants
///
/// Each value is one count of the direct calls in flight, taken in
/// [`DirectCall::enter`] and given back on drop.
pub(crate) struct DirectCall(());

impl DirectCall {
    /// # Safety
    ///
    /// Only the replacement of a direct redirect may call this, at its start.
    pub(crate) unsafe fn enter() -> Self {
        // SAFETY: the count lives from module init to after the direct
        // redirects are unregistered.
        unsafe { bindings::ss_direct_call_enter() };
        Self(())
    }
}

impl Drop for DirectCall {
    fn drop(&mut self) {
        // SAFETY: entered in `enter`.
        unsafe { bindings::ss_direct_call_exit() };
    }
}

/// The count of [`DirectCall`]s, from module init until every direct
/// redirect is gone: dropping it waits for the replacements still running.
pub(crate) struct DirectCalls(());

impl DirectCalls {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: called once, at module init.
        to_result(unsafe { bindings::ss_direct_init() })?;
        Ok(Self(()))
    }
}

impl Drop for DirectCalls {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; the owner drops the direct
        // redirects first, so no new call enters.
        unsafe { bindings::ss_direct_drain() };
    }
}
