// SPDX-License-Identifier: GPL-2.0

//! Stable pipe buffers: what a stable splice leaves in the pipe.
//!
//! After the file system's `splice_read` filled the pipe with references to
//! page-cache folios, [`stabilize`] makes each of them a buffer whose bytes
//! cannot change, while splice still holds the pipe lock (no consumer has
//! seen them):
//!
//! - a held buffer: on ext4 and xfs the buffer keeps pointing at the
//!   page-cache folio, which `src/hold.rs` holds (zero copy);
//! - a copied buffer: a private copy taken under the folio lock, for file
//!   systems whose writers the module does not intercept (tmpfs) and when
//!   a hold cannot be taken.
//!
//! Stable buffers never set `PIPE_BUF_FLAG_CAN_MERGE` (a later write into
//! the pipe gets a fresh buffer) and cannot be stolen, so no sink can turn
//! them into a write path (Dirty Pipe, CVE-2022-0847).

use crate::{
    bindings,
    counters::COUNTERS,
    folio::{FolioKind, FolioLock},
    hold::{holds, Holds, Spare, Taken, CHUNK},
};
use kernel::prelude::*;

type PipeBuffer = bindings::pipe_buffer;
type Pipe = bindings::pipe_inode_info;

/// A locked pipe's buffer ring, read once per call, so that a slot's
/// buffer is an index in Rust rather than a C call per buffer
/// (`pipe_buffer`'s layout is checked at load, `src/layout.rs`).
#[derive(Clone, Copy)]
struct Ring {
    bufs: *mut PipeBuffer,
    mask: u32,
}

impl Ring {
    /// # Safety
    ///
    /// The caller holds the pipe lock while it uses the ring (a resize
    /// takes the lock).
    unsafe fn of(pipe: *mut Pipe) -> Self {
        let mut mask = 0;
        // SAFETY: per the caller.
        let bufs = unsafe { bindings::ss_pipe_ring(pipe, &mut mask) };
        Self { bufs, mask }
    }

    fn buf(&self, slot: u32) -> *mut PipeBuffer {
        // `mask` is the ring size minus one: the index stays in the ring.
        self.bufs.wrapping_add((slot & self.mask) as usize)
    }
}

/// The buffer operations of stable buffers, copied and held alike: the
/// kernel's own `nosteal_pipe_buf_ops` (a page reference dropped on
/// release, taken by `tee`; no `confirm`, no `try_steal`). Core kernel code
/// is all a stable buffer runs, so buffers neither pin the module nor call
/// into it: what a held buffer needs after the module is gone is its hold,
/// and holds pin the module (see `src/hold.rs`). A held page that a writer
/// took out of the page cache stays readable: without `confirm`, nothing
/// asks for its (cleared) mapping, unlike page-cache buffers.
fn stable_ops() -> *const bindings::pipe_buf_operations {
    // Only its address: an exported, immutable kernel object.
    &raw const bindings::nosteal_pipe_buf_ops
}

