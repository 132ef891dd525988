// SPDX-License-Identifier: GPL-2.0

//! The replacements that ftrace redirects to: the splice syscall, which
//! accepts `SPLICE_F_STABLE`, and the call of a file's `splice_read`, after
//! which a stable splice's page-cache buffers are made stable while the
//! pipe is still locked.

use kernel::{
    error::code::EINVAL,
    ffi::{c_long, c_uint},
};
use crate::{
    bindings,
    calls::{Calls, SYSCALL_MARK},
    counters::COUNTERS,
    entry_gate,
    ftrace::{self, ModuleRef, Original},
    mode,
    registry::Global,
    stable_buf,
};
use core::ffi::c_void;

pub(crate) const SPLICE_F_STABLE: u32 = bindings::SS_SPLICE_F_STABLE;

pub(crate) static SYS_SPLICE: Original = Original::new();
pub(crate) static DO_SPLICE_READ: Original = Original::new();
pub(crate) static DO_SPLICE: Original = Original::new();

/// The marked tasks; published while the redirects are registered.
pub(crate) static CALLS: Global<Calls> = Global::new();

pub(crate) fn calls() -> Option<&'static Calls> {
    CALLS.get()
}

/// The `splice()` calls [`sys_splice`] acts on: the flag, or a stray
/// [`SYSCALL_MARK`] of the user's to clear.
pub(crate) fn sys_splice_wants(fregs: *mut bindings::ftrace_regs) -> bool {
    let regs = ftrace::arg::<0>(fregs) as *const bindings::pt_regs;
    // SAFETY: the argument of `__x64_sys_splice` is the calling task's
    // saved user register frame.
    let r9 = unsafe { (*regs).r9 } as usize;
    r9 & (SPLICE_F_STABLE as usize | SYSCALL_MARK) != 0
}

/// Whether a `do_splice` call from `input` is a stable splice from a pipe,
/// which [`do_splice`] refuses.
///
/// # Safety
///
/// `input` is the call's input file, which its caller holds open.
unsafe fn stable_from_pipe(input: *mut bindings::file) -> bool {
    // Cheapest first: a plain splice while no stable one is in flight stops
    // at one load, a stable one from a file at the input's type.
    calls().is_some_and(|c| {
        // SAFETY: per the caller.
        Calls::any_in_flight() && unsafe { bindings::ss_file_is_pipe(input) } && c.current_is_stable()
    })
}

/// The `do_splice` calls [`do_splice`] acts on: a stable splice from a
/// pipe. Asked here so that a stable splice from a file does not pass
/// through a replacement that would only call the original.
pub(crate) fn do_splice_wants(fregs: *mut bindings::ftrace_regs) -> bool {
    // SAFETY: the traced call's input file, which its caller holds open.
    unsafe { stable_from_pipe(ftrace::arg::<0>(fregs) as *mut bindings::file) }
}

/// The `do_splice_read` calls [`do_splice_read`] acts on: those of a
/// stable splice, or of a process in the stable mode. The mode is looked
/// up here (one load while no process is in it) rather than in the
/// replacement: with a process in the mode, every other process's splices
/// and `sendfile()`s pass here, and sending them to the replacement only
/// to look it up there cost each a module reference and ftrace's
/// trampoline once more.
pub(crate) fn do_splice_read_wants(_: *mut bindings::ftrace_regs) -> bool {
    calls().is_some_and(Calls::maybe_current) || mode::current_in_mode()
}

/// `ss_direct_do_splice_read` (rust/trampolines.S) asks this while a
/// stable splice is in flight or a process is in the stable mode: whether
/// the replacement has anything to do with the call, as
/// [`do_splice_read_wants`] answers the callback. If so, the module
/// reference the replacement adopts is taken here (none while the module
/// is going, when no stable splice is in flight any more: the call runs as
/// without the module).
#[export_name = "ss_do_splice_read_wanted"]
extern "C" fn do_splice_read_wanted() -> bool {
    // SAFETY: no preconditions.
    do_splice_read_wants(core::ptr::null_mut()) && unsafe { bindings::ss_module_get() }
}

