//! Breaks without memory: the kernel's fault injection
//! (`CONFIG_FAIL_PAGE_ALLOC`, debugfs `fail_page_alloc`) aimed at the
//! writer thread alone (`task-filter` and its `make-it-fail`) and at
//! allocations of 4 pages and more (`min-order`), so that the copy a break
//! of a large folio needs cannot be allocated while the file system's own
//! allocations (order 0, or falling back to it) go on: ext4 and xfs retry
//! those forever in places, in uninterruptible sleeps. A break that cannot
//! allocate its copy takes the clean held folio out of the page cache
//! instead (`breaks_evicted`) and the write goes through, reading back
//! what it does not overwrite; where even that fails the writer gets
//! `ENOMEM`. A held folio is never written in place.

use super::Ctx;
use crate::util::*;
use std::time::{Duration, Instant};

const FAIL: &str = "/sys/kernel/debug/fail_page_alloc";
/// A file that ext4 and xfs cache in large folios (up to 2 MiB) on a kernel
/// with transparent hugepages.
const LEN: usize = 2 << 20;
/// The pages written: one every 128 KiB.
const STRIDE: usize = 32;
/// Failed allocations are those of this order and more.
const MIN_ORDER: u32 = 2;

/// Fault-injection settings written; the old values are restored when
/// dropped, in reverse order.
struct Armed {
    saved: Vec<(String, String)>,
}

impl Armed {
    fn new() -> Self {
        Self { saved: Vec::new() }
    }

    fn set(&mut self, path: &str, value: &str) -> TResult {
        let old = std::fs::read_to_string(path).map_err(|e| TestErr::Fail(format!("{path}: {e}")))?;
        self.saved.push((path.to_string(), old.trim().to_string()));
        std::fs::write(path, value).map_err(|e| TestErr::Fail(format!("{path} <- {value}: {e}")))
    }

    /// A fault attribute's settings (debugfs `dir`) for tasks that ask
    /// for failures (`task-filter`, their `make-it-fail`): `percent` of
    /// their calls fail, at most `times` (-1: no limit), and no report (a
    /// stack trace per failure in the kernel log, which the harness fails
    /// on).
    fn attr(&mut self, dir: &str, percent: u32, times: i64) -> TResult {
        for (name, value) in [
            ("task-filter", "Y".to_string()),
            ("interval", "1".into()),
            ("verbose", "0".into()),
            ("times", times.to_string()),
            ("probability", percent.to_string()),
        ] {
            self.set(&format!("{dir}/{name}"), &value)?;
        }
        Ok(())
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        for (path, old) in self.saved.iter().rev() {
            let _ = std::fs::write(path, old);
        }
    }
}

/// fail_page_alloc set up for tasks that ask for it.
struct PageAllocFailures;

impl PageAllocFailures {
    /// Every allocation of [`MIN_ORDER`] and more by a task with
    /// `make-it-fail` fails with probability `percent`, at most `times`
    /// times (-1: no limit), even those that may sleep and reclaim, of any
    /// zone.
    fn arm(percent: u32, times: i64) -> TResult<Armed> {
        Self::arm_at(percent, times, MIN_ORDER, 0)
    }

    /// As [`PageAllocFailures::arm`], for allocations of `min_order` and
    /// more, the first ones (`space` pages' worth, less one) let through.
    fn arm_at(percent: u32, times: i64, min_order: u32, space: u64) -> TResult<Armed> {
        if !std::path::Path::new(FAIL).exists() {
            skip!("no {FAIL}: this kernel has no CONFIG_FAIL_PAGE_ALLOC/CONFIG_FAULT_INJECTION_DEBUG_FS");
        }
        let mut armed = Armed::new();
        armed.attr(FAIL, percent, times)?;
        armed.set(&format!("{FAIL}/ignore-gfp-wait"), "N")?;
        armed.set(&format!("{FAIL}/ignore-gfp-highmem"), "N")?;
        armed.set(&format!("{FAIL}/min-order"), &min_order.to_string())?;
        armed.set(&format!("{FAIL}/space"), &space.to_string())?;
        Ok(armed)
    }
}

/// failslab set up for tasks that ask for it, on one slab cache alone
/// (`cache-filter` and the cache's `failslab` attribute).
fn slab_failures(cache: &str, percent: u32) -> TResult<Armed> {
    const FAILSLAB: &str = "/sys/kernel/debug/failslab";
    let attr = format!("/sys/kernel/slab/{cache}/failslab");
    if !std::path::Path::new(FAILSLAB).exists() || !std::path::Path::new(&attr).exists() {
        skip!("no {FAILSLAB} or {attr}: this kernel has no CONFIG_FAILSLAB/CONFIG_FAULT_INJECTION_DEBUG_FS");
    }
    let mut armed = Armed::new();
    armed.set(&attr, "1")?;
    armed.set(&format!("{FAILSLAB}/cache-filter"), "Y")?;
    armed.set(&format!("{FAILSLAB}/space"), "0")?;
    armed.attr(FAILSLAB, percent, -1)?;
    armed.set(&format!("{FAILSLAB}/ignore-gfp-wait"), "N")?;
    Ok(armed)
}

/// Runs `f` in a thread whose page allocations fail as armed. `f` must
/// not allocate or touch new memory of its own: a user page fault that
/// cannot allocate is retried until it can, so it works on buffers made and
/// touched before (its stack is touched here first). Nor does this code
/// between setting the flag and clearing it: the flag's file is opened
/// before and written through its descriptor.
fn failing_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> TResult<T> {
    spawn_failing(f).join().map_err(|_| TestErr::Fail("the writer thread panicked".into()))?.map_err(TestErr::Fail)
}

/// [`failing_thread`] without waiting for it.
fn spawn_failing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<Result<T, String>> {
    std::thread::spawn(move || {
        let mut stack = [0u8; 256 << 10];
        std::hint::black_box(&mut stack).fill(1);
        let flag = "/proc/thread-self/make-it-fail";
        let file = std::fs::OpenOptions::new().write(true).open(flag).map_err(|e| format!("{flag}: {e}"))?;
        let set = |v: &[u8; 1]| {
            // SAFETY: a write of our one-byte buffer to our own descriptor.
            unsafe { libc::pwrite(std::os::fd::AsRawFd::as_raw_fd(&file), v.as_ptr().cast(), 1, 0) == 1 }
        };
        if !set(b"1") {
            return Err(format!("{flag}: {}", ename(errno())));
        }
        let r = f();
        // Best effort: the flag ends with the thread anyway.
        set(b"0");
        Ok(r)
    })
}

/// A file of `LEN` bytes of `a` in large folios where the file system
/// uses them; skips where the copies of its breaks would be single pages,
/// which the injection cannot tell from the file system's own.
fn large_file(ctx: &Ctx, a: &[u8]) -> TResult<TestFile> {
    let f = tmpfile(&ctx.dir)?;
    pwrite_all(f.fd.raw(), a, 0)?;
    fsync(f.fd.raw())?;
    if !copies_at_splice(&ctx.dir) {
        match pages_in_large_folios(f.fd.raw(), LEN)? {
            Some((large, pages)) if large * 2 >= pages => ctx.note(format!("{large} of {pages} pages in large folios")),
            other => skip!("the file is not in large folios ({other:?}): a break's copy would be a single page"),
        }
    }
    Ok(f)
}

/// A held file and the pipe that holds it: `LEN` bytes of `a`.
fn held(ctx: &Ctx) -> TResult<(TestFile, Pipe, Vec<u8>)> {
    let a = pattern(0x3c, 0, LEN);
    let f = large_file(ctx, &a)?;
    settle_page_cache(f.fd.raw(), LEN)?;
    let p = pipe()?;
    // SAFETY: sizing our own pipe.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, stable())?;
    Ok((f, p, a))
}