/// Whether `buf`, a new buffer from a file's `splice_read`, is stable
/// already (a nested stable `splice_read` made it). A file system's
/// `splice_read` itself makes page-cache or anonymous buffers, never
/// `nosteal` ones.
pub(crate) fn is_stable_buf(buf: &PipeBuffer) -> bool {
    core::ptr::eq(buf.ops, stable_ops())
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
/// `splice_read` of `file` just added at the head; the module is pinned
/// while it runs (the redirected call's reference; new holds take their
/// own).
pub(crate) unsafe fn stabilize(
    file: *mut bindings::file,
    pipe: *mut Pipe,
    from: u32,
    to: u32,
) -> Result<(), (Error, usize)> {
    let mut kept = 0usize;
    let mut slot = from;
    let mut spare = Spare::new();
    // Zero-copy buffers are counted once per call: shared counters are
    // cache lines that both CPUs fight over.
    let mut zero_copy_bufs = ZeroCopy::default();
    // SAFETY: the open source file keeps its mapping alive.
    let mapping = unsafe { bindings::ss_file_mapping(file) };
    // SAFETY: as above.
    let zero_copy = holds().is_some() && unsafe { bindings::ss_mapping_zero_copy(mapping) };
    // SAFETY: the caller holds the pipe lock.
    let ring = unsafe { Ring::of(pipe) };
    if let Some(holds) = holds().filter(|_| zero_copy) {
        let fast = FastPath { holds, mapping, block: holds.blocking_for(file), ring };
        // SAFETY: per the caller.
        let joined = unsafe { fast.join_held(from, to, &mut zero_copy_bufs) };
        if joined == to {
            return Ok(()); // a file served again and again
        }
        // The slow path below starts behind the joined buffers.
        (slot, kept) = (joined, zero_copy_bufs.bytes as usize);
        // SAFETY: per the caller.
        match unsafe { fast.hold_fast(joined, to, &mut spare, &mut zero_copy_bufs) } {
            // All held: nothing left for the slow path to look at.
            Ok(held) if held == to.wrapping_sub(joined) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                // SAFETY: same lock; nothing of the call may stay in the pipe.
                unsafe { truncate(pipe, from, to) };
                return Err((e, 0));
            }
        }
    }
    while slot != to {
        // SAFETY: locked, occupied slot.
        let buf = unsafe { &*ring.buf(slot) };
        if is_stable_buf(buf) {
            // The fast path held it.
            kept += buf.len as usize;
            slot = slot.wrapping_add(1);
            continue;
        }
        // Consecutive buffers on one folio (pages of a large folio, or
        // pieces of one page) are one run: the folio's references from this
        // splice are theirs.
        // SAFETY: the caller holds the pipe lock; the slots are occupied.
        let run = unsafe { run_length(ring, slot, to) };
        // SAFETY: `[slot, slot + run)` are valid, locked pipe buffers.
        if let Err(e) = unsafe { make_stable(file, mapping, zero_copy, pipe, ring, slot, run, &mut spare, &mut zero_copy_bufs) } {
            // SAFETY: same lock; drops the unconverted tail.
            unsafe { truncate(pipe, slot, to) };
            return Err((e, kept));
        }
        for _ in 0..run {
            // SAFETY: as above.
            kept += unsafe { (*ring.buf(slot)).len } as usize;
            slot = slot.wrapping_add(1);
        }
    }
    Ok(())
}

/// Zero-copy bytes of one call, counted when it is done.
#[derive(Default)]
struct ZeroCopy {
    bytes: i64,
}

impl Drop for ZeroCopy {
    fn drop(&mut self) {
        COUNTERS.bytes_zero_copy.add(self.bytes);
    }
}


/// What the fast paths of one stable splice from a file with holds share.
struct FastPath<'a> {
    holds: &'a Holds,
    /// The file's mapping.
    mapping: *mut bindings::address_space,
    /// Whether holds taken or joined make writers wait (`policy=block`).
    block: bool,
    /// The locked pipe's ring.
    ring: Ring,
}

