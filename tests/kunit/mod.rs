// SPDX-License-Identifier: GPL-2.0

//! KUnit suite `stable_splice`, built into the module with `make KUNIT=1`
//! and run by KUnit when the module is inserted (KTAP in the kernel log).

use kernel::{macros::kunit_tests, prelude::*};

/// A file, a kernel-side pipe and the calls a test makes on them.
pub(crate) struct Scratch {
    file: *mut crate::bindings::file,
    fifo: *mut crate::bindings::file,
}

impl Scratch {
    /// An `O_TMPFILE` in `dir` and a FIFO `fifo` to splice into.
    pub(crate) fn new(dir: &CStr, fifo: &CStr) -> Result<Self> {
        use crate::bindings as b;
        // SAFETY: valid NUL-terminated paths; results checked below.
        let file = unsafe { b::ss_test_open_tmpfile(dir.as_char_ptr()) };
        // SAFETY: any pointer may be tested.
        kernel::error::to_result(unsafe { b::ss_err_ptr(file.cast()) } as i32)?;
        // SAFETY: as above.
        let fifo = unsafe { b::ss_test_open_fifo(fifo.as_char_ptr()) };
        // SAFETY: as above.
        if let Err(e) = kernel::error::to_result(unsafe { b::ss_err_ptr(fifo.cast()) } as i32) {
            // SAFETY: `file` is a file we opened.
            unsafe { b::ss_test_fput(file) };
            return Err(e);
        }
        Ok(Self { file, fifo })
    }

    pub(crate) fn pwrite(&self, data: &[u8], pos: i64) -> Result<usize> {
        // SAFETY: `file` is open; `data` is valid for reads.
        let n = unsafe {
            crate::bindings::ss_test_pwrite(self.file, data.as_ptr().cast(), data.len(), pos)
        };
        if n < 0 { Err(Error::from_errno(n as i32)) } else { Ok(n as usize) }
    }

    /// Splices `len` bytes from offset 0 into the FIFO; with `stable`, as a
    /// `SPLICE_F_STABLE` caller would.
    pub(crate) fn splice(&self, len: usize, stable: bool) -> Result<usize> {
        let _marked = if stable {
            Some(crate::splice::calls().ok_or(ENODEV)?.mark_current(crate::splice::SPLICE_F_STABLE)?)
        } else {
            None
        };
        let mut pos = 0i64;
        // SAFETY: open files; the FIFO's pipe lives as long as `fifo`.
        let n = unsafe {
            let pipe = crate::bindings::ss_test_file_pipe(self.fifo);
            crate::bindings::ss_test_splice_read(self.file, &mut pos, pipe, len)
        };
        if n < 0 { Err(Error::from_errno(n as i32)) } else { Ok(n as usize) }
    }

    /// What the pipe holds, buffer by buffer, without consuming it.
    pub(crate) fn inspect_pipe(&self) -> Result<KVec<BufInfo>> {
        use crate::bindings as b;
        let mut out = KVec::new();
        // SAFETY: the FIFO is open; its pipe is locked while we walk it.
        unsafe {
            let pipe = b::ss_test_file_pipe(self.fifo);
            b::pipe_lock(pipe);
            let (mut slot, head) = (b::ss_pipe_tail(pipe), b::ss_pipe_head(pipe));
            let mut res = Ok(());
            while slot != head {
                let buf = &*b::ss_pipe_buf(pipe, slot);
                let stable = crate::stable_buf::is_stable_buf(buf);
                let page_cache = b::ss_page_in_page_cache(buf.page);
                res = out.push(
                    BufInfo {
                        stable,
                        // Zero copy: the stable buffer is the page-cache page.
                        held: stable && page_cache,
                        page: buf.page as usize,
                        page_cache,
                        can_merge: buf.flags & b::PIPE_BUF_FLAG_CAN_MERGE != 0,
                        len: buf.len as usize,
                    },
                    GFP_KERNEL,
                );
                if res.is_err() {
                    break;
                }
                slot = slot.wrapping_add(1);
            }
            b::pipe_unlock(pipe);
            res?;
        }
        Ok(out)
    }

    /// Drains the LRU batches, so that a freshly written page is not
    /// referenced by one when it is spliced (it would be copied).
    pub(crate) fn drain_lru(&self) -> Result {
        // SAFETY: no preconditions.
        kernel::error::to_result(unsafe { crate::bindings::ss_test_drain_lru() })
    }

    /// The page at `index` in the file's page cache right now.
    pub(crate) fn page_cache_page(&self, index: usize) -> usize {
        // SAFETY: `file` is open; the page is only compared, not used.
        unsafe { crate::bindings::ss_test_page_cache_page(self.file, index as _) as usize }
    }