/// Writes into held large folios while every allocation of their size by
/// the writer fails: no break can make its copy, so each takes the clean
/// held folio out of the page cache (the pipe keeps it) and the write goes
/// through, into a new folio that reads back the bytes around it from the
/// file: whole pages and half pages. The file then has the writes over
/// the old bytes, the pipe its snapshot. Before evictions, these writes
/// failed with ENOMEM after ~100 ms of retries.
pub fn holds_break_without_memory(ctx: &Ctx) -> TResult {
    let (f, p, a) = held(ctx)?;
    let zero_copy = !copies_at_splice(&ctx.dir);
    let (evicted0, retried0) = (counter("breaks_evicted").unwrap_or(0), counter("breaks_retried").unwrap_or(0));
    let b = pattern(0xc5, 0, LEN);
    // Odd pages get half a page in their middle: the rest comes from the file.
    let span = |k: usize| if k % 2 == 0 { (0, PAGE) } else { (PAGE / 4, PAGE / 2) };
    let fd = f.fd.raw();
    let results = {
        let _armed = PageAllocFailures::arm(100, -1)?;
        let b = b.clone();
        let mut out = vec![(Ok(0usize), Duration::ZERO); LEN / PAGE / STRIDE];
        failing_thread(move || {
            for (k, slot) in out.iter_mut().enumerate() {
                let (at, len) = span(k);
                let off = k * STRIDE * PAGE + at;
                let t = Instant::now();
                // SAFETY: our buffer and descriptor.
                let r = unsafe { libc::pwrite(fd, b[off..].as_ptr().cast(), len, off as i64) };
                *slot = (if r < 0 { Err(errno()) } else { Ok(r as usize) }, t.elapsed());
            }
            out
        })?
    };
    let evicted = counter("breaks_evicted").unwrap_or(0) - evicted0;
    let retried = counter("breaks_retried").unwrap_or(0) - retried0;
    let failed = results.iter().filter(|(r, _)| r.is_err()).count();
    let longest = results.iter().map(|(_, t)| *t).max().unwrap_or_default();
    ctx.note(format!(
        "{} page writes under page allocation failures: {failed} failed, {evicted} held folios left the page cache for lack of a copy, {retried} break retries, longest write {longest:?}",
        results.len()
    ));
    for (k, (r, _)) in results.iter().enumerate() {
        ensure!(
            *r == Ok(span(k).1),
            "page {}: the write returned {:?}, expected {} bytes (a break without memory evicts the clean held folio)",
            k * STRIDE,
            r.map_err(ename),
            span(k).1
        );
    }
    ensure!(longest < Duration::from_secs(5), "a write took {longest:?}");
    if zero_copy {
        ensure!(evicted > 0, "no break evicted a held folio ({evicted} evicted, {retried} retries): injection missed");
    }
    // The writes over the old bytes, read back around the half pages.
    let mut want = a.clone();
    for k in 0..results.len() {
        let (at, len) = span(k);
        let off = k * STRIDE * PAGE + at;
        want[off..off + len].copy_from_slice(&b[off..off + len]);
    }
    expect_bytes("file after the writes without memory", &pread_vec(fd, LEN, 0)?, &want, Some(("old content", &a)))?;
    // With memory again, the writes break the holds (those left) by copies.
    pwrite_all(fd, &b, 0)?;
    expect_bytes("pipe after writes without and with memory", &read_pipe(&p.r, LEN)?, &a, Some(("new content", &b)))?;
    expect_bytes("file after the writes with memory", &pread_vec(fd, LEN, 0)?, &b, None)?;
    Ok(())
}

/// Rounds of stable splice, then writes and mmap stores by a thread whose
/// large allocations fail half of the time (and for stores a bounded
/// number of times, as a fault is retried until it succeeds): every
/// snapshot drained afterwards is the content at its splice.
pub fn holds_break_under_allocation_failures(ctx: &Ctx) -> TResult {
    let mut cur = pattern(0, 0, LEN);
    let f = large_file(ctx, &cur)?;
    let fd = f.fd.raw();
    let (evicted0, retried0) = (counter("breaks_evicted").unwrap_or(0), counter("breaks_retried").unwrap_or(0));
    let map = Map::shared_file(fd, LEN)?;
    let base = map.ptr() as usize;
    let (mut enomem, mut ok, mut stores) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(3, 10));
    let mut round = 0u8;
    while round < 6 || (Instant::now() < deadline && round < 40) {
        round = round.wrapping_add(1);
        settle_page_cache(fd, LEN)?;
        let p = pipe()?;
        // SAFETY: sizing our own pipe.
        unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
        splice_exact(fd, 0, p.w.raw(), LEN, stable())?;
        let snap = cur.clone();
        let new = pattern(round.wrapping_mul(7).max(1), 0, LEN);
        let (results, stored) = {
            let _armed = PageAllocFailures::arm(50, if round % 2 == 0 { -1 } else { 10 })?;
            let new = new.clone();
            let store = round % 2 == 1;
            let mut res = vec![Ok(0usize); LEN / PAGE / STRIDE];
            failing_thread(move || {
                for (k, slot) in res.iter_mut().enumerate() {
                    let i = k * STRIDE;
                    if store && k % 4 == 0 {
                        // A store into a held page: its fault is retried
                        // until a copy can be made (10 failures at most).
                        // SAFETY: inside our shared mapping of LEN bytes.
                        unsafe { std::ptr::copy_nonoverlapping(new[i * PAGE..].as_ptr(), (base + i * PAGE) as *mut u8, PAGE) };
                        *slot = Ok(PAGE);
                        continue;
                    }
                    // SAFETY: our buffer and descriptor.
                    let r = unsafe { libc::pwrite(fd, new[i * PAGE..].as_ptr().cast(), PAGE, (i * PAGE) as i64) };
                    *slot = if r < 0 { Err(errno()) } else { Ok(r as usize) };
                }
                (res, store)
            })?
        };
        for (k, r) in results.iter().enumerate() {
            let i = k * STRIDE;
            match r {
                Ok(n) if *n == PAGE => {
                    cur[i * PAGE..(i + 1) * PAGE].copy_from_slice(&new[i * PAGE..(i + 1) * PAGE]);
                    ok += 1;
                }
                Err(e) if *e == libc::ENOMEM => enomem += 1,
                r => fail!("round {round}, page {i}: the write returned {:?}", r.map_err(ename)),
            }
        }
        if stored {
            stores += LEN / PAGE / STRIDE / 4;
        }
        expect_bytes(&format!("round {round}: the pipe"), &read_pipe(&p.r, LEN)?, &snap, Some(("later writes", &cur)))?;
        expect_bytes(&format!("round {round}: the file"), &pread_vec(fd, LEN, 0)?, &cur, None)?;
    }
    ctx.note(format!(
        "{round} rounds: {ok} page writes and stores went through, {enomem} failed with ENOMEM ({stores} stores), {} held folios left the page cache for lack of a copy, {} break retries",
        counter("breaks_evicted").unwrap_or(0) - evicted0,
        counter("breaks_retried").unwrap_or(0) - retried0
    ));
    ensure!(ok > 0, "no write went through in {round} rounds");
    Ok(())
}

/// A break of a held large folio whose split cannot allocate: splitting a
/// folio of 64 pages and more needs new XArray nodes (`xas_split_alloc`),
/// and here every one the writer asks for fails (failslab on the
/// `radix_tree_node` cache alone), so the copy stays whole
/// (`ss_folio_break_copy`'s fallback; on ext4 the dirty folio's one-step
/// split, `ss_folio_break_small`, asks for the nodes before anything
/// changes and falls back the same way). The write goes through, no split
/// is counted, the range stays in large folios, the pipe keeps the
/// snapshot, and the copy has the old folio's file-system state and
/// dirtiness: fsync writes it (O_DIRECT reads the write back). With memory
/// again the next break of the same range splits. Held folios clean and
/// dirty.
pub fn holds_split_without_memory(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    for dirty in [false, true] {
        // 64 pages: XA_CHUNK_SHIFT; a smaller folio's entry splits within its node.
        split_starved(ctx, dirty, 64, "without XArray nodes", |fd, at, page, _| {
            let _armed = slab_failures("radix_tree_node", 100)?;
            let page = page.to_vec();
            failing_thread(move || pwrite_at(fd, &page, at))
        })?;
    }
    Ok(())
}

