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
    ftrace::Pinned,
    hold::{holds, Holds, Joins, Spare, Taken},
};
use core::marker::PhantomData;
use kernel::prelude::*;

type PipeBuffer = bindings::pipe_buffer;
type Pipe = bindings::pipe_inode_info;

/// The buffers a file's `splice_read` just added to a locked pipe, which
/// no consumer has seen yet: slots `[from, to)` of the pipe's ring, `to`
/// its head. The ring is read once per call, so that a slot's buffer is
/// an index in Rust rather than a C call per buffer (`pipe_buffer`'s
/// layout is checked at load, `src/layout.rs`).
///
/// # Invariants
///
/// While it lives: the pipe lock is held (a resize takes it, so `bufs`
/// and `mask` stay the ring's); slots `[from, to)` hold the buffers a
/// `splice_read` of `file` just added and `to` is the head; `file` is
/// open. `pinned` keeps the module for as long.
pub(crate) struct NewBuffers<'a> {
    pinned: Pinned<'a>,
    file: *mut bindings::file,
    pipe: *mut Pipe,
    bufs: *mut PipeBuffer,
    mask: u32,
    from: u32,
    to: u32,
    _locked: PhantomData<&'a mut Pipe>,
}

impl<'a> NewBuffers<'a> {
    /// The buffers from `from` to the pipe's head.
    ///
    /// # Safety
    ///
    /// The caller holds the lock of `pipe` while the returned value lives,
    /// and the buffers from `from` to the head are those a `splice_read`
    /// of `file` just added.
    pub(crate) unsafe fn new(pinned: Pinned<'a>, file: *mut bindings::file, pipe: *mut Pipe, from: u32) -> Self {
        let (mut mask, mut to) = (0, 0);
        // SAFETY: pipe locked (caller).
        let bufs = unsafe { bindings::ss_pipe_ring(pipe, &mut mask, &mut to) };
        Self { pinned, file, pipe, bufs, mask, from, to, _locked: PhantomData }
    }

    /// Whether `slot` is one of the new buffers.
    fn has(&self, slot: u32) -> bool {
        slot.wrapping_sub(self.from) < self.to.wrapping_sub(self.from)
    }

    fn ptr(&self, slot: u32) -> *mut PipeBuffer {
        assert!(self.has(slot));
        // `mask` is the ring size minus one: the index stays in the ring.
        self.bufs.wrapping_add((slot & self.mask) as usize)
    }

    fn buf(&self, slot: u32) -> &PipeBuffer {
        // SAFETY: one of the new buffers, which the pipe lock keeps (type
        // invariant).
        unsafe { &*self.ptr(slot) }
    }

    fn buf_mut(&mut self, slot: u32) -> &mut PipeBuffer {
        // SAFETY: as in `buf`; `&mut self` makes the reference unique.
        unsafe { &mut *self.ptr(slot) }
    }

    /// The new buffers from `from` on, for C that makes them stable
    /// ([`crate::hold::Joins::hold_new`]).
    fn chunk(&self, from: u32) -> bindings::ss_pipe_chunk {
        assert!(self.has(from));
        bindings::ss_pipe_chunk { bufs: self.bufs, mask: self.mask, from, to: self.to }
    }

    /// The source file's mapping, and whether holds work there (zero copy).
    fn mapping_zero_copy(&self) -> (*mut bindings::address_space, bool) {
        let mut mapping = core::ptr::null_mut();
        // SAFETY: `file` is open (type invariant), and keeps its mapping.
        let zero_copy = unsafe { bindings::ss_file_zero_copy(self.file, &mut mapping) };
        (mapping, zero_copy)
    }

    /// Drops what the buffer at `slot` references through its own
    /// operations (its page reference); the caller refills the buffer or
    /// gives up its slot.
    fn release(&mut self, slot: u32) {
        let buf = self.ptr(slot);
        // SAFETY: a new buffer under the pipe lock (type invariant), whose
        // operations are set; released once, as the caller then refills
        // or empties it.
        unsafe {
            if let Some(release) = (*(*buf).ops).release {
                release(self.pipe, buf);
            }
        }
    }

    /// Releases the buffers from `from` on and moves the pipe head back
    /// there: nothing of them may reach a consumer.
    fn truncate(&mut self, from: u32) {
        let mut slot = from;
        while slot != self.to {
            self.release(slot);
            self.buf_mut(slot).ops = core::ptr::null();
            slot = slot.wrapping_add(1);
        }
        // SAFETY: pipe locked; the slots from `from` on are released.
        unsafe { bindings::ss_pipe_set_head(self.pipe, from) };
        self.to = from;
    }
}