/// `ss_direct_do_splice` (rust/trampolines.S) asks this while a stable
/// splice is in flight, and answers a stable splice from a pipe with
/// `EINVAL` itself, as [`do_splice`] does for the callback.
///
/// # Safety
///
/// `input` is the `do_splice` call's input file, which its caller holds
/// open.
#[export_name = "ss_do_splice_refused"]
unsafe extern "C" fn do_splice_refused(input: *mut bindings::file) -> bool {
    // SAFETY: per the caller.
    unsafe { stable_from_pipe(input) }
}

/// Replacement for `__x64_sys_splice(const struct pt_regs *)`.
///
/// x86-64 passes the sixth syscall argument, `flags`, in `r9`. With the
/// flag set the flag is hidden from the kernel's own check and the call is
/// marked in the upper half of `r9` ([`SYSCALL_MARK`]), which the syscall's
/// 32-bit flags never read; the user's `r9` is put back before returning,
/// so a restarted syscall (ERESTARTSYS) comes through here again with the
/// flag.
///
/// # Safety
///
/// `regs` is the saved user register frame of the calling task, as the
/// syscall entry passes it to `__x64_sys_splice`; the redirect took a
/// module reference for the call.
#[export_name = "ss_redirected_sys_splice"]
pub(crate) unsafe extern "C" fn sys_splice(regs: *mut bindings::pt_regs) -> c_long {
    // SAFETY: we are the replacement the callback or trampoline redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = SYS_SPLICE.addr();
    let direct = SYS_SPLICE.is_direct();
    // SAFETY: `regs` is the syscall's saved user register frame.
    let user_r9 = unsafe { (*regs).r9 };
    let flags = user_r9 as u32;
    let call_orig = |regs: *mut bindings::pt_regs| -> c_long {
        if direct {
            // The trampoline lets a call through whose frame has no system
            // call's number in orig_ax, which only this frame of our own
            // has; the original reads its six arguments from it (x86-64's
            // SYSCALL_DEFINE6 wrapper: di, si, dx, r10, r8, r9).
            // SAFETY: `regs` is the syscall's frame, valid for reads.
            let r = unsafe { &*regs };
            let mut frame = bindings::pt_regs {
                di: r.di,
                si: r.si,
                dx: r.dx,
                r10: r.r10,
                r8: r.r8,
                r9: r.r9,
                orig_ax: bindings::SS_SYSCALL_FROM_REPLACEMENT as _,
                ..Default::default()
            };
            // SAFETY: as below; `frame` outlives the call.
            return unsafe { bindings::ss_call_syscall(orig as _, (&raw mut frame).cast::<c_void>()) };
        }
        // SAFETY: `orig` is the start of `__x64_sys_splice`, whose signature
        // this function shares.
        unsafe { bindings::ss_call_syscall(orig as _, regs.cast::<c_void>()) }
    };
    let mark = if flags & SPLICE_F_STABLE == 0 || calls().is_none() {
        // Plain (or unloading: behave as upstream, EINVAL): only a stray
        // mark bit from the user must not pass for ours.
        if user_r9 & SYSCALL_MARK == 0 {
            return call_orig(regs);
        }
        user_r9 & !SYSCALL_MARK
    } else {
        (user_r9 & !(SPLICE_F_STABLE as usize)) | SYSCALL_MARK
    };
    let stable = mark & SYSCALL_MARK != 0;
    if stable {
        COUNTERS.calls_in_flight.add(1);
        if let Err(e) = entry_gate::arm() {
            COUNTERS.calls_in_flight.sub(1);
            return e.to_errno() as c_long;
        }
        COUNTERS.stable_calls.add(1);
    }
    // SAFETY: as above; the frame is restored before returning to the user.
    unsafe { (*regs).r9 = mark };
    let ret = call_orig(regs);
    // SAFETY: as above.
    unsafe { (*regs).r9 = user_r9 };
    if stable {
        COUNTERS.calls_in_flight.sub(1);
    }
    ret
}