/// The one-step split of a held dirty large folio with buffer heads (ext4,
/// `ss_folio_break_small`) charges its order-0 copies to the writer's
/// memory cgroup, as `filemap_add_folio()` charges a new page. A writer
/// whose cgroup is at its `memory.max` cannot pay for them: the charge
/// fails after one reclaim pass, without the cgroup's OOM killer (the
/// split is an optimisation; a write of one page must not kill its
/// writer for it), and the copy stays whole, force-charged to the file's
/// cgroup as `replace_page_cache_folio()` charges it. The write goes
/// through, the writer lives, no OOM is counted, the snapshot holds; with
/// the writer out of the cgroup the next break splits.
pub fn holds_split_over_memory_limit(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    if !dirty_large_splits_in_one_step(&ctx.dir) {
        skip!("only ext4's dirty large folios are split in one step into charged copies");
    }
    // The copies need twice the limit: 32 pages and more leave the
    // child's own charges (a few stack pages) far below it.
    split_starved(ctx, true, 32, "over its cgroup's memory.max", |fd, at, page, pages| {
        let cg = MemCgroup::new("stable-splice-split-limit", Some(pages * PAGE / 2))?;
        let procs = cg.procs()?;
        let page = page.to_vec();
        let pid = fork_child(move || {
            if !join_cgroup(&procs) {
                return 2;
            }
            match pwrite_at(fd, &page, at) {
                Ok(PAGE) => 0,
                Err(e) => 100 + e.min(100),
                Ok(_) => 3,
            }
        })?;
        let Some(st) = wait_child(pid, Duration::from_secs(120)) else {
            kill_child(pid);
            fail!("the writer in the limited cgroup did not finish in 120 s");
        };
        let oom = cg.event("oom")?;
        let killed = cg.event("oom_kill")?;
        let max = cg.event("max")?;
        ctx.note(format!("memory.events of the writer's cgroup: max {max}, oom {oom}, oom_kill {killed}; the writer: {}", describe_status(st)));
        ensure!(oom == 0 && killed == 0, "the charge of the split's copies went to the cgroup's OOM killer (oom {oom}, oom_kill {killed}; the writer: {})", describe_status(st));
        ensure!(max > 0, "the writer's cgroup never reached its memory.max: the test did not starve the split");
        ensure!(libc::WIFEXITED(st), "the writer: {}", describe_status(st));
        Ok(match libc::WEXITSTATUS(st) {
            0 => Ok(PAGE),
            c if c >= 100 => Err(c as i32 - 100),
            c => fail!("the writer in the limited cgroup: exit {c} (2: joining the cgroup failed, 3: a short write)"),
        })
    })
}

/// A held `dirty` (or clean) large folio of `min_pages` and more is broken
/// by a write of one page (`write(fd, at, page, pages)`, `pages` the
/// folio's) whose split cannot get memory (`how`): the write goes
/// through, the copy stays whole with the old folio's state, the snapshot
/// holds, and with memory again the next break splits.
fn split_starved(
    ctx: &Ctx,
    dirty: bool,
    min_pages: usize,
    how: &str,
    write: impl FnOnce(i32, usize, &[u8], usize) -> TResult<Result<usize, i32>>,
) -> TResult {
    let state = if dirty { "dirty" } else { "clean" };
    let a = pattern(if dirty { 0x4d } else { 0x4c }, 0, LEN);
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    pwrite_all(fd, &a, 0)?;
    if !dirty {
        fsync(fd)?;
    }
    settle_page_cache(fd, LEN)?;
    let folios = large_folios(fd, LEN)?.unwrap_or_default();
    let Some(&(first, pages)) = folios.iter().find(|(_, n)| *n >= min_pages) else {
        skip!("no folio of {min_pages} pages or more ({folios:?})");
    };
    let large = large_pages(fd, LEN)?;
    let p = pipe()?;
    // SAFETY: sizing our own pipe.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    splice_exact(fd, 0, p.w.raw(), LEN, stable())?;
    let k = |name| counter(name).unwrap_or(0);
    let (breaks0, splits0) = (k("breaks"), k("breaks_split"));
    let at = (first + pages / 2) * PAGE;
    let page = pattern(0x99, 0, PAGE);
    let r = write(fd, at, &page, pages)?;
    let (breaks, splits) = (k("breaks") - breaks0, k("breaks_split") - splits0);
    let left = large_pages(fd, LEN)?;
    ctx.note(format!(
        "{state}: a write into a held folio of {pages} pages {how}: {:?}, {breaks} breaks, {splits} splits, {large} -> {left} pages in large folios",
        r.map_err(ename)
    ));
    ensure!(r == Ok(PAGE), "{state}: the write returned {:?}, expected a page (the copy stays whole)", r.map_err(ename));
    ensure!(breaks >= 1 && splits == 0, "{state}: {breaks} breaks, {splits} splits: the split should have failed, the break not");
    ensure!(left == large, "{state}: {left} pages in large folios after the break, {large} before: the copy was not kept whole");
    let mut now = a.clone();
    now[at..at + PAGE].copy_from_slice(&page);
    expect_bytes(&format!("{state}: the pipe"), &read_pipe(&p.r, LEN)?, &a, Some(("write", &now)))?;
    expect_bytes(&format!("{state}: the page cache"), &pread_vec(fd, LEN, 0)?, &now, Some(("bytes before the write", &a)))?;
    expect_bytes(&format!("{state}: the disk after fsync (O_DIRECT)"), &fsync_and_read_disk(fd, LEN)?, &now, Some(("bytes before the write", &a)))?;
    // With memory: a new hold of the whole copy, whose break splits it.
    splice_exact(fd, 0, p.w.raw(), LEN, stable())?;
    let splits0 = k("breaks_split");
    let again = pattern(0x77, 0, PAGE);
    pwrite_all(fd, &again, at + PAGE)?;
    let splits = k("breaks_split") - splits0;
    ensure!(splits >= 1, "{state}: with memory again a write into the held copy split nothing");
    let held = now.clone();
    now[at + PAGE..at + 2 * PAGE].copy_from_slice(&again);
    expect_bytes(&format!("{state}: the second pipe"), &read_pipe(&p.r, LEN)?, &held, Some(("second write", &now)))?;
    expect_bytes(&format!("{state}: the disk after the split (O_DIRECT)"), &fsync_and_read_disk(fd, LEN)?, &now, Some(("bytes before the write", &held)))
}

/// The race windows of a split break (rust/race_window.c): fault
/// attributes that make the task they pick sleep there.
const WINDOWS: &str = "/sys/kernel/debug/stable_splice";
/// How long a window stays open: long enough for a store fault, a
/// truncation or a splice under TCG, which take milliseconds.
const WINDOW_MS: u32 = 1000;
/// The held file: one large folio of 16 pages; a truncation keeps 12.
const WINDOW_PAGES: usize = 16;
const WINDOW_CUT: usize = 12;
/// The page that a second store reaches inside the window.
const WINDOW_STORE: usize = 8;

/// How a held file sits in the page cache.
#[derive(Clone, Copy, PartialEq)]
enum Folios {
    /// One folio of [`WINDOW_PAGES`] pages (the test skips where the page
    /// cache does not make one).
    OneLarge,
    /// This many pages, each written on its own: small folios.
    Small(usize),
}

/// A held file of `folios` of `seed`'s pattern, clean or dirty, and the
/// pipe that holds it. Dirty over other bytes on disk (a lost dirtiness
/// shows) and at the size on disk: xfs writes back what lies between the
/// size on disk and a new, smaller one before it truncates, which would
/// wait for a break's locks.
fn held_folio(ctx: &Ctx, seed: u8, dirty: bool, folios: Folios) -> TResult<(TestFile, Pipe, Vec<u8>)> {
    let (len, chunk) = match folios {
        Folios::OneLarge => (WINDOW_PAGES * PAGE, WINDOW_PAGES * PAGE),
        Folios::Small(pages) => (pages * PAGE, PAGE),
    };
    let a = pattern(seed, 0, len);
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    // Each write `chunk` bytes: a write of several pages makes a large
    // folio, which later writes into it keep.
    let write = |content: &[u8]| -> TResult {
        for (i, c) in content.chunks(chunk).enumerate() {
            pwrite_all(fd, c, i * chunk)?;
        }
        Ok(())
    };
    write(&if dirty { pattern(!seed, 0, len) } else { a.clone() })?;
    fsync(fd)?;
    if dirty {
        write(&a)?;
    }
    settle_page_cache(fd, len)?;
    let found = large_folios(fd, len)?.unwrap_or_default();
    match folios {
        Folios::OneLarge if found != [(0, WINDOW_PAGES)] => {
            skip!("the file is not in one folio of {WINDOW_PAGES} pages ({found:?}): no split");
        }
        Folios::Small(_) => ensure!(found.is_empty(), "a file written a page at a time is in large folios ({found:?})"),
        _ => {}
    }
    let p = pipe()?;
    splice_exact(fd, 0, p.w.raw(), len, stable())?;
    Ok((f, p, a))
}

/// How the write that breaks the held folio is made.
#[derive(Clone, Copy)]
enum BreakBy {
    /// A store through the shared mapping: no inode lock, so a truncation
    /// or a splice that takes xfs's `IOLOCK` can come in meanwhile; the
    /// file system's `page_mkwrite` then maps every block of the folio.
    Store,
    /// `pwrite()`: maps and dirties only the blocks it writes, so a share
    /// of the old folio's state that the break lost shows.
    Pwrite,
}

