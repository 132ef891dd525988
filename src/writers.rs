// SPDX-License-Identifier: GPL-2.0

//! The writer choke points: replacements that break a hold before a writer
//! can change a held folio in place (see `src/hold/breaks.rs`).
//!
//! - `__filemap_get_folio_mpol` with `FGP_LOCK` and `FGP_WRITE` or
//!   `FGP_CREAT`: `write_begin` of ext4 and iomap (write, pwrite, writev,
//!   io_uring writes, splice and copy_file_range into the file), iomap's
//!   zeroing and ext4's partial block zeroing. Checked after the original
//!   returned the folio locked.
//! - `do_page_mkwrite`: the first store through a shared mapping (holds
//!   write-protect the folio's ptes when they are taken). Checked before
//!   the file system's `page_mkwrite`, which may dirty the folio: the
//!   fault's reference keeps new holds off meanwhile.
//! - `notify_change` with a new size and `vfs_fallocate`: file systems
//!   zero and write back inside journal handles there, and writeback
//!   zeroes a folio beyond `i_size` in place. Every held folio from the
//!   lower of the old and new size on (size changes) or in the range on
//!   (fallocate) is broken first, outside any handle, and new holds are
//!   kept out of the mapping until the call returns.
//! - `truncate_inode_pages_range`: partial folios at both ends for other
//!   callers (xfs reflink remapping, hole punching of other file systems).
//! - `truncate_inode_pages_final`: not a writer, the inode's eviction; its
//!   holds go with it (their folios left the page cache, the pipes keep
//!   them), before the mapping's address can come back as another file's.
//!
//! O_DIRECT writes and eviction of an unlinked file take folios out of the
//! page cache without writing them, which leaves the pipe's folio alone.
//!
//! Why no hold can appear between a check and the write: taking a hold
//! needs the folio lock and a folio that only the page cache and the
//! splice reference, and every writer holds a reference from its lookup
//! until its write is done.

use crate::{
    bindings as b,
    counters::COUNTERS,
    folio::{FolioLock, FolioRef, Mapping, RawFolio},
    ftrace::{self, DirectCall, ModuleRef, Original},
    hold::{holds, nocopy_sleep_ms, write_back, Break, Holds, NOCOPY_ROUNDS},
};
use core::ffi::c_void;

pub(crate) static TRUNCATE_RANGE: Original = Original::new();
pub(crate) static NOTIFY_CHANGE: Original = Original::new();
pub(crate) static FALLOCATE: Original = Original::new();
pub(crate) static TRUNCATE_FINAL: Original = Original::new();
/// `do_page_mkwrite()`, learnt from the site its trampoline (or callback) saw.
static PAGE_MKWRITE: Original = Original::new();

/// How many times a writer's lookup writes a held dirty folio back before
/// it gives up (each round needs a new stable splice of the folio and a new
/// store into it in between).
const LOOKUP_ROUNDS: usize = 8;

/// `policy=block`: how long a writer waits for a hold to end before it
/// breaks it anyway (references the module cannot see go away, such as a
/// per-CPU LRU batch, may keep a drained hold from ending).
const BLOCK_MAX_NS: u64 = 5_000_000_000;

fn is_err(folio: *mut RawFolio) -> bool {
    // SAFETY: only inspects the pointer value.
    unsafe { b::ss_err_ptr(folio.cast()) != 0 }
}

/// Time accounting of one writer on held folios.
struct Waited {
    start: u64,
    killed: bool,
}

impl Waited {
    fn new() -> Self {
        // SAFETY: no preconditions.
        Self { start: unsafe { b::ss_ktime_ns() }, killed: false }
    }

    fn elapsed(&self) -> u64 {
        // SAFETY: no preconditions.
        unsafe { b::ss_ktime_ns() }.saturating_sub(self.start)
    }

    /// Whether the writer may still wait for a `policy=block` hold.
    fn may_wait(&self) -> bool {
        !self.killed && self.elapsed() < BLOCK_MAX_NS
    }

    /// Sleeps a little for a `policy=block` hold.
    fn sleep(&mut self) {
        // SAFETY: task context, no locks held.
        self.killed = unsafe { b::ss_sleep_killable_ms(5) };
    }
}

impl Drop for Waited {
    fn drop(&mut self) {
        COUNTERS.max_writer_wait_ns.max(self.elapsed() as i64);
    }
}