/// The buffer operations of stable buffers, copied and held alike: the
/// kernel's own `nosteal_pipe_buf_ops` (a page reference dropped on
/// release, taken by `tee`; no `confirm`, no `try_steal`). Core kernel
/// code is all a stable buffer runs, so buffers neither pin the module
/// nor call into it: what a held buffer needs after the module is gone is
/// its hold, and holds pin the module (see `src/hold.rs`). A held page
/// that a writer took out of the page cache stays readable: without
/// `confirm`, nothing asks for its (cleared) mapping, unlike page-cache
/// buffers.
fn stable_ops() -> *const bindings::pipe_buf_operations {
    // Only its address: an exported, immutable kernel object.
    &raw const bindings::nosteal_pipe_buf_ops
}

/// Whether `buf`, a new buffer from a file's `splice_read`, refers to a
/// page-cache folio as it is (`page_cache_pipe_buf_ops`, which
/// `filemap_splice_read` and `shmem_file_splice_read` give their buffers):
/// the only buffers a later write to a file can change. Everything else a
/// `splice_read` makes is left as it is: anonymous copies
/// (`copy_splice_read` for `O_DIRECT`, DAX, character devices), the zero
/// page of a tmpfs hole, a socket's own buffers, and buffers a nested
/// stable `do_splice_read` made stable already (overlayfs, FUSE passthrough
/// and coda splice from their backing file through it).
fn is_page_cache_buf(buf: &PipeBuffer) -> bool {
    // SAFETY: a buffer of a locked pipe, whose operations are set.
    unsafe { bindings::ss_pipe_buf_is_page_cache(buf) }
}

/// Whether `buf` is a stable buffer (what the KUnit suite looks for).
#[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
pub(crate) fn is_stable_buf(buf: &PipeBuffer) -> bool {
    core::ptr::eq(buf.ops, stable_ops())
}

/// The function whose address tells page-cache buffers apart (their
/// operations' `confirm`), looked up at load with the redirected ones.
pub(crate) const PAGE_CACHE_CONFIRM: &CStr = c"page_cache_pipe_buf_confirm";

/// Learns how page-cache buffers are recognised: [`PAGE_CACHE_CONFIRM`]
/// is at `addr`. Before the redirects.
pub(crate) fn learn_page_cache_bufs(addr: usize) {
    // SAFETY: no preconditions.
    unsafe { bindings::ss_pipe_learn_page_cache_bufs(addr as _) }
}