/// Writes a page of 0xa1 at page `at` of `map`'s file (a held folio), `by`
/// a store or a `pwrite()`, from a thread whose split break stops in
/// `window` for [`WINDOW_MS`], and runs `during` while it is there.
/// Returns what `during` returned, and a description of its time if it
/// did not end inside the window.
fn write_through_window<T>(
    (map, fd): (&Map, i32),
    (by, at): (BreakBy, usize),
    window: &str,
    during: impl FnOnce() -> T,
) -> TResult<(T, Option<String>)> {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let dir = format!("{WINDOWS}/{window}");
    let mut armed = inject(window, 1)?;
    armed.set(&format!("{dir}/delay_ms"), &WINDOW_MS.to_string())?;
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let page = [0xa1u8; PAGE];
    let writer = {
        let (addr, done) = (map.ptr() as usize + at * PAGE, done.clone());
        spawn_failing(move || {
            let r = match by {
                BreakBy::Store => {
                    // SAFETY: a page of the caller's live, writable shared
                    // mapping, which outlives this thread (joined below).
                    unsafe { std::ptr::write_bytes(addr as *mut u8, 0xa1, PAGE) };
                    Ok(PAGE)
                }
                BreakBy::Pwrite => pwrite_page(fd, &page, at),
            };
            done.store(true, SeqCst);
            r
        })
    };
    // `times` goes from 1 to 0 as the break enters the window.
    let times = format!("{dir}/times");
    let entered =
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&times).is_ok_and(|t| t.trim() == "0"));
    let ran = entered.then(|| {
        let t0 = Instant::now();
        let r = during();
        let late = done.load(SeqCst).then(|| format!("it took {} ms", t0.elapsed().as_millis()));
        (r, late)
    });
    let joined = writer.join();
    drop(armed);
    match joined {
        Ok(Ok(Ok(n))) if n == PAGE => {}
        Ok(Ok(r)) => fail!("the write into the held folio returned {:?}", r.map_err(ename)),
        _ => fail!("the writing thread failed"),
    }
    match ran {
        Some(r) => Ok(r),
        None => fail!("the write into the held folio never entered {window} (no split break?)"),
    }
}

/// A split break's window after the split, before the locks of the pages,
/// held open (debugfs `split_window_after`): a store through a shared
/// mapping breaks a held large folio of 16 pages and sleeps there, holding
/// the locks of the old folio and of the copy's first page; meanwhile a
/// second store reaches page 8 and a truncation takes pages 12-15 out of
/// the page cache, neither waiting for the break. The break then leaves
/// page 8 the state its store fault gave it (ext4's buffer heads; xfs gives
/// a page of one block none, and the page counts as the break's) and frees
/// the cut pages' share of the old folio's: both counted exactly. The pipe
/// keeps the snapshot, the file has both stores at its new size, and fsync
/// writes what the page cache has (O_DIRECT). Held folios clean and dirty.
/// Writer races reach these branches rarely (`holds_large_truncate_race`).
pub fn holds_split_window_races(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    split_window_races(ctx, false)?;
    split_window_races(ctx, true)
}


fn split_window_races(ctx: &Ctx, dirty: bool) -> TResult {
    let state = if dirty { "dirty" } else { "clean" };
    let (f, p, a) = held_folio(ctx, if dirty { 0x5d } else { 0x5c }, dirty, Folios::OneLarge)?;
    let (fd, len) = (f.fd.raw(), WINDOW_PAGES * PAGE);
    let map = Map::shared_file(fd, len)?;
    let k = |name| counter(name).unwrap_or(0);
    let (splits0, faulted0, truncated0) = (k("breaks_split"), k("split_pages_faulted"), k("split_pages_truncated"));
    let (cut, late) = write_through_window((&map, fd), (BreakBy::Store, 0), "split_window_after", || {
        map.store(WINDOW_STORE * PAGE, &[0xb2; PAGE]);
        ftruncate(fd, WINDOW_CUT * PAGE)
    })?;
    cut?;
    // A one-step split (ext4, dirty) keeps every page locked through the
    // window: the store and the truncation wait for it, and no page is
    // reached before it has its state.
    let one_step = dirty && dirty_large_splits_in_one_step(&ctx.dir);
    if let (Some(took), false) = (&late, one_step) {
        fail!("{state}: the second store and the truncation ended after the window ({WINDOW_MS} ms; {took}): one waited for the break");
    }
    drop(map);
    let (splits, faulted, truncated) =
        (k("breaks_split") - splits0, k("split_pages_faulted") - faulted0, k("split_pages_truncated") - truncated0);
    // A store fault gives a page state of its own where the file system
    // keeps any for a page: buffer heads always, iomap for several blocks.
    let fs = crate::detect_fs(&ctx.dir);
    // SAFETY: a zeroed statfs is a valid out-parameter for our descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    ensure!(unsafe { libc::fstatfs(fd, &mut st) } == 0, "fstatfs: {}", ename(errno()));
    let want_faulted = u64::from(!one_step && (fs == "ext4" || (st.f_bsize as usize) < PAGE));
    let want_truncated = if one_step { 0 } else { (WINDOW_PAGES - WINDOW_CUT) as u64 };
    ctx.note(format!(
        "{state} ({fs}, {}-byte blocks): {splits} split breaks, pages reached in the window: {faulted} by a store fault, {truncated} by the truncation",
        st.f_bsize
    ));
    let mut now = a[..WINDOW_CUT * PAGE].to_vec();
    now[..PAGE].fill(0xa1);
    now[WINDOW_STORE * PAGE..(WINDOW_STORE + 1) * PAGE].fill(0xb2);
    expect_bytes(&format!("{state}: the pipe"), &read_pipe(&p.r, len)?, &a, None)?;
    ensure!(file_size(fd)? == (WINDOW_CUT * PAGE) as u64, "{state}: the file is {} bytes after the truncation", file_size(fd)?);
    expect_bytes(&format!("{state}: the page cache"), &pread_vec(fd, WINDOW_CUT * PAGE, 0)?, &now, Some(("old bytes", &a[..WINDOW_CUT * PAGE])))?;
    expect_bytes(
        &format!("{state}: the disk after fsync (O_DIRECT)"),
        &fsync_and_read_disk(fd, WINDOW_CUT * PAGE)?,
        &now,
        Some(("old bytes", &a[..WINDOW_CUT * PAGE])),
    )?;
    ensure!(splits == 1, "{state}: {splits} split breaks, expected the store's one");
    ensure!(truncated == want_truncated, "{state}: {truncated} pages counted truncated in the window, expected {want_truncated}");
    ensure!(faulted == want_faulted, "{state}: {faulted} pages counted reached by a store fault, expected {want_faulted} on {fs}");
    Ok(())
}

/// The page a writer broke a held large folio for, held again before the
/// write: with `split_window_after` held open, the writer's page (page 5,
/// not the copy's first) is unlocked between the split and its lock, and a
/// stable splice of pages 1-15 into a second pipe takes place meanwhile
/// without waiting for the break (only page 0 and the old folio are
/// locked). The writer must look at its page again and break that hold
/// too before it writes (`Break::Split`: the write's lookup loops, a store
/// fault is retried): two breaks, one split, and neither pipe shows the
/// write. By a store and, where the splice takes no lock that `pwrite()`
/// holds (not xfs's `IOLOCK`), by `pwrite()`; clean and dirty.
pub fn holds_split_window_reheld(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    let xfs = crate::detect_fs(&ctx.dir) == "xfs";
    for by in [BreakBy::Store, BreakBy::Pwrite] {
        if xfs && matches!(by, BreakBy::Pwrite) {
            continue;
        }
        split_window_reheld(ctx, by, false)?;
        split_window_reheld(ctx, by, true)?;
    }
    Ok(())
}