/// Replacement for `do_splice_read(in, ppos, pipe, len, flags)`, the
/// kernel's one caller of a file's `splice_read` (for `splice(2)`,
/// `IORING_OP_SPLICE`, `sendfile()` and every `vfs_splice_read`), pipe
/// locked. For a stable splice, the page-cache buffers it added are made
/// stable before the pipe lock is dropped, after the file system's own
/// `splice_read` returned, so outside any lock it took: xfs holds the
/// inode's `IOLOCK` shared across `filemap_splice_read`, which every
/// buffered writer of the file takes exclusively, and a writer beside a
/// stable splicer waited for the holds taken under it.
///
/// # Safety
///
/// Called only in place of `do_splice_read`, with its arguments as the
/// kernel's splice code passes them (pipe locked); the redirect took a
/// module reference for the call.
#[export_name = "ss_redirected_do_splice_read"]
pub(crate) unsafe extern "C" fn do_splice_read(
    file: *mut c_void,
    ppos: *mut i64,
    pipe: *mut bindings::pipe_inode_info,
    len: usize,
    flags: c_uint,
) -> isize {
    // SAFETY: we are the replacement the callback or trampoline redirected to.
    let module = unsafe { ModuleRef::adopt() };
    let orig = DO_SPLICE_READ.addr();
    // The trampoline takes this mark off and lets the call through.
    let own = if DO_SPLICE_READ.is_direct() { bindings::SS_SPLICE_FROM_REPLACEMENT } else { 0 };
    let call = || {
        // SAFETY: `orig` is `do_splice_read`, whose signature this function
        // shares; arguments forwarded unchanged (but for the mark, which
        // the trampoline takes off).
        unsafe {
            bindings::ss_call_splice_read(orig as _, file, ppos.cast(), pipe.cast(), len, flags | own)
        }
    };
    // The syscall and io_uring paths hide the flag from the kernel's checks
    // and mark the task instead; a process in the stable mode gets every
    // splice into a pipe stable (sendfile()'s internal pipe included).
    if calls().and_then(|c| c.current_flags()).is_none_or(|f| f & SPLICE_F_STABLE == 0) {
        if !mode::current_in_mode() {
            return call();
        }
        COUNTERS.stable_calls.add(1);
        COUNTERS.mode_splices.add(1);
    }
    // SAFETY: the caller holds the pipe lock.
    let head = unsafe { bindings::ss_pipe_head(pipe) };
    // SAFETY: `ppos` is valid for the call.
    let pos = unsafe { *ppos };
    let ret = call();
    if ret <= 0 {
        return ret;
    }
    // SAFETY: pipe lock held until we return; the buffers from `head` to
    // the new head were just added by the `splice_read` of `file`.
    let mut new = unsafe { stable_buf::NewBuffers::new(module.pinned(), file.cast(), pipe, head) };
    match stable_buf::stabilize(&mut new) {
        Ok(()) => ret,
        Err((_, kept)) if kept > 0 => {
            // SAFETY: as above; report only what stayed in the pipe.
            unsafe { *ppos = pos + kept as i64 };
            kept as isize
        }
        Err((e, _)) => {
            // SAFETY: as above.
            unsafe { *ppos = pos };
            e.to_errno() as isize
        }
    }
}

/// Replacement for `do_splice(in, off_in, out, off_out, len, flags)`, which
/// both `splice(2)` and `IORING_OP_SPLICE` reach with the files they
/// resolved: a stable splice from a pipe is refused here, on the very file
/// the kernel splices from (a check of the descriptor before the syscall
/// would race with `dup2`, and would not see io_uring's fixed files).
///
/// # Safety
///
/// Called only in place of `do_splice`, with its arguments as its callers
/// pass them; the redirect took a module reference for the call.
pub(crate) unsafe extern "C" fn do_splice(
    input: *mut bindings::file,
    off_in: *mut i64,
    out: *mut bindings::file,
    off_out: *mut i64,
    len: usize,
    flags: c_uint,
) -> isize {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    // SAFETY: `DO_SPLICE` is `do_splice`; arguments forwarded.
    let call = || unsafe { bindings::ss_call_do_splice(DO_SPLICE.addr(), input, off_in, out, off_out, len, flags) };
    // SAFETY: the caller's open input file.
    if unsafe { stable_from_pipe(input) } {
        // Pipe -> pipe moves buffers as they are, and they may be page-cache
        // references from a plain splice: the flag cannot promise anything.
        return EINVAL.to_errno() as isize;
    }
    call()
}