    /// Drains up to `buf.len()` bytes from the FIFO.
    pub(crate) fn read_pipe(&self, buf: &mut [u8]) -> Result<usize> {
        // SAFETY: `fifo` is open; `buf` is valid for writes.
        let n = unsafe { crate::bindings::ss_test_read(self.fifo, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 { Err(Error::from_errno(n as i32)) } else { Ok(n as usize) }
    }
}

/// One pipe buffer as [`Scratch::inspect_pipe`] saw it.
pub(crate) struct BufInfo {
    stable: bool,
    held: bool,
    page: usize,
    page_cache: bool,
    can_merge: bool,
    len: usize,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: both files were opened in `new` and are not used again;
        // unread stable buffers are released with the pipe.
        unsafe {
            crate::bindings::ss_test_fput(self.fifo);
            crate::bindings::ss_test_fput(self.file);
        }
    }
}

const PAGE: usize = 4096;

/// Metzmacher's program (seeds/002) in the kernel: page 1 holds 0x1f and
/// page 0 zeroes, splice both, overwrite both with 0xf0, read the pipe.
/// Returns the two pages as read from the pipe.
fn metzmacher(dir: &CStr, fifo: &CStr, stable: bool) -> Result<KVec<u8>> {
    metzmacher_steps(dir, fifo, stable)
        .inspect_err(|(step, e)| pr_err!("metzmacher in {:?}: {} failed: {:?}\n", dir, step, e))
        .map_err(|(_, e)| e)
}

fn metzmacher_steps(dir: &CStr, fifo: &CStr, stable: bool) -> Result<KVec<u8>, (&'static str, Error)> {
    let s = Scratch::new(dir, fifo).map_err(|e| ("open", e))?;
    let mut page = KVec::from_elem(0x1fu8, PAGE, GFP_KERNEL).map_err(|e| ("alloc", e.into()))?;
    match s.pwrite(&page, PAGE as i64) {
        Ok(PAGE) => {}
        Ok(_) => return Err(("pwrite 0x1f", EIO)),
        Err(e) => return Err(("pwrite 0x1f", e)),
    }
    match s.splice(2 * PAGE, stable) {
        Ok(n) if n == 2 * PAGE => {}
        Ok(_) => return Err(("splice (short)", EIO)),
        Err(e) => return Err(("splice", e)),
    }
    page.fill(0xf0);
    s.pwrite(&page, 0).map_err(|e| ("pwrite 0xf0 @0", e))?;
    s.pwrite(&page, PAGE as i64).map_err(|e| ("pwrite 0xf0 @4096", e))?;
    let mut out = KVec::from_elem(0u8, 2 * PAGE, GFP_KERNEL).map_err(|e| ("alloc", e.into()))?;
    let mut got = 0;
    while got < out.len() {
        match s.read_pipe(&mut out[got..]) {
            Ok(0) => return Err(("read pipe (empty)", EIO)),
            Ok(n) => got += n,
            Err(e) => return Err(("read pipe", e)),
        }
    }
    Ok(out)
}

/// Three freshly allocated pages' folios, our reference on each.
fn three_folios() -> Result<KVec<crate::folio::FolioRef>> {
    let mut folios = KVec::new();
    for _ in 0..3 {
        // SAFETY: no preconditions; checked for NULL below.
        let page = unsafe { crate::bindings::ss_alloc_page() };
        assert!(!page.is_null());
        // SAFETY: our page; its folio holds our reference.
        folios.push(unsafe { crate::folio::FolioRef::adopt(crate::bindings::ss_page_folio(page)) }, GFP_KERNEL)?;
    }
    Ok(folios)
}

/// A folio's reference count.
fn folio_refs(folio: *mut crate::folio::RawFolio) -> i32 {
    // SAFETY: the caller keeps the folio alive.
    unsafe { crate::bindings::ss_test_folio_refs(folio) }
}

/// An ext4 file of five pages written a page at a time (small folios),
/// spliced plainly into the FIFO at `fifo` (the LRU batches drained first,
/// so that only the page cache and the pipe reference the folios): the
/// scratch and the folios of its five buffers.
fn five_small_folios_spliced(fifo: &CStr, byte: u8) -> Result<(Scratch, [*mut crate::folio::RawFolio; 5])> {
    let s = Scratch::new(c"/tmp/ss/ext4", fifo)?;
    let data = KVec::from_elem(byte, PAGE, GFP_KERNEL)?;
    for i in 0..5 {
        s.pwrite(&data, (i * PAGE) as i64)?;
    }
    s.drain_lru()?;
    assert_eq!(s.splice(5 * PAGE, false)?, 5 * PAGE);
    let bufs = s.inspect_pipe()?;
    assert_eq!(bufs.len(), 5);
    // SAFETY: the pipe's buffers reference the pages.
    let folios = core::array::from_fn(|i| unsafe { crate::bindings::ss_page_folio(bufs[i].page as *mut crate::bindings::page) });
    Ok((s, folios))
}

/// Runs `f` on the buffers of the FIFO of `s` from `skip` past its tail to
/// its head, as a stable splice's new buffers, with the pipe locked.
fn with_new_buffers<R>(s: &Scratch, skip: u32, f: impl FnOnce(&mut crate::bindings::ss_pipe_chunk) -> R) -> R {
    use crate::bindings;
    // SAFETY: the FIFO's pipe, locked around `f`; its ring read under the lock.
    unsafe {
        let pipe = bindings::ss_test_file_pipe(s.fifo);
        bindings::pipe_lock(pipe);
        let (mut mask, mut to) = (0, 0);
        let ring = bindings::ss_pipe_ring(pipe, &mut mask, &mut to);
        let from = bindings::ss_pipe_tail(pipe) + skip;
        let r = f(&mut bindings::ss_pipe_chunk { bufs: ring, mask, from, to });
        bindings::pipe_unlock(pipe);
        r
    }
}

fn all(bytes: &[u8], v: u8) -> bool {
    bytes.iter().all(|&b| b == v)
}

#[kunit_tests(stable_splice)]
mod tests {
    use super::*;
    use crate::{bindings, splice::SPLICE_F_STABLE};