/// Replacement for `__filemap_get_folio_mpol()`, for writers' lookups only
/// (`ss_direct_get_folio` in rust/trampolines.S, or its callback twin
/// `ss_callback_get_folio` in rust/direct.c, picks them by their `FGP_`
/// flags, rust/direct.h; readers' lookups and page faults never come here).
///
/// # Safety
///
/// Entered only from `ss_direct_get_folio` or `ss_callback_get_folio` in
/// place of `__filemap_get_folio_mpol`, with its arguments, for a writer's
/// lookup; unload waits for the direct calls in flight, counted here.
#[export_name = "ss_redirected_get_folio"]
pub(crate) unsafe extern "C" fn get_folio(
    mapping: *mut Mapping,
    index: usize,
    fgp: u32,
    gfp: u32,
    policy: *mut c_void,
) -> *mut RawFolio {
    // SAFETY: we are the replacement a trampoline or callback sent the call to.
    let _call = unsafe { DirectCall::enter() };
    // SAFETY: the arguments of the redirected call, forwarded.
    let lookup = || unsafe { b::ss_call_get_folio(mapping, index as _, fgp, gfp, policy) };
    let mut folio = lookup();
    // The lookup took the writer's reference: now the count (see
    // `Holds::writer_may_hold`).
    let Some(holds) = holds().filter(|h| h.writer_may_hold(mapping)) else {
        return folio;
    };
    let mut waited = None::<Waited>;
    let (mut writebacks, mut nocopies, mut evictions) = (0, 0, 0);
    loop {
        if is_err(folio) {
            return folio;
        }
        let last = writebacks == LOOKUP_ROUNDS;
        // SAFETY: the lookup returned it locked (FGP_LOCK) and referenced.
        let (folio_ref, locked) = unsafe { (FolioRef::adopt(folio), FolioLock::adopt(folio)) };
        let may_wait = waited.as_ref().is_none_or(Waited::may_wait);
        match holds.break_locked(&locked, mapping, index, 1, may_wait) {
            Break::Free => {
                locked.keep_locked();
                return folio_ref.into_raw();
            }
            Break::Replaced(copy) => return copy.into_raw(),
            Break::Split(page) => {
                // Ours, locked and referenced as a lookup returns it: the
                // loop checks it for a hold taken while it was unlocked.
                drop(locked);
                drop(folio_ref);
                folio = page.into_raw();
                continue;
            }
            Break::Evicted if evictions < NOCOPY_ROUNDS => {
                // Out of the page cache: the lookup below makes a new folio.
                drop(locked);
                drop(folio_ref);
                evictions += 1;
            }
            // SAFETY: no preconditions.
            Break::WriteBack if last || unsafe { b::ss_in_fs_transaction() } => {
                // Dirtied again after every writeback (a splicer and a
                // mapping writer take turns with us), or a journal handle
                // is open, which writeback could wait for: never seen, as
                // size changes and fallocate break and fence first. The
                // held folio stays as it is and the write fails as one
                // without memory does; only a lookup that must not fail
                // writes it in place, counted.
                if gfp & b::SS_GFP_NOFAIL == 0 {
                    drop(locked);
                    drop(folio_ref);
                    COUNTERS.breaks_retried.add(1);
                    // SAFETY: no preconditions.
                    return unsafe { b::ss_err_ptr_enomem() }.cast();
                }
                COUNTERS.break_failures.add(1);
                locked.keep_locked();
                return folio_ref.into_raw();
            }
            Break::WriteBack => {
                drop(locked);
                drop(folio_ref);
                waited.get_or_insert_with(Waited::new);
                if fgp & b::SS_FGP_NOWAIT != 0 {
                    // SAFETY: no preconditions.
                    return unsafe { b::ss_err_ptr_eagain() }.cast();
                }
                writebacks += 1;
                // SAFETY: the caller's file keeps `mapping` alive; no lock
                // of ours and no journal handle is held.
                unsafe { write_back(mapping, index) };
            }
            Break::Wait => {
                drop(locked);
                drop(folio_ref);
                // Bounded by `Waited::may_wait`: after BLOCK_MAX_NS, or
                // once killed, the writer breaks the hold.
                waited.get_or_insert_with(Waited::new).sleep();
            }
            // Evicted again and again: a splicer holds each new folio
            // before we can write it (never seen); let it go as NoCopy.
            Break::NoCopy | Break::Evicted => {
                drop(locked);
                drop(folio_ref);
                waited.get_or_insert_with(Waited::new);
                if fgp & b::SS_FGP_NOWAIT != 0 {
                    // SAFETY: no preconditions.
                    return unsafe { b::ss_err_ptr_eagain() }.cast();
                }
                nocopies += 1;
                // Memory or the folio's state may free up: retry a few
                // times, then the write fails as any write without memory
                // does, and the held folio stays as it is.
                // SAFETY: task context, none of our locks held (the caller
                // may hold others that sleepers may: ext4's extent swap
                // looks its second folio up with the first locked, inside
                // its journal handle; the sleep is bounded).
                if nocopies > NOCOPY_ROUNDS || unsafe { b::ss_sleep_killable_ms(nocopy_sleep_ms(nocopies)) } {
                    // SAFETY: no preconditions.
                    return unsafe { b::ss_err_ptr_enomem() }.cast();
                }
            }
        }
        folio = lookup();
    }
}