fn split_window_reheld(ctx: &Ctx, by: BreakBy, dirty: bool) -> TResult {
    const AT: usize = 5;
    let state = format!("{} by {}", if dirty { "dirty" } else { "clean" }, if matches!(by, BreakBy::Store) { "a store" } else { "pwrite()" });
    let (f, p, a) = held_folio(ctx, if dirty { 0x7d } else { 0x7c }, dirty, Folios::OneLarge)?;
    let (fd, len) = (f.fd.raw(), WINDOW_PAGES * PAGE);
    let map = Map::shared_file(fd, len)?;
    let k = |name| counter(name).unwrap_or(0);
    let (breaks0, splits0) = (k("breaks"), k("breaks_split"));
    let second = pipe()?;
    let (spliced, late) = write_through_window((&map, fd), (by, AT), "split_window_after", || {
        let mut off = PAGE as i64;
        splice_raw(fd, Some(&mut off), second.w.raw(), None, len - PAGE, stable())
    })?;
    // A one-step split (ext4, dirty) keeps the copies locked through the
    // window: the splice waits, and meets the writer on page AT: it takes
    // that page after the write (its pipe has the write, made before the
    // splice returned; one break), or before it (the write breaks the new
    // hold, the pipe keeps the old bytes; or the splice copied the page,
    // refused for the writer's reference), or, for a store, which is no
    // atomic write, while the writer's memcpy runs through the mapping:
    // the splice write-protects the page, and the pipe has what the page
    // had at that moment, the rest of the store breaking the hold. Every
    // byte the old one or the written one, a pwrite() whole or not at all.
    let one_step = dirty && dirty_large_splits_in_one_step(&ctx.dir);
    if let (Some(took), false) = (&late, one_step) {
        fail!("{state}: the stable splice ended after the window ({WINDOW_MS} ms; {took}): it waited for the break");
    }
    ensure!(spliced == Ok(len - PAGE), "{state}: the stable splice in the window returned {:?}", spliced.map_err(ename));
    drop(map);
    let (breaks, splits) = (k("breaks") - breaks0, k("breaks_split") - splits0);
    ctx.note(format!("{state}: {breaks} breaks, {splits} split"));
    let mut now = a.clone();
    now[AT * PAGE..(AT + 1) * PAGE].fill(0xa1);
    expect_bytes(&format!("{state}: the first pipe"), &read_pipe(&p.r, len)?, &a, Some(("write", &now)))?;
    let filled = read_pipe(&second.r, len - PAGE)?;
    if one_step {
        let each_byte = filled.iter().zip(&a[PAGE..]).zip(&now[PAGE..]).all(|((g, old), new)| g == old || g == new);
        let whole = filled == a[PAGE..] || filled == now[PAGE..];
        let when = if filled == a[PAGE..] { "before the write" } else if filled == now[PAGE..] { "after the write" } else { "during the store" };
        ctx.note(format!("{state}: one step; the pipe filled in the window took page {AT} {when}"));
        ensure!(
            each_byte && (whole || matches!(by, BreakBy::Store)),
            "{state}: the pipe filled in the window has {}",
            if each_byte { "part of the pwrite()" } else { "bytes that are neither the old ones nor the written ones" }
        );
    } else {
        expect_bytes(&format!("{state}: the pipe filled in the window"), &filled, &a[PAGE..], Some(("write", &now[PAGE..])))?;
    }
    expect_bytes(&format!("{state}: the page cache"), &pread_vec(fd, len, 0)?, &now, Some(("old bytes", &a)))?;
    expect_bytes(&format!("{state}: the disk after fsync (O_DIRECT)"), &fsync_and_read_disk(fd, len)?, &now, Some(("old bytes", &a)))?;
    let breaks_ok = if one_step { (1..=2).contains(&breaks) } else { breaks == 2 };
    ensure!(breaks_ok && splits == 1, "{state}: {breaks} breaks, {splits} split: expected the split{}", if one_step { " and at most one more break" } else { " and a second break of the page held in the window" });
    Ok(())
}

/// A data-integrity sync that comes in while a split break gives a dirty
/// held folio's pages their state (`split_window_after` held open): the
/// pages of the copy are reachable from the split on, and
/// `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` of pages 1-15 (the
/// copy's first page stays locked to the break, and is left out) must
/// find their dirty bytes, which a write put there before the sync began,
/// and write them: once it returned, no page of the range may be dirty
/// (nobody writes there after it) and the disk must have them. A split
/// that took the dirtiness off the copy until each page had its state let
/// the sync skip the pages as clean (and left them dirty after it). Where
/// pages carry buffer heads (ext4) they cannot be dirty before they have
/// them: there the split puts them in with their buffers, locked, at once
/// (`ss_folio_break_small`), and the sync waits for their locks; before
/// that break, the dirty copy stayed whole.
pub fn holds_split_window_sync(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    let (f, p, a) = held_folio(ctx, 0x8d, true, Folios::OneLarge)?;
    let (fd, len) = (f.fd.raw(), WINDOW_PAGES * PAGE);
    let k = |name| counter(name).unwrap_or(0);
    let splits0 = k("breaks_split");
    let sync = || {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: our descriptor.
        let r = unsafe { libc::sync_file_range(fd, PAGE as i64, (len - PAGE) as i64, flags) };
        if r == 0 { Ok(()) } else { Err(errno()) }
    };
    let map = Map::shared_file(fd, len)?;
    let (synced, late) = write_through_window((&map, fd), (BreakBy::Store, 0), "split_window_after", sync)?;
    ck(synced, "sync_file_range in the window")?;
    // A one-step split keeps its pages locked through the window: the
    // sync waits for them and finds them dirty with their buffers.
    if let (Some(took), false) = (&late, dirty_large_splits_in_one_step(&ctx.dir)) {
        fail!("the sync ended after the window ({WINDOW_MS} ms; {took}): it waited for the break");
    }
    drop(map);
    let Some(dirty) = dirty_pages(fd, len)? else {
        skip!("no /proc/kpageflags: the pages' dirtiness cannot be read");
    };
    let splits = k("breaks_split") - splits0;
    let folios = large_folios(fd, len)?.unwrap_or_default();
    ctx.note(format!("{splits} split; dirty pages after the sync and the break: {dirty:?}; folios {folios:?}"));
    ensure!(splits == 1, "{splits} split breaks, expected the store's one");
    let left: Vec<usize> = dirty.iter().copied().filter(|&i| i >= 1).collect();
    ensure!(
        left.is_empty(),
        "pages {left:?} of the range the sync wrote were still dirty after it returned: it skipped bytes written before it began"
    );
    let mut now = a.clone();
    now[..PAGE].fill(0xa1);
    expect_bytes("the pipe", &read_pipe(&p.r, len)?, &a, Some(("write", &now)))?;
    expect_bytes("the disk after fsync (O_DIRECT)", &fsync_and_read_disk(fd, len)?, &now, Some(("old bytes", &a)))
}

/// An fsync that waits for a held dirty folio's lock while a writer breaks
/// it (`break_window` held open: the break holds the folio's lock, the
/// folio still in the page cache): fsync took the folio into its batch
/// and waits. Had the break put its copy in and let the folio go, fsync
/// would have skipped it (it left the page cache) without looking at the
/// copy, and returned before the bytes written before it began were on
/// the device. The break sees the sync's tag (`PAGECACHE_TAG_TOWRITE`),
/// puts the folio back and has the writer write it back first. Once
/// fsync returned, the device has the page as it was when fsync began,
/// read past the page cache (`FS_IOC_FIEMAP`, then `O_DIRECT` on the block
/// device); the pipe keeps the snapshot and the file gets the write. A
/// page of small folios and of one large folio (written back first, then
/// broken clean: split on both file systems).
pub fn holds_break_window_fsync(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    break_window_fsync(ctx, false)?;
    break_window_fsync(ctx, true)
}

fn break_window_fsync(ctx: &Ctx, large: bool) -> TResult {
    const AT: usize = 1;
    let what = if large { "one large folio" } else { "small folios" };
    let folios = if large { Folios::OneLarge } else { Folios::Small(4) };
    let (f, p, a) = held_folio(ctx, if large { 0x9d } else { 0x9c }, true, folios)?;
    let (fd, len) = (f.fd.raw(), a.len());
    let before = match page_on_device(fd, AT * PAGE)? {
        Ok(page) => page,
        Err(why) => skip!("{what}: page {AT} has no block of its own on a block device ({why})"),
    };
    let map = Map::shared_file(fd, len)?;
    let k = |name| counter(name).unwrap_or(0);
    let written0 = k("breaks_written_back");
    let (synced, _) = write_through_window((&map, fd), (BreakBy::Pwrite, AT), "break_window", || {
        // SAFETY: our descriptor.
        let r = unsafe { libc::fsync(fd) };
        let on_device = page_on_device(fd, AT * PAGE);
        (r, errno(), on_device)
    })?;
    drop(map);
    let (r, e, on_device) = synced;
    ensure!(r == 0, "{what}: fsync: {}", ename(e));
    let page = &a[AT * PAGE..(AT + 1) * PAGE];
    let on_device = on_device?.map_err(|why| TestErr::Fail(format!("{what}: page {AT} lost its block ({why})")))?;
    ctx.note(format!(
        "{what}: {} writebacks before the break; the device after fsync has page {AT} {}",
        k("breaks_written_back") - written0,
        if on_device == page { "as it was when fsync began" } else if on_device == before { "as before the dirty write (fsync skipped it)" } else { "in neither state" }
    ));
    expect_bytes(&format!("{what}: page {AT} on the device once fsync returned"), &on_device, page, Some(("bytes before the dirty write", &before)))?;
    let mut now = a.clone();
    now[AT * PAGE..(AT + 1) * PAGE].fill(0xa1);
    expect_bytes(&format!("{what}: the pipe"), &read_pipe(&p.r, len)?, &a, Some(("write", &now)))?;
    expect_bytes(&format!("{what}: the disk after the write and fsync (O_DIRECT)"), &fsync_and_read_disk(fd, len)?, &now, Some(("old bytes", &a)))
}