/// Makes the new buffers stable.
///
/// On failure the pipe is truncated to the buffers that were made stable
/// (never exposing an unstable one) and the number of bytes kept is
/// returned as the error's payload.
pub(crate) fn stabilize(new: &mut NewBuffers<'_>) -> Result<(), (Error, usize)> {
    let (from, to) = (new.from, new.to);
    let mut kept = 0usize;
    let mut slot = from;
    let mut spare = Spare::new();
    // Zero-copy buffers are counted once per call: shared counters are
    // cache lines that both CPUs fight over.
    let mut zero_copy_bufs = ZeroCopy::default();
    let (mapping, zero_copy) = new.mapping_zero_copy();
    let holds = holds().filter(|_| zero_copy);
    let zero_copy = holds.is_some();
    if let Some(holds) = holds {
        // SAFETY: `new.file` is open (type invariant).
        let block = holds.blocking_for(new.file);
        let fast = FastPath { holds, mapping, block };
        match fast.hold_fast(new, from, &mut spare, &mut zero_copy_bufs) {
            // A file served again and again, or all held: nothing left
            // for the slow path to look at.
            Ok(Fast { all_held: true, .. }) => return Ok(()),
            // The slow path below starts behind the joined buffers.
            Ok(Fast { joined, joined_bytes, .. }) => (slot, kept) = (joined, joined_bytes),
            Err(e) => {
                // Nothing of the call may stay in the pipe.
                new.truncate(from);
                return Err((e, 0));
            }
        }
    }
    while slot != to {
        let buf = new.buf(slot);
        if !is_page_cache_buf(buf) {
            // Stable already (the fast path held it), or never the file's.
            kept += buf.len as usize;
            slot = slot.wrapping_add(1);
            continue;
        }
        // Consecutive buffers on one folio (pages of a large folio, or
        // pieces of one page) are one run: the folio's references from this
        // splice are theirs.
        let run = run_length(new, slot);
        if let Err(e) = make_stable(new, mapping, zero_copy, slot, run, &mut spare, &mut zero_copy_bufs) {
            // Drops the unconverted tail.
            new.truncate(slot);
            return Err((e, kept));
        }
        for _ in 0..run {
            kept += new.buf(slot).len as usize;
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
}

impl FastPath<'_> {
    /// The fast path over the new buffers. First, under one bucket lock,
    /// the buffers from `from` on whose folios are held already, in a row,
    /// share those holds (`Joins::join_held`, src/hold/take.rs; a file
    /// served again and again ends there). From the first folio that is
    /// not held on, a chunk at a time under one bucket lock each (the
    /// first under the joins' lock): buffers on held folios
    /// join their holds, and folios whose lock is free and that nobody
    /// else references get new holds without sleeping. What is left
    /// (folio lock busy, mapped folios, contended ones) goes to
    /// [`make_stable`].
    fn hold_fast(&self, new: &mut NewBuffers<'_>, from: u32, spare: &mut Spare, counted: &mut ZeroCopy) -> Result<Fast> {
        let (mut slot, mut joined, mut joined_bytes) = (from, from, 0);
        let mut all_held = true;
        if let Some(mut joins) = self.holds.joins(self.mapping) {
            // A file served again ends here. A file served once stops at
            // its first folio: the chunks below join what they find held
            // as well.
            // SAFETY: the new buffers of a stable splice from this
            // mapping's file, pipe locked (type invariant of `NewBuffers`).
            let (next, bytes) = unsafe { joins.join_held(&new.chunk(from), self.block) };
            counted.bytes += bytes as i64;
            (slot, joined, joined_bytes) = (next, next, bytes as usize);
            if slot != new.to {
                // The first chunk under this lock too: a file served once
                // (whose registry entry the call before put in place)
                // would otherwise take it again at once, and look its
                // entry up again.
                if let Some((next, held)) = self.hold_new(&mut joins, new, slot, counted) {
                    (slot, all_held) = (next, held);
                }
            }
        }
        while slot != new.to {
            let (next, held) = self.hold_chunk(new, slot, spare, counted)?;
            all_held &= held;
            slot = next;
        }
        Ok(Fast { joined, joined_bytes, all_held })
    }

    /// Joins and new holds for a chunk of the new buffers from `from` on
    /// (up to [`crate::hold::CHUNK`] folios), under one bucket lock, the
    /// file's registry entry put in place first (allocated outside the
    /// lock). Returns the
    /// slot after the chunk and whether it held every buffer of it; those
    /// it did not are left to the slow path (all of them while the mapping
    /// is fenced).
    fn hold_chunk(&self, new: &mut NewBuffers<'_>, from: u32, spare: &mut Spare, counted: &mut ZeroCopy) -> Result<(u32, bool)> {
        let Self { holds, mapping, block } = *self;
        let Some(mut joins) = holds.lock_mapping_for_new(mapping, spare, block, new.pinned)? else {
            return Ok((new.to, false));
        };
        Ok(self.hold_new(&mut joins, new, from, counted).unwrap_or((new.to, false)))
    }

    /// Joins and new holds for a chunk of the new buffers from `from` on,
    /// under the lock of `joins` (`Joins::hold_new`): the slot after the
    /// chunk and whether it held every buffer of it; None if the mapping
    /// has no registry entry.
    fn hold_new(&self, joins: &mut Joins<'_>, new: &NewBuffers<'_>, from: u32, counted: &mut ZeroCopy) -> Option<(u32, bool)> {
        let mut chunk = new.chunk(from);
        // SAFETY: the new buffers of a stable splice from this mapping's
        // file, pipe locked (type invariant of `NewBuffers`); `pinned`
        // keeps the module.
        let done = unsafe { joins.hold_new(&mut chunk, self.block) }?;
        counted.bytes += done.bytes as i64;
        Some((done.next, done.left == 0))
    }
}

/// What [`FastPath::hold_fast`] did.
struct Fast {
    /// The slot after the buffers that joined holds in a row from the
    /// first on, and their bytes: the slow path starts there.
    joined: u32,
    joined_bytes: usize,
    /// Every buffer is a held buffer.
    all_held: bool,
}

/// Makes the `run` buffers from `slot` on, whose folio is held or out of
/// the page cache (nobody can write it), held buffers, zero copy, and
/// counts them.
fn hold_run(new: &mut NewBuffers<'_>, slot: u32, run: u32, counted: &mut ZeroCopy) {
    for i in 0..run {
        let buf = new.buf_mut(slot.wrapping_add(i));
        take_over(buf);
        counted.bytes += buf.len as i64;
    }
}

/// How many buffers from `slot` on reference the same folio.
fn run_length(new: &NewBuffers<'_>, slot: u32) -> u32 {
    // SAFETY: the buffer references its page.
    let folio_at = |s: u32| unsafe { bindings::ss_page_folio(new.buf(s).page) };
    let first = folio_at(slot);
    let mut n = 1;
    while slot.wrapping_add(n) != new.to && folio_at(slot.wrapping_add(n)) == first {
        n += 1;
    }
    n
}

/// Makes the `run` buffers from `slot` on, page-cache buffers (the caller
/// checked the first) which all reference one page or folio of the file
/// whose mapping is `mapping` (`zero_copy` if holds work there), stable.
fn make_stable(
    new: &mut NewBuffers<'_>,
    mapping: *mut bindings::address_space,
    zero_copy: bool,
    slot: u32,
    run: u32,
    spare: &mut Spare,
    counted: &mut ZeroCopy,
) -> Result {
    let first = new.buf(slot);
    // SAFETY: `first.page` is referenced by the buffer.
    let taken = match FolioKind::from_raw(unsafe { bindings::ss_page_kind(first.page) }) {
        // Anonymous pages (copy_splice_read) and the zero page are already
        // private to the pipe.
        FolioKind::Private => return Ok(()),
        FolioKind::Orphan => Taken::Orphan,
        FolioKind::PageCache if !zero_copy => Taken::Copy,
        FolioKind::PageCache => {
            // SAFETY: the buffers reference the folio.
            let folio = unsafe { bindings::ss_page_folio(first.page) };
            let holds = holds().ok_or(ENODEV)?;
            // SAFETY: pipe locked, the run's buffers reference `folio`,
            // `file` is the splice's source (type invariant).
            unsafe { holds.take(folio, mapping, new.file, run as i32, spare, new.pinned) }?
        }
    };
    match taken {
        // Orphan: out of the page cache since splice_read found it (a
        // writer broke a hold, or truncate): already private to the pipes
        // that have it. Plain page-cache buffers would fail confirm with
        // ENODATA, so it becomes ours too.
        Taken::Held | Taken::Orphan => {
            hold_run(new, slot, run, counted);
            Ok(())
        }
        Taken::Copy => copy_run(new, mapping, slot, run),
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

/// Replaces the page-cache pages of the `run` buffers from `slot` on, all
/// on one page or folio of `mapping`'s, with private copies, made under
/// one taking of the folio lock. The lock keeps write()/truncate from
/// changing the folio mid-copy, so each copy is one whole version of every
/// page-aligned block (and without the lock once the folio left the page
/// cache: nobody changes it then). Once, not per page: a hold refused for
/// a reference that is most often a writer's, waiting for that very lock,
/// sends a whole large folio here, and a lock per page met that writer at
/// every page (a 1 MiB folio beside a 4 KiB writer was spliced at 0.05x
/// its speed alone, tests/bench/README, "Twenty-second round").
fn copy_run(new: &mut NewBuffers<'_>, mapping: *mut bindings::address_space, slot: u32, run: u32) -> Result {
    let mut copies = Copies { new, slot, made: 0 };
    while copies.made < run {
        // SAFETY: no preconditions.
        let page = unsafe { bindings::ss_alloc_page() };
        if page.is_null() {
            return Err(ENOMEM); // `copies` frees those made
        }
        let buf = copies.new.buf_mut(slot.wrapping_add(copies.made));
        buf.private = page as usize as _;
        copies.made += 1;
    }
    // SAFETY: the buffers reference the folio's pages, and outlive the
    // lock. Lock order pipe -> folio, as in filemap_splice_read.
    unsafe {
        let _locked = FolioLock::lock_in(bindings::ss_page_folio(copies.new.buf(slot).page), mapping);
        for i in 0..run {
            let buf = copies.new.buf(slot.wrapping_add(i));
            bindings::ss_memcpy_page(copies.page(i), buf.offset, buf.page, buf.offset, buf.len as usize);
        }
    }
    copies.install();
    Ok(())
}

/// Private pages made for a run of page-cache buffers, each parked in its
/// buffer's `private` (page-cache buffers leave it 0, and no consumer sees
/// new buffers) until all are made and filled; freed unless installed.
struct Copies<'n, 'a> {
    new: &'n mut NewBuffers<'a>,
    slot: u32,
    /// Buffers from `slot` on that have a copy parked.
    made: u32,
}

impl Copies<'_, '_> {
    fn page(&self, i: u32) -> *mut bindings::page {
        self.new.buf(self.slot.wrapping_add(i)).private as usize as *mut bindings::page
    }

    /// Makes each buffer point at its copy: the page-cache reference goes
    /// through the buffer's own operations, then the buffer is ours.
    fn install(mut self) {
        for i in 0..self.made {
            let slot = self.slot.wrapping_add(i);
            let copy = self.page(i);
            self.new.release(slot);
            let buf = self.new.buf_mut(slot);
            buf.page = copy;
            take_over(buf);
            COUNTERS.bytes_copied_at_splice.add(buf.len as i64);
        }
        self.made = 0;
    }
}

impl Drop for Copies<'_, '_> {
    fn drop(&mut self) {
        for i in 0..self.made {
            let page = self.page(i);
            // SAFETY: a page of ours that nothing else references.
            unsafe { bindings::ss_put_page(page) };
            self.new.buf_mut(self.slot.wrapping_add(i)).private = 0;
        }
    }
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
