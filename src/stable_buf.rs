// SPDX-License-Identifier: GPL-2.0

//! Stable pipe buffers: what a stable splice leaves in the pipe.
//!
//! After the file system's `splice_read` filled the pipe with references to
//! page-cache folios, [`stabilize`] turns each of them into a [`StableBuf`]:
//! a buffer whose page nobody but the pipe can write. Today that is a
//! private copy taken under the folio lock, while splice still holds the
//! pipe lock, so no consumer has seen the page-cache reference.
//!
//! Stable buffers never set `PIPE_BUF_FLAG_CAN_MERGE` (a later write into
//! the pipe gets a fresh buffer) and cannot be stolen, so no sink can turn
//! them into a write path (Dirty Pipe, CVE-2022-0847).

use crate::{bindings, counters::COUNTERS};
use kernel::prelude::*;

type PipeBuffer = bindings::pipe_buffer;
type Pipe = bindings::pipe_inode_info;

/// The buffer operations of stable buffers. Each buffer holds a module
/// reference so that `rmmod` refuses while one sits in a pipe.
static STABLE_BUF_OPS: bindings::pipe_buf_operations = bindings::pipe_buf_operations {
    confirm: None,
    release: Some(stable_buf_release),
    try_steal: None,
    get: Some(stable_buf_get),
};

unsafe extern "C" fn stable_buf_release(_pipe: *mut Pipe, buf: *mut PipeBuffer) {
    // SAFETY: the pipe code passes one of our buffers, which owns a page
    // reference and a module reference.
    unsafe {
        bindings::ss_put_page((*buf).page);
        COUNTERS.buffers_live.sub(1);
        bindings::ss_module_put();
    }
}

unsafe extern "C" fn stable_buf_get(_pipe: *mut Pipe, buf: *mut PipeBuffer) -> bool {
    // SAFETY: `buf` is one of our live buffers (tee duplicates it); the
    // module is pinned by that buffer's reference, so `get` cannot fail.
    unsafe {
        if !bindings::ss_try_get_page((*buf).page) {
            return false;
        }
        bindings::ss_module_get();
    }
    COUNTERS.buffers_live.add(1);
    true
}

/// Whether `buf` is one of ours.
pub(crate) fn is_stable_buf(buf: &PipeBuffer) -> bool {
    core::ptr::eq(buf.ops, &STABLE_BUF_OPS)
}

/// Makes the buffers in slots `[from, to)` of `pipe` stable.
///
/// On failure the pipe is truncated to the buffers that were made stable
/// (never exposing an unstable one) and the number of bytes kept is
/// returned as the error's payload.
///
/// # Safety
///
/// The caller holds the pipe lock and `[from, to)` are buffers that a
/// `splice_read` just added at the head.
pub(crate) unsafe fn stabilize(pipe: *mut Pipe, from: u32, to: u32) -> Result<(), (Error, usize)> {
    let mut kept = 0usize;
    let mut slot = from;
    while slot != to {
        // SAFETY: the caller holds the pipe lock; `slot` is occupied.
        let buf = unsafe { &mut *bindings::ss_pipe_buf(pipe, slot) };
        // SAFETY: `buf` is a valid, locked pipe buffer.
        if let Err(e) = unsafe { make_stable(pipe, buf) } {
            // SAFETY: same lock; drops the unconverted tail.
            unsafe { truncate(pipe, slot, to) };
            return Err((e, kept));
        }
        kept += buf.len as usize;
        slot = slot.wrapping_add(1);
    }
    Ok(())
}

/// # Safety
///
/// Pipe lock held, `buf` a valid buffer of `pipe` no consumer has seen.
unsafe fn make_stable(pipe: *mut Pipe, buf: &mut PipeBuffer) -> Result {
    // SAFETY: `buf.page` is referenced by the buffer.
    if is_stable_buf(buf) || !unsafe { bindings::ss_page_in_page_cache(buf.page) } {
        // Anonymous pages (copy_splice_read, the zero page) are already
        // private to the pipe.
        return Ok(());
    }
    // SAFETY: no preconditions.
    let copy = unsafe { bindings::ss_alloc_page() };
    if copy.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `buf.page` is a page-cache page we hold a reference to; the
    // folio lock keeps write()/truncate from changing it mid-copy, so the
    // copy is one whole version of every page-aligned block. Lock order
    // pipe -> folio, as in filemap_splice_read.
    unsafe {
        let folio = bindings::ss_page_folio(buf.page);
        bindings::ss_folio_lock(folio);
        bindings::ss_memcpy_page(copy, buf.offset, buf.page, buf.offset, buf.len as usize);
        bindings::folio_unlock(folio);
    }
    // SAFETY: releases the page-cache reference through the buffer's own
    // operations, then takes the buffer over.
    unsafe {
        if let Some(release) = (*buf.ops).release {
            release(pipe, buf);
        }
        bindings::ss_module_get();
    }
    buf.page = copy;
    buf.ops = &STABLE_BUF_OPS;
    buf.flags = 0;
    buf.private = 0;
    COUNTERS.buffers_live.add(1);
    COUNTERS.bytes_copied_at_splice.add(buf.len as i64);
    Ok(())
}

/// Releases buffers `[from, to)` and moves the pipe head back to `from`.
///
/// # Safety
///
/// Pipe lock held; `[from, to)` are the newest buffers and `to` the head.
unsafe fn truncate(pipe: *mut Pipe, from: u32, to: u32) {
    let mut slot = from;
    while slot != to {
        // SAFETY: the slot is occupied and we hold the lock.
        unsafe {
            let buf = bindings::ss_pipe_buf(pipe, slot);
            if let Some(release) = (*(*buf).ops).release {
                release(pipe, buf);
            }
            (*buf).ops = core::ptr::null();
        }
        slot = slot.wrapping_add(1);
    }
    // SAFETY: lock held; the slots past `from` are released.
    unsafe { bindings::ss_pipe_set_head(pipe, from) };
}
