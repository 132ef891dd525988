// SPDX-License-Identifier: GPL-2.0

//! The writer choke points: replacements that break a hold before a writer
//! can change a held folio in place (see `src/hold.rs`).
//!
//! - `__filemap_get_folio_mpol` with `FGP_LOCK` and `FGP_WRITE` or
//!   `FGP_CREAT`: `write_begin` of ext4 and iomap (write, pwrite, writev,
//!   io_uring writes, splice and copy_file_range into the file), iomap's
//!   zeroing and ext4's partial block zeroing (truncate, punch hole, zero
//!   range).
//! - `do_page_mkwrite`: the first store through a shared mapping (holds
//!   write-protect the folio's ptes when they are taken).
//! - `truncate_inode_pages_range`: zeroes the partial folios at both ends
//!   in place (truncate to a size inside a folio, punch hole).
//! - `notify_change` with a new size: the file system may set `i_size`
//!   before it truncates the page cache, and writeback zeroes a folio
//!   beyond `i_size` in place, so holds are broken before the size changes
//!   and kept out until the truncation is done.
//!
//! O_DIRECT writes and eviction of an unlinked file take folios out of the
//! page cache without writing them, which leaves the pipe's copy alone.
//!
//! The first two check after the original returned the folio locked: a
//! hold needs the folio lock, so none can appear between the check and the
//! write. Truncation zeroes inside the original, so new holds on the
//! mapping are kept out while it runs.

use crate::{
    bindings as b,
    ftrace::{ModuleRef, Original},
    hold::holds,
};
use core::ffi::c_void;

pub(crate) static GET_FOLIO: Original = Original::new();
pub(crate) static PAGE_MKWRITE: Original = Original::new();
pub(crate) static TRUNCATE_RANGE: Original = Original::new();
pub(crate) static NOTIFY_CHANGE: Original = Original::new();

type Folio = b::folio;
type Mapping = b::address_space;

/// How many times a writer's lookup evicts a held folio before it takes
/// what it gets (each round needs a new stable splice of the new folio in
/// between, so this bounds the writer against a splicing loop).
const LOOKUP_ROUNDS: usize = 4;

fn is_err(folio: *mut Folio) -> bool {
    // SAFETY: only inspects the pointer value.
    unsafe { b::ss_err_ptr(folio.cast()) != 0 }
}

/// Replacement for `__filemap_get_folio_mpol()`.
pub(crate) unsafe extern "C" fn get_folio(
    mapping: *mut Mapping,
    index: usize,
    fgp: u32,
    gfp: u32,
    policy: *mut c_void,
) -> *mut Folio {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = GET_FOLIO.addr();
    // SAFETY: `orig` is `__filemap_get_folio_mpol`; arguments forwarded.
    let lookup = || unsafe { b::ss_call_get_folio(orig, mapping, index as _, fgp, gfp, policy) };
    let writer = fgp & b::SS_FGP_LOCK != 0 && fgp & (b::SS_FGP_WRITE | b::SS_FGP_CREAT) != 0;
    let mut folio = lookup();
    let Some(holds) = holds().filter(|_| writer) else {
        return folio;
    };
    for _ in 0..LOOKUP_ROUNDS {
        // SAFETY: a successful lookup returns a referenced folio.
        if is_err(folio) || !unsafe { holds.is_held(mapping, folio) } {
            return folio;
        }
        // SAFETY: the lookup locked it (FGP_LOCK) and gave us a reference;
        // the caller's file keeps `mapping` alive.
        unsafe {
            b::folio_unlock(folio);
            holds.break_hold(mapping, folio, 1);
            b::ss_folio_put(folio);
        }
        folio = lookup();
    }
    folio
}