/// Which `do_page_mkwrite()` calls `ss_direct_page_mkwrite` (or its
/// callback twin `ss_callback_page_mkwrite`) redirects to
/// [`page_mkwrite`]: those on a mapping that may have holds. Both callers
/// (`wp_page_shared`, `do_shared_fault`) hold their reference to the folio
/// before they call it, so the check here is the replacement's own (see
/// `Holds::writer_may_hold`), made early: a store fault into a file
/// without holds runs the original without the detour, and so does the
/// replacement's own call of the original (marked).
#[export_name = "ss_page_mkwrite_wanted"]
extern "C" fn page_mkwrite_wanted(vmf: *mut b::vm_fault) -> bool {
    // SAFETY: the fault's own `vm_fault`, on its stack.
    if unsafe { b::ss_vmf_from_replacement(vmf) } {
        return false;
    }
    // SAFETY: the fault holds the vma, hence the file and its mapping.
    let mapping = unsafe { b::ss_vmf_mapping(vmf) };
    !mapping.is_null() && holds().is_some_and(|h| h.writer_may_hold(mapping))
}

/// Replacement for `do_page_mkwrite(struct vm_fault *, struct folio *)`.
///
/// # Safety
///
/// Entered only from `ss_direct_page_mkwrite` (rust/trampolines.S) or
/// `ss_callback_page_mkwrite` (rust/direct.c) in place of
/// `do_page_mkwrite`, with the fault and its referenced folio; unload
/// waits for the direct calls in flight, counted here.
#[export_name = "ss_redirected_page_mkwrite"]
pub(crate) unsafe extern "C" fn page_mkwrite(vmf: *mut b::vm_fault, folio: *mut RawFolio) -> u32 {
    // SAFETY: we are the replacement a trampoline or callback sent the call to.
    let _call = unsafe { DirectCall::enter() };
    // SAFETY: no preconditions; the trampoline or callback stored the site
    // before it sent the call here.
    PAGE_MKWRITE.learn(|| unsafe { b::ss_page_mkwrite_fentry() } as usize);
    let orig = PAGE_MKWRITE.addr();
    // SAFETY: `orig` is `do_page_mkwrite`; arguments forwarded.
    let call = || unsafe { b::ss_call_page_mkwrite(orig as _, vmf, folio) };
    // SAFETY: the fault holds the vma, hence the file and its mapping.
    let mapping = unsafe { b::ss_vmf_mapping(vmf) };
    let Some(holds) = holds().filter(|h| !mapping.is_null() && h.writer_may_hold(mapping)) else {
        return call();
    };
    // SAFETY: the fault holds a reference to `folio` until we return.
    let locked = unsafe { FolioLock::lock(folio) };
    if locked.mapping() != mapping {
        drop(locked);
        return call(); // truncated: the file system's page_mkwrite says so
    }
    let _waited = Waited::new();
    // Stores through mappings do not wait under policy=block: a fault
    // that is retried cannot carry a deadline. They always break.
    let at = locked.index();
    match holds.break_locked(&locked, mapping, at, 1, false) {
        Break::Free | Break::Wait => {
            drop(locked);
            call()
        }
        Break::Replaced(copy) | Break::Split(copy) => {
            // The ptes of the old folio are gone: the retried fault maps
            // the copy and comes back here for it.
            drop(copy);
            b::SS_VM_FAULT_NOPAGE
        }
        Break::Evicted => {
            // Out of the page cache: the retried fault reads the page back.
            drop(locked);
            b::SS_VM_FAULT_NOPAGE
        }
        Break::WriteBack => {
            let index = locked.index();
            drop(locked);
            // SAFETY: the vma keeps `mapping` alive; no lock of ours held.
            unsafe { write_back(mapping, index) };
            b::SS_VM_FAULT_NOPAGE
        }
        Break::NoCopy => {
            // No copy now: the store is retried after a short sleep (a
            // killed task returns to user space and dies), the held folio
            // stays read-only.
            drop(locked);
            // SAFETY: fault context without the folio lock may sleep.
            unsafe { b::ss_sleep_killable_ms(nocopy_sleep_ms(1)) };
            b::SS_VM_FAULT_NOPAGE
        }
    }
}