/// A split break's window before the split, held open (debugfs
/// `split_window_before`): the copy of a held 16-page folio is in the page
/// cache, whole and locked, when a plain splice of the range takes it into
/// a second pipe without its lock (it is uptodate). The pipe's reference
/// makes every try of the split fail (`-EAGAIN`), so the copy stays whole
/// with the old folio's state and dirtiness (the fallback): no split is
/// counted, the range stays one large folio, the stable pipe keeps the
/// snapshot, and fsync writes the write and every dirty byte around it
/// (O_DIRECT; the writer is a `pwrite()` where it can be, which maps only
/// the blocks it writes). The plain pipe is the control: it took the
/// copy, and shows the write made into it after. Once that pipe is
/// drained, the next break of the range splits. Held folios clean and
/// dirty.
pub fn holds_split_refused_by_reader(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    split_refused_by_reader(ctx, false)?;
    if dirty_large_splits_in_one_step(&ctx.dir) {
        // Its copies are not in the page cache until they all go in at
        // once: a reader in the window references the old folio, which
        // refuses nothing.
        ctx.note("dirty: not here, where a dirty held large folio splits in one step");
        return Ok(());
    }
    split_refused_by_reader(ctx, true)
}

fn split_refused_by_reader(ctx: &Ctx, dirty: bool) -> TResult {
    let state = if dirty { "dirty" } else { "clean" };
    let (f, p, a) = held_folio(ctx, if dirty { 0x6d } else { 0x6c }, dirty, Folios::OneLarge)?;
    let (fd, len) = (f.fd.raw(), WINDOW_PAGES * PAGE);
    let map = Map::shared_file(fd, len)?;
    let k = |name| counter(name).unwrap_or(0);
    let (breaks0, splits0) = (k("breaks"), k("breaks_split"));
    // xfs's splice takes the IOLOCK that its pwrite() holds.
    let by = if crate::detect_fs(&ctx.dir) == "xfs" { BreakBy::Store } else { BreakBy::Pwrite };
    let plain = pipe()?;
    let (spliced, late) = write_through_window((&map, fd), (by, 0), "split_window_before", || {
        let mut off = 0i64;
        splice_raw(fd, Some(&mut off), plain.w.raw(), None, len, 0)
    })?;
    if let Some(took) = late {
        fail!("{state}: the plain splice ended after the window ({WINDOW_MS} ms; {took}): it waited for the break");
    }
    ensure!(spliced == Ok(len), "{state}: the plain splice in the window returned {:?}", spliced.map_err(ename));
    let (breaks, splits) = (k("breaks") - breaks0, k("breaks_split") - splits0);
    let folios = large_folios(fd, len)?.unwrap_or_default();
    ctx.note(format!("{state}: {breaks} breaks, {splits} split, folios after: {folios:?}"));
    let mut now = a.clone();
    now[..PAGE].fill(0xa1);
    expect_bytes(&format!("{state}: the stable pipe"), &read_pipe(&p.r, len)?, &a, Some(("store", &now)))?;
    expect_bytes(&format!("{state}: the plain pipe (control)"), &read_pipe(&plain.r, len)?, &now, Some(("old bytes", &a)))?;
    expect_bytes(&format!("{state}: the page cache"), &pread_vec(fd, len, 0)?, &now, Some(("old bytes", &a)))?;
    expect_bytes(&format!("{state}: the disk after fsync (O_DIRECT)"), &fsync_and_read_disk(fd, len)?, &now, Some(("old bytes", &a)))?;
    ensure!(breaks == 1 && splits == 0, "{state}: {breaks} breaks, {splits} split: the reader's reference should have kept the copy whole");
    ensure!(folios == [(0, WINDOW_PAGES)], "{state}: the range is in folios {folios:?} after the break, expected the whole copy");
    // Nobody else references the copy now: its next break splits.
    splice_exact(fd, 0, p.w.raw(), len, stable())?;
    map.store(4 * PAGE, &[0xc3; PAGE]);
    ensure!(k("breaks_split") - splits0 == 1, "{state}: the second break, without a reader, did not split");
    let held = now.clone();
    now[4 * PAGE..5 * PAGE].fill(0xc3);
    expect_bytes(&format!("{state}: the second pipe"), &read_pipe(&p.r, len)?, &held, Some(("second store", &now)))?;
    expect_bytes(&format!("{state}: the disk after the split (O_DIRECT)"), &fsync_and_read_disk(fd, len)?, &now, Some(("bytes before it", &held)))
}

/// A race window or an injected failure of the module's
/// (rust/race_window.c: `break_window`, `split_window_*`, `buffers_busy`,
/// `writeback_skipped`) armed for tasks that ask for failures, at most
/// `times` times (-1: every time).
fn inject(name: &str, times: i64) -> TResult<Armed> {
    let dir = format!("{WINDOWS}/{name}");
    if !std::path::Path::new(&dir).exists() {
        skip!("no {dir}: the module was built for a kernel without CONFIG_FAULT_INJECTION_DEBUG_FS");
    }
    let mut armed = Armed::new();
    armed.attr(&dir, 100, times)?;
    Ok(armed)
}

/// Skips where held folios have no buffer heads that could be busy.
fn needs_buffer_heads(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    if crate::detect_fs(&ctx.dir) != "ext4" {
        skip!("no buffer heads here: iomap's per-folio state always moves to a break's copy");
    }
    Ok(())
}