    #[test]
    fn flag_matches_uapi_header() {
        // include/uapi/linux/stable_splice.h, through bindgen.
        assert_eq!(SPLICE_F_STABLE, bindings::SS_SPLICE_F_STABLE);
        assert_eq!(SPLICE_F_STABLE, 0x10);
        // Must not collide with a flag the kernel knows.
        assert_eq!(SPLICE_F_STABLE & bindings::SS_SPLICE_F_ALL, 0);
    }

    #[test]
    fn layout_matches_c_compiler() -> Result {
        crate::layout::check()
    }

    #[test]
    fn hooks_installed_while_loaded() {
        assert!(crate::hooks_installed());
        assert!(crate::splice::calls().is_some());
    }

    /// The stable mode's lookup: thread-group ids that share a slot of the
    /// filter stay apart, a second entry of the same id is not counted
    /// twice, and the filter says no again once both are gone. The ids are
    /// above `PID_MAX_LIMIT`: no process can have them.
    #[test]
    fn mode_lookup_keeps_tgids_sharing_a_filter_slot() -> Result {
        let m = crate::mode::modes().ok_or(ENODEV)?;
        let (a, b) = ((1usize << 23) + 5, (1usize << 23) + 5 + 256);
        // A failed assert ends the test early: take the fake members out
        // then too, or the filter would send every later lookup of their
        // slot to the XArray.
        struct Members<'a>(&'a crate::mode::Modes, [usize; 2]);
        impl Drop for Members<'_> {
            fn drop(&mut self) {
                for id in self.1 {
                    self.0.remove(id); // nothing for an id not in
                }
            }
        }
        let _members = Members(m, [a, b]);
        assert!(!m.contains(a) && !m.contains(b));
        m.insert(a, GFP_KERNEL)?;
        assert!(m.contains(a) && !m.contains(b));
        m.insert(b, GFP_KERNEL)?;
        m.insert(a, GFP_KERNEL)?;
        assert!(m.contains(a) && m.contains(b));
        m.remove(a);
        assert!(!m.contains(a) && m.contains(b));
        m.remove(a);
        // Removing an absent id must not take another's count.
        assert!(m.contains(b));
        m.remove(b);
        assert!(!m.contains(a) && !m.contains(b));
        // The slot is not counted once its ids are gone.
        assert!(!m.filter_may_contain(a));
        Ok(())
    }

    /// The per-file index of holds: entries by page index, across gaps and
    /// block boundaries; they own no reference.
    #[test]
    fn hold_index_keeps_and_finds_folios() -> Result {
        use crate::hold_index::HoldIndex;
        let index = KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?;
        let folios = three_folios()?;
        let raw: [_; 3] = core::array::from_fn(|k| folios[k].as_ptr());
        let refs = raw.map(folio_refs);
        // 63 and 64 straddle a block's boundary (64 entries a block).
        let at = [63usize, 64, 200];
        for (&i, &f) in at.iter().zip(raw.iter()) {
            assert!(matches!(index.insert(i, f), Ok(p) if p.is_null()));
        }
        assert_eq!(raw.map(folio_refs), refs);
        assert_eq!(index.get(64), raw[1]);
        assert!(index.get(65).is_null());
        assert_eq!(index.next(65, usize::MAX), Some((200, raw[2])));
        assert_eq!(index.next(201, usize::MAX), None);
        assert_eq!(index.next(65, 199), None);
        // Replacing an entry says what it replaced; removing takes it out.
        assert!(matches!(index.insert(200, raw[0]), Ok(p) if p == raw[2]));
        assert!(index.remove(63));
        assert!(!index.remove(63));
        // Block 0..=63 went with its last entry, and the index forgets it
        // as the block it found last: a new entry there goes into a new
        // block, which the XArray walk of `next` finds (an entry written
        // into the freed block through a stale memory would not be).
        assert!(index.get(63).is_null());
        assert!(matches!(index.insert(10, raw[2]), Ok(p) if p.is_null()));
        assert_eq!(index.get(10), raw[2]);
        assert_eq!(index.next(0, 63), Some((10, raw[2])));
        // Dropping the index with entries left (10, 64, 200) puts nothing.
        drop(index);
        assert_eq!(raw.map(folio_refs), refs);
        drop(folios);
        Ok(())
    }

    /// The walks that take entries out. The shrinker's frees the blocks
    /// whose range has no page cached (every entry there is stale), and
    /// keeps the others whole. The on-demand one looks at up to its budget
    /// of entries from an index on, each against what the file's page
    /// cache has there: an entry whose folio somebody still reads (here
    /// the pipe's buffers) stays, one whose folio is not there (another
    /// folio, or none at its index) goes; once the pipe is drained, all
    /// go. Nothing is put: entries own no reference.
    #[test]
    fn hold_index_reaps_in_steps() -> Result {
        use crate::hold_index::HoldIndex;
        let (s, folios) = five_small_folios_spliced(c"/tmp/ss/kunit-ext4-reap.fifo", 0x2d)?;
        // SAFETY: the scratch file's mapping, alive with `s`.
        let mapping = unsafe { bindings::ss_file_mapping(s.file) };
        let index = KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?;
        let stale = three_folios()?;
        for i in 0..5 {
            assert!(index.insert(i, folios[i]).is_ok());
        }
        // Another folio at 5 (the file has five pages), cached folios at
        // indices not their own, in the next block (64..=127).
        assert!(index.insert(5, stale[0].as_ptr()).is_ok());
        for (i, k) in [(64, 0), (65, 1), (70, 2)] {
            assert!(index.insert(i, folios[k]).is_ok());
        }
        let refs = folios.map(folio_refs);
        let r = index.drop_uncached(mapping, 0, 8);
        assert_eq!((r.ended, r.seen, r.next), (3, 2, None)); // block 1 went
        assert!(index.get(64).is_null() && index.get(70).is_null());
        assert_eq!(index.get(5), stale[0].as_ptr());
        let r = index.reap(mapping, 0, 3);
        assert_eq!((r.ended, r.seen, r.next), (0, 3, Some(3))); // all read by the pipe
        let r = index.reap(mapping, 3, 64);
        assert_eq!((r.ended, r.seen, r.next), (1, 3, None)); // 5 went
        assert!(index.get(5).is_null());
        assert_eq!(folios.map(folio_refs), refs);
        let mut buf = KVec::from_elem(0u8, 5 * PAGE, GFP_KERNEL)?;
        assert_eq!(s.read_pipe(&mut buf)?, 5 * PAGE);
        let r = index.reap(mapping, 0, 64);
        assert_eq!((r.ended, r.seen, r.next), (5, 5, None));
        assert_eq!(index.next(0, usize::MAX), None);
        drop(index);
        drop(stale);
        drop(s);
        Ok(())
    }

    /// A chunk's stores step from slot to slot: runs of consecutive indices
    /// from index 0 on across block boundaries (64 entries a block) and
    /// through the XArray of blocks growing (its head, then a level at
    /// 4096 / 64 blocks), then the same runs again, replacing every entry.
    #[test]
    fn hold_index_stores_runs() -> Result {
        use crate::{folio::IndexStore, hold_index::HoldIndex};
        let index = KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?;
        let folios = three_folios()?;
        let mut at = KVec::new();
        for (first, last) in [(0usize, 130usize), (500, 700), (4090, 4100)] {
            for i in first..=last {
                at.push(i, GFP_KERNEL)?;
            }
        }
        for round in 0..2 {
            let mut stores = KVec::new();
            for (k, &i) in at.iter().enumerate() {
                stores.push(IndexStore::new(i, folios[(k + round) % 3].as_ptr()), GFP_KERNEL)?;
            }
            let stored = index.insert_all(&mut stores);
            assert_eq!(stored, at.len());
            for (k, (&i, s)) in at.iter().zip(stores.iter()).enumerate() {
                assert_eq!(index.get(i), folios[(k + round) % 3].as_ptr());
                let replaced = if round == 0 { core::ptr::null_mut() } else { folios[k % 3].as_ptr() };
                assert_eq!(s.old, replaced);
            }
        }
        for gap in [131usize, 499, 701, 4089, 4101] {
            assert!(index.get(gap).is_null());
        }
        // Finding the next entry skips empty slots and absent blocks.
        assert_eq!(index.next(131, 499), None);
        assert_eq!(index.next(131, usize::MAX).map(|(i, _)| i), Some(500));
        assert_eq!(index.next(701, usize::MAX).map(|(i, _)| i), Some(4090));
        assert_eq!(index.next(4101, usize::MAX), None);
        // Taking out every entry of a block (which frees it) leaves the
        // next block's entries found.
        for i in 0..64 {
            assert!(index.remove(i));
        }
        assert_eq!(index.next(0, usize::MAX).map(|(i, _)| i), Some(64));
        drop(index);
        drop(folios);
        Ok(())
    }

    /// Plain splice puts page-cache pages into the pipe (so the cases below
    /// can tell the difference). On tmpfs a stable splice puts private
    /// copies there, with the module's operations, never mergeable, and
    /// counts them.
    #[test]
    fn tmpfs_stable_buffers_are_private_copies() -> Result {
        use crate::counters::COUNTERS;
        let s = Scratch::new(c"/tmp/ss/tmpfs", c"/tmp/ss/kunit-tmpfs-bufs.fifo")?;
        let data = KVec::from_elem(0x5au8, 3 * PAGE, GFP_KERNEL)?;
        s.pwrite(&data, 0)?;

        assert_eq!(s.splice(3 * PAGE, false)?, 3 * PAGE);
        let plain = s.inspect_pipe()?;
        assert_eq!(plain.len(), 3);
        assert!(plain.iter().all(|b| b.page_cache && !b.stable));
        let mut sink = KVec::from_elem(0u8, 3 * PAGE, GFP_KERNEL)?;
        assert_eq!(s.read_pipe(&mut sink)?, 3 * PAGE);

        let copied = COUNTERS.bytes_copied_at_splice.get();
        assert_eq!(s.splice(3 * PAGE, true)?, 3 * PAGE);
        let stable = s.inspect_pipe()?;
        assert_eq!(stable.len(), 3);
        assert!(stable.iter().all(|b| b.stable && !b.held && !b.page_cache && !b.can_merge));
        assert_eq!(stable.iter().map(|b| b.len).sum::<usize>(), 3 * PAGE);
        assert_eq!(COUNTERS.bytes_copied_at_splice.get() - copied, 3 * PAGE as i64);
        assert_eq!(s.read_pipe(&mut sink)?, 3 * PAGE);
        Ok(())
    }

    /// On ext4 and xfs a stable splice is zero copy: the pipe buffers are
    /// the page-cache pages themselves, held. A write breaks the hold: a
    /// copy takes the page's place in the page cache, the pipe keeps the
    /// old page and its bytes. Holds end once nobody reads their pages.
    fn zero_copy_until_written(dir: &CStr, fifo: &CStr) -> Result {
        use crate::counters::COUNTERS;
        let s = Scratch::new(dir, fifo)?;
        let data = KVec::from_elem(0x5au8, 3 * PAGE, GFP_KERNEL)?;
        s.pwrite(&data, 0)?;
        s.drain_lru()?;
        let (zc, copied, holds, breaks) = (
            COUNTERS.bytes_zero_copy.get(),
            COUNTERS.bytes_copied_at_splice.get(),
            COUNTERS.holds_active.get(),
            COUNTERS.breaks.get(),
        );
        assert_eq!(s.splice(3 * PAGE, true)?, 3 * PAGE);
        let bufs = s.inspect_pipe()?;
        assert_eq!(bufs.len(), 3);
        assert!(bufs.iter().all(|b| b.stable && b.held && b.page_cache && !b.can_merge));
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(b.page, s.page_cache_page(i));
        }
        assert_eq!(COUNTERS.bytes_zero_copy.get() - zc, 3 * PAGE as i64);
        assert_eq!(COUNTERS.bytes_copied_at_splice.get(), copied);
        assert!(COUNTERS.holds_active.get() > holds);

        let new = KVec::from_elem(0xa5u8, PAGE, GFP_KERNEL)?;
        s.pwrite(&new, 0)?;
        assert!(COUNTERS.breaks.get() > breaks);
        assert_ne!(s.page_cache_page(0), bufs[0].page);
        let after = s.inspect_pipe()?;
        assert_eq!(after[0].page, bufs[0].page);
        let mut sink = KVec::from_elem(0u8, 3 * PAGE, GFP_KERNEL)?;
        assert_eq!(s.read_pipe(&mut sink)?, 3 * PAGE);
        assert!(all(&sink, 0x5a));
        drop(s);
        // The reaper ends the other two holds within 100 ms of the pipe
        // letting go (LRU batches drained every second in case one took a
        // reference).
        for round in 0..400 {
            if COUNTERS.holds_active.get() <= holds {
                break;
            }
            if round % 100 == 50 {
                // SAFETY: no preconditions.
                unsafe { crate::bindings::ss_test_drain_lru() };
            }
            // SAFETY: sleeps in the test's kthread, no locks held.
            unsafe { crate::bindings::ss_sleep_killable_ms(10) };
        }
        assert!(COUNTERS.holds_active.get() <= holds);
        Ok(())
    }

    /// A folio lock taken as a stable splice takes it: a free folio is
    /// locked; a folio gone from the mapping asked about is never waited
    /// for, even one this very task holds locked (a wait would never end).
    #[test]
    fn folio_lock_in_locks_and_never_waits_for_a_folio_gone() -> Result {
        use crate::folio::{FolioLock, Mapping};
        let folios = three_folios()?;
        let f = folios[0].as_ptr();
        // A page nobody's page cache holds: its mapping is NULL, so it is
        // "in" the NULL mapping and "gone" from any other. Only compared.
        let elsewhere = core::ptr::NonNull::<Mapping>::dangling().as_ptr();
        // SAFETY: our reference outlives the locks; this test may sleep.
        let locked = unsafe { FolioLock::lock_in(f, core::ptr::null_mut()) };
        assert!(locked.is_some());
        // SAFETY: our reference keeps the folio alive.
        assert!(unsafe { bindings::ss_test_folio_locked(f) });
        // Locked by us, and not in `elsewhere`: a wait would never end
        // (this task holds the lock); lock_in must say "gone" at once.
        // SAFETY: as above.
        assert!(unsafe { FolioLock::lock_in(f, elsewhere) }.is_none());
        drop(locked);
        // SAFETY: as above.
        assert!(!unsafe { bindings::ss_test_folio_locked(f) });
        // Free and gone: taken anyway (the caller checks the mapping).
        // SAFETY: as above.
        let again = unsafe { FolioLock::lock_in(f, elsewhere) };
        assert!(again.is_some());
        drop(again);
        // SAFETY: as above.
        assert!(!unsafe { bindings::ss_test_folio_locked(f) });
        Ok(())
    }

    /// The table of files with holds (`src/hold/table.rs`), with made-up
    /// mapping addresses (it never dereferences them): files sharing a home
    /// slot are found until removed, also past a removed one's tombstone;
    /// a removal with an empty slot after it empties its tombstones too;
    /// a file with no slot within reach overflows, and while one does,
    /// every file may have holds.
    #[test]
    fn held_files_table_finds_files_until_removed() -> Result {
        use crate::hold::table::{home, HeldFiles, Slot, PROBES};
        let t = HeldFiles::new()?;
        const H: usize = 100;
        let mut same = KVec::new();
        let mut m = 1usize << 40;
        while same.len() < PROBES + 2 {
            if home(m) == H {
                same.push(m, GFP_KERNEL)?;
            }
            m += 64;
        }
        let (a, b, c, absent) = (same[0], same[1], same[2], same[3]);
        let (sa, sb, sc) = (t.insert(a), t.insert(b), t.insert(c));
        assert_eq!((sa, sb, sc), (Slot::At(H), Slot::At(H + 1), Slot::At(H + 2)));
        assert!(t.may_have(a) && t.may_have(b) && t.may_have(c));
        assert!(!t.may_have(absent));
        // The middle one's slot becomes a tombstone: the last is still found.
        t.remove(sb);
        assert!(!t.may_have(b) && t.may_have(c));
        assert_eq!(t.occupied(), 3);
        // The last one's next slot is empty: its slot and the tombstone
        // before it empty out.
        t.remove(sc);
        assert!(t.may_have(a) && !t.may_have(c));
        assert_eq!(t.occupied(), 1);
        // The tombstone-free run is reused from the front.
        let sb = t.insert(b);
        assert_eq!(sb, Slot::At(H + 1));
        t.remove(sa);
        assert!(t.may_have(b) && !t.may_have(a));
        t.remove(sb);
        assert_eq!(t.occupied(), 0);
        // PROBES files fill the reach of home H; one more overflows.
        let mut slots = KVec::new();
        for &f in same.iter().take(PROBES) {
            slots.push(t.insert(f), GFP_KERNEL)?;
        }
        assert!(slots.iter().all(|s| matches!(s, Slot::At(_))));
        assert!(!t.may_have(same[PROBES]));
        let over = t.insert(same[PROBES]);
        assert_eq!(over, Slot::Overflow);
        assert!(t.may_have(same[PROBES]) && t.may_have(1 << 41));
        t.remove(over);
        assert!(!t.may_have(same[PROBES]) && !t.may_have(same[PROBES + 1]));
        for s in slots {
            t.remove(s);
        }
        assert_eq!(t.occupied(), 0);
        Ok(())
    }

    /// A chunk's joins and new holds in one pass (`ss_pipe_hold_new`),
    /// on five small folios of an ext4 file in a pipe after a plain splice:
    /// a folio nobody else references gets a hold (its entry stored, its
    /// buffer made stable); one with a writer's reference is refused; one
    /// whose lock is taken is left; one whose index slot holds a folio that
    /// left the cache replaces that stale entry (its reference put); one
    /// the index holds is joined. Only the new entries stay counted.
    #[test]
    fn hold_new_joins_holds_refuses_and_leaves() -> Result {
        use crate::{
            folio::{FolioLock, FolioRef},
            hold::HoldCount,
            hold_index::HoldIndex,
        };
        use core::{mem::MaybeUninit, sync::atomic::Ordering::Relaxed};
        let (s, folios) = five_small_folios_spliced(c"/tmp/ss/kunit-ext4-hold-new.fifo", 0x3c)?;
        let folio = |i: usize| folios[i];
        let index = KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?;
        // A writer's reference on 1; 2 locked; a stale entry at 3; 4 held.
        // SAFETY: the buffers keep the folios alive.
        let writer = unsafe { FolioRef::get(folio(1)) };
        // SAFETY: as above; nothing else of this test locks it.
        let locked = unsafe { FolioLock::lock(folio(2)) };
        let stale = three_folios()?;
        assert!(index.insert(3, stale[0].as_ptr()).is_ok());
        assert!(index.insert(4, folio(4)).is_ok());
        let refs: [i32; 5] = core::array::from_fn(|i| folio_refs(folio(i)));
        let count = HoldCount::new(0);
        let mut out = MaybeUninit::<bindings::ss_new_holds>::uninit();
        let out = with_new_buffers(&s, 0, |chunk| {
            let to = chunk.to;
            // SAFETY: the pipe is locked; its new buffers are the plain
            // splice's, of this file; the index and the count are this
            // test's (nobody else's bucket lock to hold).
            let out = unsafe {
                let mapping = bindings::ss_file_mapping(s.file);
                bindings::ss_pipe_hold_new(chunk, 32, mapping, index.raw(), count.as_ptr().cast(), out.as_mut_ptr());
                out.assume_init()
            };
            assert_eq!(out.next, to);
            out
        });
        let after: [i32; 5] = core::array::from_fn(|i| folio_refs(folio(i)));
        drop(locked);
        drop(writer);
        assert_eq!((out.joined, out.stored, out.fresh, out.refused, out.left), (1, 2, 1, 1, 2));
        assert_eq!(out.bytes, 3 * PAGE as u64);
        assert_eq!(count.load(Relaxed), 1);
        assert_eq!(index.get(0), folio(0));
        assert!(index.get(1).is_null() && index.get(2).is_null());
        assert_eq!(index.get(3), folio(3));
        assert_eq!(index.get(4), folio(4));
        // New entries own no reference.
        assert_eq!(after, refs);
        let after = s.inspect_pipe()?;
        assert_eq!(after.len(), 5);
        let stable: [bool; 5] = core::array::from_fn(|i| after[i].stable);
        assert_eq!(stable, [true, false, false, true, true]);
        assert!(after.iter().all(|b| b.page_cache && !b.can_merge));
        drop(index);
        drop(stale);
        drop(s);
        Ok(())
    }

    /// A file served again: the new buffers whose folios the index holds,
    /// in a row from the first, join those holds in one pass
    /// (`ss_pipe_join_held`) and become stable buffers; a folio whose
    /// entry is another folio's (one that left the cache) ends the row, and
    /// a row that starts at a folio not held joins nothing.
    #[test]
    fn join_held_joins_held_folios_in_a_row() -> Result {
        use crate::hold_index::HoldIndex;
        let (s, folios) = five_small_folios_spliced(c"/tmp/ss/kunit-ext4-join-held.fifo", 0x4b)?;
        let folio = |i: usize| folios[i];
        let index = KBox::pin_init(HoldIndex::new(), GFP_KERNEL)?;
        // 0, 1 and 3 held; 2's entry is another folio's.
        let stale = three_folios()?;
        for (i, f) in [(0, folio(0)), (1, folio(1)), (2, stale[0].as_ptr()), (3, folio(3))] {
            assert!(index.insert(i, f).is_ok());
        }
        // Joins from `skip` buffers past the pipe's tail on: (slots joined, bytes).
        let join = |skip: u32| -> (u32, u64) {
            with_new_buffers(&s, skip, |chunk| {
                let mut bytes = 0;
                // SAFETY: the pipe is locked; its new buffers are the plain
                // splice's, of this file; the index is this test's (nobody
                // else's bucket lock to hold).
                let next = unsafe { bindings::ss_pipe_join_held(chunk, index.raw(), &mut bytes) };
                (next - chunk.from, bytes)
            })
        };
        let stable = || -> Result<[bool; 5]> {
            let b = s.inspect_pipe()?;
            Ok(core::array::from_fn(|i| b[i].stable))
        };
        assert_eq!(join(0), (2, 2 * PAGE as u64));
        assert_eq!(stable()?, [true, true, false, false, false]);
        assert_eq!(join(2), (0, 0));
        assert_eq!(join(3), (1, PAGE as u64));
        assert_eq!(join(4), (0, 0));
        assert_eq!(stable()?, [true, true, false, true, false]);
        assert!(s.inspect_pipe()?.iter().all(|b| b.page_cache && !b.can_merge));
        drop(index);
        drop(stale);
        drop(s);
        Ok(())
    }

    #[test]
    fn ext4_zero_copy_until_written() -> Result {
        zero_copy_until_written(c"/tmp/ss/ext4", c"/tmp/ss/kunit-ext4-zc.fifo")
    }

    #[test]
    fn xfs_zero_copy_until_written() -> Result {
        zero_copy_until_written(c"/tmp/ss/xfs", c"/tmp/ss/kunit-xfs-zc.fifo")
    }

    // The scratch file systems are mounted by scripts/lib/scratch-fs.sh
    // before insmod; a missing one fails the case.

    #[test]
    fn metzmacher_ext4_plain_shows_overwrite() -> Result {
        let out = metzmacher(c"/tmp/ss/ext4", c"/tmp/ss/kunit-ext4-plain.fifo", false)?;
        assert!(all(&out, 0xf0));
        Ok(())
    }

    #[test]
    fn metzmacher_ext4_stable_keeps_snapshot() -> Result {
        let out = metzmacher(c"/tmp/ss/ext4", c"/tmp/ss/kunit-ext4-stable.fifo", true)?;
        assert!(all(&out[..PAGE], 0x00));
        assert!(all(&out[PAGE..], 0x1f));
        Ok(())
    }

    #[test]
    fn metzmacher_xfs_plain_shows_overwrite() -> Result {
        let out = metzmacher(c"/tmp/ss/xfs", c"/tmp/ss/kunit-xfs-plain.fifo", false)?;
        assert!(all(&out, 0xf0));
        Ok(())
    }

    #[test]
    fn metzmacher_xfs_stable_keeps_snapshot() -> Result {
        let out = metzmacher(c"/tmp/ss/xfs", c"/tmp/ss/kunit-xfs-stable.fifo", true)?;
        assert!(all(&out[..PAGE], 0x00));
        assert!(all(&out[PAGE..], 0x1f));
        Ok(())
    }

    #[test]
    fn metzmacher_tmpfs_plain_shows_overwrite() -> Result {
        let out = metzmacher(c"/tmp/ss/tmpfs", c"/tmp/ss/kunit-tmpfs-plain.fifo", false)?;
        // Page 0 is a hole: tmpfs splices the shared zero page, which the
        // write replaces rather than changes. Page 1 is the page cache.
        assert!(all(&out[..PAGE], 0x00));
        assert!(all(&out[PAGE..], 0xf0));
        Ok(())
    }

    #[test]
    fn metzmacher_tmpfs_stable_keeps_snapshot() -> Result {
        let out = metzmacher(c"/tmp/ss/tmpfs", c"/tmp/ss/kunit-tmpfs-stable.fifo", true)?;
        assert!(all(&out[..PAGE], 0x00));
        assert!(all(&out[PAGE..], 0x1f));
        Ok(())
    }
}