/// The holds a `truncate_inode_pages_range` call must break: those of a
/// mapping that may have holds, for a call that may zero part of a folio
/// (not an eviction's, whole file; that is also the call reclaim makes).
fn truncate_holds(mapping: *const Mapping, lstart: i64, lend: i64) -> Option<&'static Holds> {
    holds().filter(|h| !(lstart == 0 && lend == -1) && h.may_hold(mapping))
}

/// The holds a `notify_change` call must break from the returned offset
/// on, with the mapping: a size change of a file that may have holds.
///
/// # Safety
///
/// `dentry` and `attr` are a `notify_change` call's, alive for the call.
unsafe fn size_change_holds(dentry: *mut b::dentry, attr: *mut b::iattr) -> Option<(&'static Holds, *mut Mapping, i64)> {
    let mut from = 0i64;
    // SAFETY: per the caller.
    let mapping = unsafe { b::ss_iattr_size_change(dentry, attr, &mut from) };
    holds().filter(|h| !mapping.is_null() && h.may_hold(mapping)).map(|h| (h, mapping, from))
}

/// The holds a `vfs_fallocate` call must break, with the mapping: a file
/// that may have holds.
///
/// # Safety
///
/// `file` is a `vfs_fallocate` call's open file.
unsafe fn fallocate_holds(file: *mut b::file, offset: i64) -> Option<(&'static Holds, *mut Mapping)> {
    // SAFETY: per the caller.
    let mapping = unsafe { b::ss_file_mapping(file) };
    holds().filter(|h| offset >= 0 && h.may_hold(mapping)).map(|h| (h, mapping))
}

/// The `truncate_inode_pages_range` calls its replacement acts on.
pub(crate) fn truncate_range_wants(fregs: *mut b::ftrace_regs) -> bool {
    let (mapping, lstart, lend) = (ftrace::arg::<0>(fregs), ftrace::arg::<1>(fregs) as i64, ftrace::arg::<2>(fregs) as i64);
    truncate_holds(mapping as *const Mapping, lstart, lend).is_some()
}

/// The `notify_change` calls its replacement acts on.
pub(crate) fn notify_change_wants(fregs: *mut b::ftrace_regs) -> bool {
    let (dentry, attr) = (ftrace::arg::<1>(fregs) as *mut b::dentry, ftrace::arg::<2>(fregs) as *mut b::iattr);
    // SAFETY: the traced call's dentry and attributes, which its caller
    // keeps alive for the call.
    unsafe { size_change_holds(dentry, attr) }.is_some()
}

/// The `vfs_fallocate` calls its replacement acts on.
pub(crate) fn fallocate_wants(fregs: *mut b::ftrace_regs) -> bool {
    let (file, offset) = (ftrace::arg::<0>(fregs) as *mut b::file, ftrace::arg::<2>(fregs) as i64);
    // SAFETY: the traced call's open file.
    unsafe { fallocate_holds(file, offset) }.is_some()
}

/// Replacement for `truncate_inode_pages_range(mapping, lstart, lend)`.
///
/// # Safety
///
/// Called only in place of `truncate_inode_pages_range`, with its
/// arguments as its callers pass them; the redirect took a module
/// reference for the call.
pub(crate) unsafe extern "C" fn truncate_inode_pages_range(mapping: *mut Mapping, lstart: i64, lend: i64) {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = TRUNCATE_RANGE.addr();
    // SAFETY: `orig` is `truncate_inode_pages_range`; arguments forwarded.
    let truncate = || unsafe { b::ss_call_truncate_range(orig, mapping, lstart, lend) };
    let Some(holds) = truncate_holds(mapping, lstart, lend) else {
        return truncate();
    };
    let _fence = holds.fence(mapping);
    for pos in [lstart, lend] {
        if pos >= 0 {
            let index = (pos / b::SS_PAGE_SIZE) as usize;
            // SAFETY: the truncating caller keeps `mapping` alive and may
            // sleep.
            if unsafe { holds.break_range(mapping, index, index) }.is_err() {
                // Nothing can fail here (the callers' sizes are already
                // set). The usual callers came through notify_change or
                // vfs_fallocate, which broke the range under a fence (and
                // fail with ENOMEM when they cannot): this is left to
                // other callers, counted.
                COUNTERS.break_failures.add(1);
            }
        }
    }
    truncate()
}