/// The module's counters that say how a break went, as differences from
/// when it was made.
struct BreakCounts([(&'static str, u64); 6]);

impl BreakCounts {
    const NAMES: [&'static str; 6] =
        ["breaks", "breaks_dirty", "breaks_split", "breaks_written_back", "breaks_retried", "break_failures"];

    fn now() -> Self {
        Self(Self::NAMES.map(|n| (n, counter(n).unwrap_or(0))))
    }

    /// What each counter went up by since `self`, by name.
    fn since(&self) -> impl Fn(&str) -> u64 + '_ {
        |name| {
            let (_, was) = self.0.iter().find(|(n, _)| *n == name).expect("a counter BreakCounts reads");
            counter(name).unwrap_or(0) - was
        }
    }

    fn describe(&self) -> String {
        let d = self.since();
        Self::NAMES.iter().map(|n| format!("{n} +{}", d(n))).collect::<Vec<_>>().join(", ")
    }
}

/// `pwrite()` of `page` at page `at`, from the calling (failing) thread.
fn pwrite_page(fd: i32, page: &[u8; PAGE], at: usize) -> Result<usize, i32> {
    pwrite_at(fd, page, at * PAGE)
}

/// `pwrite()` of `buf` at byte `offset`.
fn pwrite_at(fd: i32, buf: &[u8], offset: usize) -> Result<usize, i32> {
    // SAFETY: the caller's buffer and descriptor.
    cvt(unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as i64) })
}

/// A break that finds the held folio's buffer heads busy (injected
/// `buffers_busy`: somebody has one locked or referenced) can neither move
/// them to its copy nor release them. Busy once: a dirty folio is written
/// back and broken clean (ext4's one-step split of a dirty large folio is
/// refused, and the clean folio splits), a clean one is retried after a
/// sleep, and a clean large folio whose split cannot share out its busy
/// buffers keeps its copy whole; the write goes through. Busy every time: a `pwrite()` into the
/// held page, a truncation into it and a hole punched in the next fail
/// with `ENOMEM` after their retries (about 80 ms of sleeps each) and
/// leave the file as it was: its size and its bytes in the page cache; on
/// disk the two dirty pages they met are written back, no other. The pipe keeps its
/// snapshot throughout, the held folio is never written
/// (`break_failures` stays 0), and with the buffers free again the same
/// calls go through.
pub fn holds_break_buffers_busy(ctx: &Ctx) -> TResult {
    needs_buffer_heads(ctx)?;
    busy_once(ctx, false, Folios::Small(4))?;
    busy_once(ctx, true, Folios::Small(4))?;
    busy_always(ctx)?;
    busy_once(ctx, true, Folios::OneLarge)?;
    busy_once(ctx, false, Folios::OneLarge)
}

fn busy_once(ctx: &Ctx, dirty: bool, folios: Folios) -> TResult {
    let large = folios == Folios::OneLarge;
    let what = format!("{}{}", if dirty { "dirty" } else { "clean" }, if large { ", one large folio" } else { "" });
    let (f, p, a) = held_folio(ctx, if dirty { 0x7d } else { 0x7c }, dirty, folios)?;
    let (fd, len, at) = (f.fd.raw(), a.len(), if large { 5 } else { 1 });
    let page = [0xb7u8; PAGE];
    let counts = BreakCounts::now();
    // Asked once by a dirty folio's break (its state must move), twice by
    // a clean one's (moved, or else released); a clean large folio's split
    // asks first (its buffers are shared out among the pages), and once
    // refused the break keeps its copy whole, with the state moved.
    let busy = if dirty || large { 1 } else { 2 };
    let armed = inject("buffers_busy", busy)?;
    let r = failing_thread(move || pwrite_page(fd, &page, at))?;
    let left = std::fs::read_to_string(format!("{WINDOWS}/buffers_busy/times")).unwrap_or_default();
    drop(armed);
    let d = counts.since();
    ctx.note(format!("{what}: the write {:?}; {}", r.map_err(ename), counts.describe()));
    ensure!(r == Ok(PAGE), "{what}: the write returned {:?}", r.map_err(ename));
    ensure!(left.trim() == "0", "{what}: the break never found the buffers busy (times left: {})", left.trim());
    ensure!(d("break_failures") == 0, "{what}: a break failed: the held folio was written in place");
    if dirty {
        ensure!(
            d("breaks_written_back") == 1 && d("breaks_retried") == 0 && d("breaks_dirty") == 0,
            "{what}: expected one writeback and a clean break, not a retry or a dirty break: {}",
            counts.describe()
        );
    } else if !large {
        ensure!(
            d("breaks_retried") == 1 && d("breaks_written_back") == 0,
            "{what}: expected one retry and no writeback: {}",
            counts.describe()
        );
    } else {
        let folios = large_folios(fd, len)?.unwrap_or_default();
        ensure!(
            d("breaks_retried") == 0 && d("breaks_written_back") == 0 && d("breaks_split") == 0,
            "{what}: expected a whole copy, no retry, writeback or split: {}",
            counts.describe()
        );
        ensure!(folios == [(0, WINDOW_PAGES)], "{what}: the range is in folios {folios:?} after the break, expected the whole copy");
    }
    ensure!(d("breaks") >= 1, "{what}: nothing was broken");
    if large && dirty {
        ensure!(d("breaks_split") == 1, "{what}: the clean folio after its writeback did not split: {}", counts.describe());
    }
    let mut now = a.clone();
    now[at * PAGE..(at + 1) * PAGE].copy_from_slice(&page);
    expect_bytes(&format!("{what}: the pipe"), &read_pipe(&p.r, len)?, &a, Some(("write", &now)))?;
    expect_bytes(&format!("{what}: the page cache"), &pread_vec(fd, len, 0)?, &now, Some(("bytes before the write", &a)))?;
    expect_bytes(&format!("{what}: the disk after fsync (O_DIRECT)"), &fsync_and_read_disk(fd, len)?, &now, Some(("bytes before the write", &a)))
}

/// The calls that fail when a held folio cannot be broken, from a failing
/// thread: a `pwrite()` into page 1, a truncation to the middle of page 1
/// and a hole punched in page 2, of a file of 4 pages.
fn write_truncate_punch(fd: i32, page: [u8; PAGE]) -> TResult<[Result<usize, i32>; 3]> {
    failing_thread(move || {
        let w = pwrite_page(fd, &page, 1);
        // SAFETY: our descriptor.
        let t = cvt(unsafe { libc::ftruncate(fd, (PAGE + PAGE / 2) as i64) } as isize);
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: our descriptor.
        let h = cvt(unsafe { libc::fallocate(fd, mode, (2 * PAGE) as i64, PAGE as i64) } as isize);
        [w, t, h]
    })
}

/// The held dirty file of 4 small folios after the three calls of
/// [`write_truncate_punch`] failed: as it was, and the pipe's snapshot.
fn expect_untouched(what: &str, r: &[Result<usize, i32>; 3], fd: i32, a: &[u8]) -> TResult {
    for (call, r) in ["the write", "the truncation", "the hole punch"].iter().zip(r) {
        ensure!(r.is_err_and(|e| e == libc::ENOMEM), "{what}: {call} returned {:?}, expected ENOMEM", r.map_err(ename));
    }
    let size = file_size(fd)?;
    ensure!(size == a.len() as u64, "{what}: the file is {size} bytes after the failed calls, was {}", a.len());
    expect_bytes(&format!("{what}: the page cache after the failed calls"), &pread_vec(fd, a.len(), 0)?, a, None)
}

/// Page `at` of `fd`'s file on its block device is `want`'s (`other`: what
/// it would be otherwise).
fn on_device(what: &str, fd: i32, at: usize, want: &[u8], other: &[u8]) -> TResult {
    let got = page_on_device(fd, at * PAGE)?.map_err(|why| TestErr::Fail(format!("{what}: page {at} is not on the device ({why})")))?;
    let span = at * PAGE..(at + 1) * PAGE;
    expect_bytes(&format!("{what}: page {at} on the device"), &got, &want[span.clone()], Some(("other bytes", &other[span])))
}

fn busy_always(ctx: &Ctx) -> TResult {
    let what = "busy every time";
    let (f, p, a) = held_folio(ctx, 0x7e, true, Folios::Small(4))?;
    let fd = f.fd.raw();
    let counts = BreakCounts::now();
    let r = {
        let _armed = inject("buffers_busy", -1)?;
        write_truncate_punch(fd, [0xb8; PAGE])?
    };
    let d = counts.since();
    ctx.note(format!("{what}: {:?}; {}", r.map(|r| r.map_err(ename)), counts.describe()));
    expect_untouched(what, &r, fd, &a)?;
    // A writeback of each dirty page (the write's, the punch's), then
    // NOCOPY_ROUNDS + 1 retries per call.
    ensure!(
        d("breaks_written_back") == 2 && d("breaks_retried") == 27 && d("breaks") == 0 && d("break_failures") == 0,
        "{what}: expected 2 writebacks, 9 retries per call and no break: {}",
        counts.describe()
    );
    // Those two pages were written back, and nothing else.
    let before = pattern(!0x7e, 0, a.len());
    for at in 0..4 {
        let (want, other) = if at == 1 || at == 2 { (&a, &before) } else { (&before, &a) };
        on_device(what, fd, at, want, other)?;
    }
    let r = write_truncate_punch(fd, [0xb8; PAGE])?;
    ensure!(r.iter().all(|r| r.is_ok()), "{what}: with the buffers free: {:?}", r.map(|r| r.map_err(ename)));
    let mut now = a[..PAGE + PAGE / 2].to_vec();
    now[PAGE..].fill(0xb8);
    expect_bytes(&format!("{what}: the pipe"), &read_pipe(&p.r, a.len())?, &a, None)?;
    expect_bytes(&format!("{what}: the file with the buffers free"), &pread_vec(fd, now.len(), 0)?, &now, Some(("old bytes", &a)))
}

/// A held dirty folio whose buffer heads stay busy and which is dirty
/// again after every writeback (injected: `buffers_busy`,
/// `writeback_skipped`) cannot be broken, and writeback does not help: a
/// `pwrite()` into it fails with `ENOMEM` after 8 writebacks, a
/// truncation into it and a hole punched in the next after 4 each, with
/// no sleep, and the file is as it was (its dirty bytes still in the page
/// cache). A store through a shared mapping cannot fail for it: its fault
/// is retried, each time with a writeback, until the buffers are free
/// (after 6 busy breaks here), and its break then moves the dirty state.
/// The pipe keeps its snapshot, the held folio is never written in place
/// (`break_failures` 0), and with both failures gone fsync writes what the
/// page cache has.
pub fn holds_break_dirtied_after_every_writeback(ctx: &Ctx) -> TResult {
    needs_buffer_heads(ctx)?;
    let (f, p, a) = held_folio(ctx, 0x7f, true, Folios::Small(4))?;
    let (fd, len) = (f.fd.raw(), a.len());
    let map = Map::shared_file(fd, len)?;
    let counts = BreakCounts::now();
    let _kept_dirty = inject("writeback_skipped", -1)?;
    let r = {
        let _busy = inject("buffers_busy", -1)?;
        write_truncate_punch(fd, [0xb9; PAGE])?
    };
    let d = counts.since();
    ctx.note(format!("calls: {:?}; {}", r.map(|r| r.map_err(ename)), counts.describe()));
    expect_untouched("dirty after every writeback", &r, fd, &a)?;
    on_device("dirty after every writeback", fd, 1, &pattern(!0x7f, 0, len), &a)?;
    ensure!(
        d("breaks_written_back") == 16 && d("breaks_retried") == 3 && d("breaks") == 0 && d("break_failures") == 0,
        "expected 8 + 4 + 4 writebacks, one retry counted per failed call and no break: {}",
        counts.describe()
    );
    // A store into page 3: retried while the buffers are busy.
    let counts = BreakCounts::now();
    let stored = {
        let _busy = inject("buffers_busy", 6)?;
        let addr = map.ptr() as usize + 3 * PAGE;
        failing_thread(move || {
            // SAFETY: a page of our live, writable shared mapping, which
            // outlives this thread (joined here).
            unsafe { std::ptr::write_bytes(addr as *mut u8, 0xba, PAGE) };
        })
    };
    drop(_kept_dirty);
    stored?;
    let d = counts.since();
    ctx.note(format!("the store: {}", counts.describe()));
    ensure!(
        d("breaks_written_back") == 6 && d("breaks") == 1 && d("breaks_dirty") == 1 && d("break_failures") == 0,
        "the store: expected 6 writebacks (one per busy break) and then one dirty break: {}",
        counts.describe()
    );
    let mut now = a.clone();
    now[3 * PAGE..].fill(0xba);
    expect_bytes("the pipe", &read_pipe(&p.r, len)?, &a, Some(("store", &now)))?;
    expect_bytes("the page cache", &pread_vec(fd, len, 0)?, &now, Some(("old bytes", &a)))?;
    expect_bytes("the disk after fsync (O_DIRECT)", &fsync_and_read_disk(fd, len)?, &now, Some(("old bytes", &a)))
}

/// A stable splice from a file system that copies at splice (tmpfs,
/// ext4's data=journal) while the splicing thread's page allocations fail
/// after the first few: the call hands over exactly the pages it copied
/// (a short count, or ENOMEM when it copied none), the pipe has those
/// bytes and nothing of the run whose copies could not all be made (they
/// are made before any is put in place, src/stable_buf.rs), and with
/// memory again the rest of the file splices whole.
pub fn splice_copy_without_memory(ctx: &Ctx) -> TResult {
    if !copies_at_splice(&ctx.dir) {
        skip!("holds, no copies, on this file system (the copies' failures are tested where splices copy)");
    }
    const PAGES: usize = 16;
    let a = pattern(0x5a, 0, PAGES * PAGE);
    let f = tmpfile(&ctx.dir)?;
    pwrite_all(f.fd.raw(), &a, 0)?;
    settle_page_cache(f.fd.raw(), a.len())?;
    let p = pipe()?;
    let (fd, w) = (f.fd.raw(), p.w.raw());
    let copied0 = counter("bytes_copied_at_splice").unwrap_or(0);
    // Order 0 and more, after three pages' worth: the fourth copy fails.
    let r = {
        let _armed = PageAllocFailures::arm_at(100, -1, 0, 4)?;
        failing_thread(move || {
            let mut off: libc::loff_t = 0;
            // SAFETY: our descriptors; `off` is ours.
            let r = unsafe { libc::splice(fd, &mut off, w, std::ptr::null_mut(), PAGES * PAGE, stable()) };
            if r < 0 { Err(errno()) } else { Ok(r as usize) }
        })?
    };
    let copied = counter("bytes_copied_at_splice").unwrap_or(0) - copied0;
    let queued = pipe_queued(p.r.raw())?;
    ctx.note(format!("splice under failing allocations: {:?}, {copied} bytes copied, {queued} queued", r.map_err(ename)));
    let n = match r {
        Ok(n) => {
            ensure!(n > 0 && n < a.len() && n % PAGE == 0, "the splice returned {n} bytes: not a short count of whole pages (injection missed?)");
            n
        }
        Err(e) => {
            ensure!(e == libc::ENOMEM, "the splice failed with {}, expected ENOMEM", ename(e));
            0
        }
    };
    ensure!(queued == n, "the pipe has {queued} bytes after a splice of {n}");
    ensure!(copied == n as u64, "{copied} bytes counted copied for {n} handed over");
    let mut got = read_pipe(&p.r, n)?;
    splice_exact(fd, n, w, a.len() - n, stable())?;
    got.extend(read_pipe(&p.r, a.len() - n)?);
    expect_bytes("the pipe, before and after the failures", &got, &a, None)
}

/// The same with runs of 512 pages: a stable splice from a 2 MiB folio of
/// a tmpfs mounted `huge=always` copies the folio as one run, allocating
/// all 512 copies before it takes the folio lock; here the 100th
/// allocation fails, so the copies made before it must be freed (no page
/// of the run in the pipe, nothing counted copied: `Copies` in
/// src/stable_buf.rs), and with memory again the folio splices whole.
/// The debug kernel's page checks see a copy freed twice or left in use;
/// 64 rounds would leak some 25 MiB if the made copies were not freed,
/// which `MemFree` shows (freed pages parked in the per-CPU lists, a few
/// MiB at most, are not counted free).
pub fn splice_copy_run_without_memory(ctx: &Ctx) -> TResult {
    if crate::detect_fs(&ctx.dir) != "tmpfs" {
        skip!("the huge tmpfs is mounted once, on the tmpfs run");
    }
    if !large_folios_possible() {
        skip!("no transparent hugepages: no 2 MiB tmpfs folios");
    }
    const LEN: usize = 2 << 20;
    const ROUNDS: usize = 64;
    let dir = format!("{}/huge-tmpfs-{}", ctx.dir, std::process::id());
    let huge = match TestMount::mount("ss-huge", "tmpfs", "huge=always,size=64m", dir.clone(), dir.clone())? {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            fail!("mount tmpfs huge=always on {dir}: {}", ename(e))
        }
    };
    let a = pattern(0x4d, 0, LEN);
    let f = tmpfile(&huge.target)?;
    pwrite_all(f.fd.raw(), &a, 0)?;
    match pages_in_large_folios(f.fd.raw(), LEN)? {
        Some((large, _)) if large == LEN / PAGE => {}
        other => skip!("the file is not in one 2 MiB folio ({other:?}): no 512-page run to copy"),
    }
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe (root may exceed pipe-max-size).
    let r = unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    ensure!(r >= LEN as i32, "F_SETPIPE_SZ {LEN}: {}", ename(errno()));
    let (fd, w) = (f.fd.raw(), p.w.raw());
    let free = || -> TResult<i64> {
        let m = std::fs::read_to_string("/proc/meminfo").map_err(|e| TestErr::Fail(format!("/proc/meminfo: {e}")))?;
        m.lines()
            .find_map(|l| l.strip_prefix("MemFree:").and_then(|v| v.trim().trim_end_matches(" kB").parse::<i64>().ok()))
            .ok_or_else(|| TestErr::Fail("no MemFree in /proc/meminfo".into()))
    };
    let (copied0, free0) = (counter("bytes_copied_at_splice").unwrap_or(0), free()?);
    for round in 0..ROUNDS {
        let r = {
            let _armed = PageAllocFailures::arm_at(100, 1, 0, 100)?;
            failing_thread(move || {
                let mut off: libc::loff_t = 0;
                // SAFETY: our descriptors; `off` is ours.
                let r = unsafe { libc::splice(fd, &mut off, w, std::ptr::null_mut(), LEN, stable()) };
                if r < 0 { Err(errno()) } else { Ok(r as usize) }
            })?
        };
        let queued = pipe_queued(p.r.raw())?;
        ensure!(
            r == Err(libc::ENOMEM) && queued == 0,
            "round {round}: the splice whose 100th copy failed returned {:?} with {queued} bytes queued (want ENOMEM, an empty pipe)",
            r.map_err(ename)
        );
    }
    let copied = counter("bytes_copied_at_splice").unwrap_or(0) - copied0;
    ensure!(copied == 0, "{copied} bytes counted copied by splices that handed over nothing");
    let lost_kib = free0 - free()?;
    ctx.note(format!("{ROUNDS} failed copies of a 512-page run; MemFree {lost_kib} KiB lower after them"));
    // 99 made copies a round, 64 rounds: ~25 MiB if they leaked.
    ensure!(lost_kib < 8 << 10, "MemFree fell by {lost_kib} KiB over {ROUNDS} failed runs: their copies leaked?");
    splice_exact(fd, 0, w, LEN, stable())?;
    expect_bytes("the pipe, after the failures", &read_pipe(&p.r, LEN)?, &a, None)
}
