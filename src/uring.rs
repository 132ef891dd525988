// SPDX-License-Identifier: GPL-2.0

//! `IORING_OP_SPLICE` with `SPLICE_F_STABLE`: Samba's asynchronous path.
//!
//! io_uring checks splice flags in `io_splice_prep()` (in the submitter) and
//! runs the splice in `io_splice()` (always in an io-wq worker, the prep
//! forces async). The prep replacement hands the original a private copy of
//! the SQE without the flag and remembers the request; the issue
//! replacement marks the worker for the call, so the same `do_splice_read`
//! replacement as for the syscall makes the buffers stable.

use crate::{
    bindings,
    counters::COUNTERS,
    ftrace::{self, ModuleRef, Original},
    splice::{calls, SPLICE_F_STABLE},
};
use core::{ffi::c_void, mem::MaybeUninit};
use kernel::{
    ffi::{c_int, c_uint},
};

pub(crate) static IO_SPLICE_PREP: Original = Original::new();
pub(crate) static IO_SPLICE: Original = Original::new();
pub(crate) static IO_SPLICE_CLEANUP: Original = Original::new();

/// The `io_splice_prep` calls [`io_splice_prep`] acts on: requests with
/// the flag, and any while requests with it are recorded (a recycled
/// request's stale record goes).
pub(crate) fn io_splice_prep_wants(fregs: *mut bindings::ftrace_regs) -> bool {
    let sqe = ftrace::arg::<1>(fregs) as *const bindings::io_uring_sqe;
    // SAFETY: the SQE being prepared, as io_uring passes it. The prep reads
    // the flags again: a flag that appears in between meets the kernel's
    // own check (EINVAL), one that goes makes a plain splice.
    let flags = unsafe { bindings::ss_sqe_splice_flags(sqe) };
    flags & SPLICE_F_STABLE != 0 || io_splice_wants(fregs)
}

/// The `io_splice` and `io_splice_cleanup` calls their replacements act
/// on: any while requests with the flag are recorded (a record is stored
/// in the prep, before io_uring hands the request on).
pub(crate) fn io_splice_wants(_: *mut bindings::ftrace_regs) -> bool {
    calls().is_some_and(|c| c.has_requests())
}

/// Replacement for `io_splice_prep(struct io_kiocb *, const struct io_uring_sqe *)`.
///
/// # Safety
///
/// Called only in place of `io_splice_prep`, with a request being prepared
/// and its SQE as io_uring passes them; the redirect took a module
/// reference for the call.
pub(crate) unsafe extern "C" fn io_splice_prep(
    req: *mut c_void,
    sqe: *const bindings::io_uring_sqe,
) -> c_int {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = IO_SPLICE_PREP.addr();
    let call = |sqe: *const bindings::io_uring_sqe| {
        // SAFETY: `orig` is `io_splice_prep`; arguments forwarded.
        unsafe { bindings::ss_call_io_prep(orig as _, req, sqe) }
    };
    // SAFETY: `sqe` is the SQE io_uring is preparing.
    let flags = unsafe { bindings::ss_sqe_splice_flags(sqe) };
    let Some(calls) = calls() else {
        return call(sqe);
    };
    if flags & SPLICE_F_STABLE == 0 {
        // A recycled request must not inherit an older request's flag.
        calls.forget_request(req as usize);
        return call(sqe);
    }
    // The original prep and our checks read the same private copy: the
    // submitter may rewrite the shared SQE at any time.
    let mut copy = MaybeUninit::<bindings::io_uring_sqe>::uninit();
    // SAFETY: `copy` has room for one SQE; `sqe` is readable.
    unsafe { bindings::ss_sqe_copy_clearing(copy.as_mut_ptr(), sqe, SPLICE_F_STABLE) };
    // SAFETY: initialised just above.
    let flags = unsafe { bindings::ss_sqe_splice_flags(copy.as_ptr()) };
    let ret = call(copy.as_ptr());
    if ret != 0 {
        calls.forget_request(req as usize);
        return ret;
    }
    // The request pins the module until io_splice_cleanup() (a pipe
    // source is refused at issue, in `do_splice`).
    match calls.set_request(req as usize, flags | SPLICE_F_STABLE) {
        Ok(()) => {
            // SAFETY: prep runs before anybody else sees the request.
            unsafe { bindings::ss_io_req_want_cleanup(req) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Replacement for `io_splice_cleanup(struct io_kiocb *)`: every request
/// accepted with the flag ends here (issued or not), and lets go of the
/// module.
///
/// # Safety
///
/// Called only in place of `io_splice_cleanup`, with a request io_uring is
/// done with; the redirect took a module reference for the call.
pub(crate) unsafe extern "C" fn io_splice_cleanup(req: *mut c_void) {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    if let Some(calls) = calls() {
        calls.forget_request(req as usize);
    }
    // SAFETY: `IO_SPLICE_CLEANUP` is `io_splice_cleanup`; argument forwarded.
    unsafe { bindings::ss_call_io_cleanup(IO_SPLICE_CLEANUP.addr(), req) };
}

/// Replacement for `io_splice(struct io_kiocb *, unsigned int issue_flags)`.
///
/// # Safety
///
/// Called only in place of `io_splice`, with a prepared request and the
/// issue flags as io_uring passes them; the redirect took a module
/// reference for the call.
pub(crate) unsafe extern "C" fn io_splice(req: *mut c_void, issue_flags: c_uint) -> c_int {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = IO_SPLICE.addr();
    let call = || {
        // SAFETY: `orig` is `io_splice`; arguments forwarded.
        unsafe { bindings::ss_call_io_issue(orig as _, req, issue_flags) }
    };
    let Some(calls) = calls() else {
        return call();
    };
    let Some(flags) = calls.request_flags(req as usize) else {
        return call();
    };
    let _marked = match calls.mark_current(flags) {
        Ok(m) => m,
        Err(e) => return e.to_errno(),
    };
    COUNTERS.stable_calls.add(1);
    call()
}