/// The `truncate_inode_pages_final` calls its replacement acts on: the
/// evictions of files with holds.
pub(crate) fn truncate_final_wants(fregs: *mut b::ftrace_regs) -> bool {
    let mapping = ftrace::arg::<0>(fregs) as *const Mapping;
    holds().is_some_and(|h| h.may_hold(mapping))
}

/// Replacement for `truncate_inode_pages_final(mapping)`: an inode's
/// eviction (every `evict_inode` calls it, also for an empty mapping).
/// After the original took every folio out of the page cache, the file's
/// holds end: nobody can write their folios any more, and the mapping's
/// address may be another file's next.
///
/// # Safety
///
/// Called only in place of `truncate_inode_pages_final`, with its argument
/// as its callers pass it; the redirect took a module reference for the
/// call.
pub(crate) unsafe extern "C" fn truncate_inode_pages_final(mapping: *mut Mapping) {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    let orig = TRUNCATE_FINAL.addr();
    // SAFETY: `orig` is `truncate_inode_pages_final`; argument forwarded.
    unsafe { b::ss_call_truncate_final(orig, mapping) };
    if let Some(holds) = holds() {
        holds.forget_file(mapping);
    }
}

/// Breaks the holds of folios `first..` of `mapping` and keeps new ones
/// out while `call` runs; `-ENOMEM`, without calling it, if a held folio
/// could not be copied (see `Holds::break_range`).
///
/// # Safety
///
/// `mapping` is alive; the caller holds no folio lock or journal handle.
unsafe fn fenced(holds: &Holds, mapping: *mut Mapping, first: usize, last: usize, call: impl FnOnce() -> i32) -> i32 {
    let _fence = holds.fence(mapping);
    // SAFETY: per the caller.
    match unsafe { holds.break_range(mapping, first, last) } {
        Ok(()) => call(),
        Err(e) => e.to_errno(),
    }
}

/// Replacement for `notify_change(idmap, dentry, attr, delegated_inode)`.
///
/// # Safety
///
/// Called only in place of `notify_change`, with its arguments as its
/// callers pass them; the redirect took a module reference for the call.
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
    // SAFETY: the caller's dentry and attributes.
    let Some((holds, mapping, from)) = (unsafe { size_change_holds(dentry, attr) }) else {
        return change();
    };
    // The caller holds the inode lock: the size cannot move meanwhile.
    // SAFETY: the dentry keeps the inode and its mapping alive; VFS
    // context, no journal handle yet.
    unsafe { fenced(holds, mapping, (from / b::SS_PAGE_SIZE) as usize, usize::MAX, change) }
}

/// Replacement for `vfs_fallocate(file, mode, offset, len)`.
///
/// # Safety
///
/// Called only in place of `vfs_fallocate`, with its arguments as its
/// callers pass them; the redirect took a module reference for the call.
pub(crate) unsafe extern "C" fn fallocate(file: *mut b::file, mode: i32, offset: i64, len: i64) -> i32 {
    // SAFETY: we are the replacement the callback redirected to.
    let _module = unsafe { ModuleRef::adopt() };
    // SAFETY: `FALLOCATE` is `vfs_fallocate`; arguments forwarded.
    let call = || unsafe { b::ss_call_fallocate(FALLOCATE.addr(), file, mode, offset, len) };
    // SAFETY: the caller's open file.
    let Some((holds, mapping)) = (unsafe { fallocate_holds(file, offset) }) else {
        return call();
    };
    // Zeroing and hole punching change [offset, offset + len); collapsing
    // and inserting ranges move everything behind offset. Break it all.
    // SAFETY: the open file keeps the mapping alive; VFS context.
    unsafe { fenced(holds, mapping, (offset / b::SS_PAGE_SIZE) as usize, usize::MAX, call) }
}