impl FastPath<'_> {
    /// The fastest path: the buffers from `from` on whose folios are held
    /// already, in a row, share those holds, found in one pass over the
    /// buffers and the file's index under one bucket lock. Returns the slot
    /// after them.
    ///
    /// # Safety
    ///
    /// As for [`stabilize`]; `[from, to)` are the call's new buffers.
    unsafe fn join_held(&self, from: u32, to: u32, counted: &mut ZeroCopy) -> u32 {
        let Some(mut joins) = self.holds.joins(self.mapping) else {
            return from;
        };
        let ring = self.ring;
        // SAFETY: pipe locked, the slots occupied by the splice's new buffers.
        let n = unsafe { joins.held_prefix(ring.bufs, ring.mask, from, to.wrapping_sub(from), self.block) };
        drop(joins);
        // SAFETY: per the caller; the `n` buffers' folios are held.
        unsafe { hold_run(ring, from, n, counted) };
        from.wrapping_add(n)
    }

    /// The fast path over the new buffers, chunk by chunk, under one bucket
    /// lock at a time instead of one per folio: first, buffers on folios that
    /// are held already join their holds, in one walk of the file's index;
    /// then folios whose lock is free and that nobody else references get new
    /// holds without sleeping. What is left (folio lock busy, mapped folios,
    /// contended ones) goes to [`make_stable`]. Returns how many buffers it
    /// made held buffers.
    ///
    /// # Safety
    ///
    /// As for [`stabilize`]; `[from, to)` are the call's new buffers.
    unsafe fn hold_fast(&self, from: u32, to: u32, spare: &mut Spare, counted: &mut ZeroCopy) -> Result<u32> {
        let (mut slot, mut held) = (from, 0);
        while slot != to {
            // SAFETY: per the caller.
            let (next, n) = unsafe { self.hold_chunk(slot, to, spare, counted) }?;
            (slot, held) = (next, held + n);
        }
        Ok(held)
    }

    /// [`FastPath::hold_fast`] for up to [`CHUNK`] runs of buffers on one
    /// folio from `from` on (a large folio's pages are one run, however
    /// many buffers they fill); returns the slot after the last run and how
    /// many buffers it held.
    ///
    /// # Safety
    ///
    /// As for [`FastPath::hold_fast`].
    unsafe fn hold_chunk(&self, from: u32, to: u32, spare: &mut Spare, counted: &mut ZeroCopy) -> Result<(u32, u32)> {
        let Self { holds, mapping, block, ring } = *self;
        // The runs, their folios, page indices and kinds, in one C call,
        // before any lock.
        let mut found = [const { bindings::ss_folio_run { folio: core::ptr::null_mut(), index: 0, slot: 0, len: 0, kind: 0 } }; CHUNK];
        // SAFETY: pipe locked, `[from, to)` occupied (caller); the array
        // holds CHUNK elements.
        let count = unsafe { bindings::ss_pipe_runs(ring.bufs, ring.mask, from, to, found.as_mut_ptr(), CHUNK as u32) } as usize;
        let found = &found[..count];
        let next = found.last().map_or(to, |r| r.slot.wrapping_add(r.len));
        // The runs on a page-cache folio that are not ours yet (first slot,
        // length), their folios and page indices (in index order as a
        // splice reads them), and which are held.
        let mut runs = [(0u32, 0u32); CHUNK];
        let mut indices = [0usize; CHUNK];
        let mut folios = [core::ptr::null_mut(); CHUNK];
        let mut held = [false; CHUNK];
        let mut n = 0;
        for r in found {
            // SAFETY: pipe locked, slot occupied (caller).
            let buf = unsafe { &*ring.buf(r.slot) };
            if FolioKind::from_raw(r.kind.into()) == FolioKind::PageCache && !is_stable_buf(buf) {
                runs[n] = (r.slot, r.len);
                indices[n] = r.index as usize;
                folios[n] = r.folio;
                n += 1;
            }
        }
        if n == 0 {
            return Ok((next, 0));
        }
        let (runs, indices, folios, held) = (&runs[..n], &indices[..n], &folios[..n], &mut held[..n]);
        // Under one bucket lock, the file's registry entry put in place
        // first (allocated outside the lock): which folios are held already,
        // in one walk of the index, then new holds for the others. Fenced:
        // all take the slow path.
        // SAFETY: the module is pinned (caller).
        if let Some(mut joins) = unsafe { holds.lock_mapping_for_new(mapping, spare, block) }? {
            // SAFETY: the buffers reference these folios.
            unsafe { joins.held_all(indices, folios, held, block) };
            if held.iter().any(|h| !h) {
                // SAFETY: the runs' buffers reference the folios; pipe locked.
                unsafe { joins.create_all(folios, runs, held, block) };
            }
        }
        let mut done = 0;
        for (&h, &(slot, run)) in held.iter().zip(runs) {
            if h {
                // SAFETY: per the caller; the run's folio is held.
                unsafe { hold_run(ring, slot, run, counted) };
                done += run;
            }
            // The others take make_stable's slow path.
        }
        Ok((next, done))
    }
}

/// Makes the `run` buffers from `slot` on held buffers, zero copy, and
/// counts them.
///
/// # Safety
///
/// Pipe lock held, the slots occupied, their page held or out of the page
/// cache (nobody can write it).
unsafe fn hold_run(ring: Ring, slot: u32, run: u32, counted: &mut ZeroCopy) {
    for i in 0..run {
        // SAFETY: pipe locked, slot occupied (caller).
        let buf = unsafe { &mut *ring.buf(slot.wrapping_add(i)) };
        take_over(buf);
        counted.bytes += buf.len as i64;
    }
}