/// Replacement for `do_page_mkwrite(struct vm_fault *, struct folio *)`.
pub(crate) unsafe extern "C" fn page_mkwrite(vmf: *mut b::vm_fault, folio: *mut Folio) -> u32 {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    // SAFETY: `PAGE_MKWRITE` holds `do_page_mkwrite`; arguments forwarded.
    let ret = unsafe { b::ss_call_page_mkwrite(PAGE_MKWRITE.addr(), vmf, folio) };
    if ret & (b::SS_VM_FAULT_ERROR | b::SS_VM_FAULT_NOPAGE) != 0 || ret & b::SS_VM_FAULT_LOCKED == 0 {
        return ret;
    }
    let Some(holds) = holds() else {
        return ret;
    };
    // SAFETY: the fault holds the vma, hence the file and its mapping.
    let mapping = unsafe { b::ss_vmf_mapping(vmf) };
    // SAFETY: the fault path holds a reference to `folio`.
    if mapping.is_null() || !unsafe { holds.is_held(mapping, folio) } {
        return ret;
    }
    // The folio is locked and about to become writable: let go of it and
    // have the fault retried, which finds the page cache without it.
    // SAFETY: locked by the original (VM_FAULT_LOCKED); the fault's
    // reference stays with the caller, which drops it on NOPAGE.
    unsafe {
        b::folio_unlock(folio);
        holds.break_hold(mapping, folio, 1);
    }
    b::SS_VM_FAULT_NOPAGE
}

/// Replacement for `truncate_inode_pages_range(mapping, lstart, lend)`.
pub(crate) unsafe extern "C" fn truncate_inode_pages_range(mapping: *mut Mapping, lstart: i64, lend: i64) {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = TRUNCATE_RANGE.addr();
    // SAFETY: `orig` is `truncate_inode_pages_range`; arguments forwarded.
    let truncate = || unsafe { b::ss_call_truncate_range(orig, mapping, lstart, lend) };
    // Dropping a whole page cache (eviction, lstart 0 to the end) zeroes
    // nothing; that is also the call reclaim makes.
    let Some(holds) = holds().filter(|_| !(lstart == 0 && lend == -1)) else {
        return truncate();
    };
    let _truncation = holds.truncation(mapping);
    for pos in [lstart, lend] {
        // SAFETY: the truncating caller keeps `mapping` alive.
        unsafe { break_at(holds, mapping, pos) };
    }
    truncate()
}

/// Breaks the hold on the folio that contains byte `pos` of `mapping`, if any.
///
/// # Safety
///
/// `mapping` is kept alive by the caller, who holds no folio lock.
unsafe fn break_at(holds: &crate::hold::Holds, mapping: *mut Mapping, pos: i64) {
    if pos < 0 {
        return;
    }
    let index = (pos / b::SS_PAGE_SIZE) as usize;
    // SAFETY: a plain lookup (no flags); our own call is not redirected.
    let folio = unsafe { b::__filemap_get_folio_mpol(mapping, index as _, 0, 0, core::ptr::null_mut()) };
    if is_err(folio) {
        return;
    }
    // SAFETY: referenced by the lookup; `mapping` alive per the caller.
    unsafe {
        if holds.is_held(mapping, folio) {
            holds.break_hold(mapping, folio, 1);
        }
        b::ss_folio_put(folio);
    }
}

/// Replacement for `notify_change(idmap, dentry, attr, delegated_inode)`.
pub(crate) unsafe extern "C" fn notify_change(
    idmap: *mut c_void,
    dentry: *mut b::dentry,
    attr: *mut b::iattr,
    delegated: *mut c_void,
) -> i32 {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    // SAFETY: `NOTIFY_CHANGE` is `notify_change`; arguments forwarded.
    let change = || unsafe { b::ss_call_notify_change(NOTIFY_CHANGE.addr(), idmap, dentry, attr, delegated) };
    let mut size = 0i64;
    // SAFETY: the caller's dentry and attributes.
    let mapping = unsafe { b::ss_iattr_new_size(dentry, attr, &mut size) };
    let Some(holds) = holds().filter(|_| !mapping.is_null()) else {
        return change();
    };
    // The caller holds the inode lock: no writer moves the size meanwhile,
    // and the data below the old size is written back before it changes.
    let _truncation = holds.truncation(mapping);
    // SAFETY: the caller's dentry keeps the inode and its mapping alive.
    unsafe { break_at(holds, mapping, size) };
    change()
}