/// How many buffers from `slot` on (before `to`) reference the same folio.
///
/// # Safety
///
/// Pipe lock held, `[slot, to)` occupied.
unsafe fn run_length(ring: Ring, slot: u32, to: u32) -> u32 {
    // SAFETY: per the caller.
    let folio_at = |s: u32| unsafe { bindings::ss_page_folio((*ring.buf(s)).page) };
    let first = folio_at(slot);
    let mut n = 1;
    while slot.wrapping_add(n) != to && folio_at(slot.wrapping_add(n)) == first {
        n += 1;
    }
    n
}

/// Makes the `run` buffers from `slot` on, which all reference one page
/// or folio, stable.
///
/// # Safety
///
/// Pipe lock held, `ring` is `pipe`'s, the buffers valid, no consumer has
/// seen them, read from `file`, whose mapping is `mapping` (`zero_copy` if
/// holds work there).
unsafe fn make_stable(
    file: *mut bindings::file,
    mapping: *mut bindings::address_space,
    zero_copy: bool,
    pipe: *mut Pipe,
    ring: Ring,
    slot: u32,
    run: u32,
    spare: &mut Spare,
    counted: &mut ZeroCopy,
) -> Result {
    // SAFETY: per the caller.
    let buf_at = |i: u32| unsafe { &mut *ring.buf(slot.wrapping_add(i)) };
    let first = buf_at(0);
    if is_stable_buf(first) {
        return Ok(());
    }
    // SAFETY: `first.page` is referenced by the buffer.
    let taken = match FolioKind::from_raw(unsafe { bindings::ss_page_kind(first.page) }) {
        // Anonymous pages (copy_splice_read) and the zero page are already
        // private to the pipe.
        FolioKind::Private => return Ok(()),
        FolioKind::Orphan => Taken::Orphan,
        FolioKind::PageCache if !zero_copy => Taken::Copy,
        FolioKind::PageCache => {
            // SAFETY: the buffers reference the folio; pipe locked.
            let folio = unsafe { bindings::ss_page_folio(first.page) };
            let holds = holds().ok_or(ENODEV)?;
            // SAFETY: per the caller.
            unsafe { holds.take(folio, mapping, file, run as i32, spare) }?
        }
    };
    match taken {
        // Orphan: out of the page cache since splice_read found it (a
        // writer broke a hold, or truncate): already private to the pipes
        // that have it. Plain page-cache buffers would fail confirm with
        // ENODATA, so it becomes ours too.
        // SAFETY: per the caller.
        Taken::Held | Taken::Orphan => {
            // SAFETY: per the caller.
            unsafe { hold_run(ring, slot, run, counted) };
            Ok(())
        }
        Taken::Copy => {
            for i in 0..run {
                // SAFETY: per the caller.
                unsafe { copy(pipe, buf_at(i)) }?;
            }
            Ok(())
        }
    }
}

/// Makes `buf`, which references a page that will not change any more,
/// a stable buffer, zero copy: it keeps the buffer's page reference, which
/// the stable operations drop on release as page-cache buffers do.
fn take_over(buf: &mut PipeBuffer) {
    buf.ops = stable_ops();
    buf.flags = 0;
    buf.private = 0;
}

/// Replaces `buf`'s page-cache page with a private copy.
///
/// # Safety
///
/// As for [`make_stable`].
unsafe fn copy(pipe: *mut Pipe, buf: &mut PipeBuffer) -> Result {
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
        let _locked = FolioLock::lock(bindings::ss_page_folio(buf.page));
        bindings::ss_memcpy_page(copy, buf.offset, buf.page, buf.offset, buf.len as usize);
    }
    // SAFETY: releases the page-cache reference through the buffer's own
    // operations, then takes the buffer over.
    unsafe {
        if let Some(release) = (*buf.ops).release {
            release(pipe, buf);
        }
    }
    buf.page = copy;
    take_over(buf);
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

/// The per-ops-table cache of which files get zero copy (rust/folio.c),
/// kept right while file system modules come and go: a module's entries
/// leave with it, since another module's ops may later sit at that address.
pub(crate) struct ZeroCopyDecisions(());

impl ZeroCopyDecisions {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions; undone by `drop`.
        kernel::error::to_result(unsafe { bindings::ss_aops_cache_init() })?;
        Ok(Self(()))
    }
}

impl Drop for ZeroCopyDecisions {
    fn drop(&mut self) {
        // SAFETY: registered by `new`.
        unsafe { bindings::ss_aops_cache_exit() };
    }
}
