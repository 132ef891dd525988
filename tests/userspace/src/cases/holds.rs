//! Holds that nothing gets around: the adversarial cases a reviewer of the
//! zero-copy mechanism would try, each as a stable case (`holds_*`, must
//! keep the snapshot) and a plain-splice control (`plain_*`, must show the
//! change, or skip when the race was not hit), so that a pass means the
//! case tests something.

use super::socket_sink::{recv_exact, tcp_pair};
use super::Ctx;
use crate::uring;
use crate::util::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEN: usize = 4 * PAGE;

/// A file holding A (`LEN` bytes, page cache settled so that a stable
/// splice can hold it), B the content writers put there later.
pub(super) fn file_ab(ctx: &Ctx, len: usize) -> TResult<(TestFile, Vec<u8>, Vec<u8>)> {
    file_ab_written(ctx, len, len)
}

/// [`file_ab`] with A written `chunk` bytes at a time (a page at a time:
/// small folios, where the file system would cache a large one).
fn file_ab_written(ctx: &Ctx, len: usize, chunk: usize) -> TResult<(TestFile, Vec<u8>, Vec<u8>)> {
    let f = tmpfile(&ctx.dir)?;
    let a = pattern(0x2b, 0, len);
    let b = pattern(0x6d, 0, len);
    for (i, piece) in a.chunks(chunk).enumerate() {
        pwrite_all(f.fd.raw(), piece, i * chunk)?;
    }
    settle_page_cache(f.fd.raw(), len)?;
    Ok((f, a, b))
}

/// The start of a case about holds: skipped where the mount copies at
/// splice time, and nothing held from before.
fn holds_case(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    ensure!(wait_holds_released(Duration::from_secs(5)), "holds left from before: {:?}", counter("holds_active"));
    Ok(())
}

/// What the control of a hazard concludes: it must see a change.
fn control(what: &str, got: &[u8], old: &[u8]) -> TResult {
    if got == old {
        skip!("{what}: plain splice kept the old bytes this time (the hazard did not show)");
    }
    Ok(())
}

fn stable_or_control(flags: u32, what: &str, got: &[u8], old: &[u8], new: &[u8]) -> TResult {
    if flags == 0 {
        control(what, got, old)
    } else {
        expect_bytes(what, got, old, Some(("file's new content (the change showed through)", new)))
    }
}

/// How the rest of the pipe goes after part of it went to a socket.
#[derive(Clone, Copy)]
pub enum Rest {
    Read,
    Close,
    DevNull,
}

/// file -> pipe -> half into a TCP socket, the rest read, dropped or
/// spliced to /dev/null; then the file is overwritten, then the receiver
/// reads. The socket's skbs still reference the pages the pipe gave it.
fn socket_partial(ctx: &Ctx, flags: u32, rest: Rest) -> TResult {
    let (f, a, b) = file_ab(ctx, LEN)?;
    let (tx, rx) = tcp_pair()?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
    let half = LEN / 2;
    let n = splice_raw(p.r.raw(), None, tx.raw(), None, half, 0);
    ensure!(n == Ok(half), "splice pipe -> socket returned {n:?}");
    match rest {
        Rest::Read => drop(read_pipe(&p.r, LEN - half)?),
        Rest::Close => drop(p),
        Rest::DevNull => {
            let null = ck(open("/dev/null", libc::O_WRONLY, 0), "open /dev/null")?;
            let n = splice_raw(p.r.raw(), None, null.raw(), None, LEN - half, 0);
            ensure!(n == Ok(LEN - half), "splice pipe -> /dev/null returned {n:?}");
        }
    }
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = recv_exact(&rx, half)?;
    stable_or_control(flags, "received", &got, &a[..half], &b[..half])
}

pub fn holds_socket_partial_read(ctx: &Ctx) -> TResult {
    socket_partial(ctx, stable(), Rest::Read)
}
pub fn holds_socket_partial_close(ctx: &Ctx) -> TResult {
    socket_partial(ctx, stable(), Rest::Close)
}
pub fn holds_socket_partial_devnull(ctx: &Ctx) -> TResult {
    socket_partial(ctx, stable(), Rest::DevNull)
}
pub fn plain_socket_partial_read(ctx: &Ctx) -> TResult {
    socket_partial(ctx, 0, Rest::Read)
}

/// Who still reads the spliced pages when the reaper looks at their holds.
#[derive(Clone, Copy)]
pub enum Reader {
    /// The pipe, not drained.
    Pipe,
    /// A socket's skbs: half the pipe sent, the rest read out of it.
    Socket,
    /// A `tee()` copy of the pipe; the pipe itself read empty.
    Tee,
    /// The pipe, with the file's pages also mapped by the reader: the
    /// mapping's references must not hide the pipe's.
    Mapped,
}

/// The reaper ends a hold only once nobody reads its folio: reaps (debugfs
/// `reap`, the periodic reaper's walk without its idle second) while a
/// reader still has the pages leave every hold, and a write after them
/// does not reach the reader. The holds are counted where the mount holds
/// (the reaps must not lower the count); copying mounts check the bytes.
/// Once on a file written whole (a large folio where the kernel caches
/// one) and once on one written a page at a time (small folios, where one
/// pipe buffer is a folio's only reader).
fn reap_while_read(ctx: &Ctx, flags: u32, reader: Reader) -> TResult {
    reap_while_read_file(ctx, flags, reader, false)?;
    reap_while_read_file(ctx, flags, reader, true)
}

/// A [`Reader`] at work, with what it still reads from.
enum Reading {
    Pipe,
    /// The pipe, beside the mapping.
    Mapped { _map: Map },
    /// The receiving end of the socket, and the sending end that keeps it
    /// open; the socket has the first half of the pages.
    Socket { rx: Fd, _tx: Fd },
    /// The `tee()` copy.
    Tee(Pipe),
}

impl Reading {
    /// Sets `reader` to work on the pipe `p`, filled with `a`.
    fn start(reader: Reader, f: &TestFile, p: &Pipe, a: &[u8]) -> TResult<Self> {
        Ok(match reader {
            Reader::Pipe => Self::Pipe,
            Reader::Mapped => {
                let m = Map::shared_file(f.fd.raw(), LEN)?;
                expect_bytes("the mapping", &m.load(0, LEN), a, None)?; // read faults map the pages
                Self::Mapped { _map: m }
            }
            Reader::Socket => {
                let (tx, rx) = tcp_pair()?;
                let n = splice_raw(p.r.raw(), None, tx.raw(), None, LEN / 2, 0);
                ensure!(n == Ok(LEN / 2), "splice pipe -> socket returned {n:?}");
                expect_bytes("the pipe's rest", &read_pipe(&p.r, LEN - LEN / 2)?, &a[LEN / 2..], None)?;
                Self::Socket { rx, _tx: tx }
            }
            Reader::Tee => {
                let t = pipe()?;
                let n = tee_raw(p.r.raw(), t.w.raw(), LEN, 0);
                ensure!(n == Ok(LEN), "tee returned {n:?}");
                expect_bytes("the pipe", &read_pipe(&p.r, LEN)?, a, None)?;
                Self::Tee(t)
            }
        })
    }

    /// The bytes of the file this reader still has.
    fn range(&self) -> core::ops::Range<usize> {
        match self {
            Self::Socket { .. } => 0..LEN / 2,
            _ => 0..LEN,
        }
    }

    /// Reads them (`p`: the spliced pipe).
    fn finish(&self, p: &Pipe) -> TResult<Vec<u8>> {
        match self {
            Self::Pipe | Self::Mapped { .. } => read_pipe(&p.r, LEN),
            Self::Socket { rx, .. } => recv_exact(rx, LEN / 2),
            Self::Tee(t) => read_pipe(&t.r, LEN),
        }
    }
}

fn reap_while_read_file(ctx: &Ctx, flags: u32, reader: Reader, by_page: bool) -> TResult {
    let module = counters_present();
    if module {
        ensure!(wait_holds_released(Duration::from_secs(5)), "holds left from before: {:?}", counter("holds_active"));
    }
    let (f, a, b) = file_ab_written(ctx, LEN, if by_page { PAGE } else { LEN })?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
    let held = counter("holds_active").unwrap_or(0);
    let reading = Reading::start(reader, &f, &p, &a)?;
    // Without the module (the control's run) there is nothing to reap.
    for _ in 0..if module { 3 } else { 0 } {
        reap_idle_holds()?;
    }
    // Half the socket's pages were read out of the pipe: their holds may end.
    if module && flags != 0 && !matches!(reading, Reading::Socket { .. }) {
        let now = counter("holds_active").unwrap_or(0);
        ensure!(now >= held, "{held} holds before the reaps, {now} after, while the pages were still read");
    }
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = reading.finish(&p)?;
    let what = if by_page { "read after the reaps (file written by page)" } else { "read after the reaps" };
    stable_or_control(flags, what, &got, &a[reading.range()], &b[reading.range()])
}

pub fn holds_reap_while_pipe_reads(ctx: &Ctx) -> TResult {
    reap_while_read(ctx, stable(), Reader::Pipe)
}
pub fn holds_reap_while_socket_reads(ctx: &Ctx) -> TResult {
    reap_while_read(ctx, stable(), Reader::Socket)
}
pub fn holds_reap_while_tee_reads(ctx: &Ctx) -> TResult {
    reap_while_read(ctx, stable(), Reader::Tee)
}
pub fn holds_reap_while_mapped(ctx: &Ctx) -> TResult {
    reap_while_read(ctx, stable(), Reader::Mapped)
}
pub fn plain_reap_while_pipe_reads(ctx: &Ctx) -> TResult {
    reap_while_read(ctx, 0, Reader::Pipe)
}

/// A consumer already blocked in splice(pipe -> socket) when the stable
/// buffers arrive.
fn socket_consumer_first(ctx: &Ctx, flags: u32) -> TResult {
    let (f, a, b) = file_ab(ctx, LEN)?;
    let (tx, rx) = tcp_pair()?;
    let p = pipe()?;
    let (pr, txr) = (p.r.raw(), tx.raw());
    let consumer = std::thread::spawn(move || {
        let mut moved = 0;
        while moved < LEN {
            match splice_raw(pr, None, txr, None, LEN - moved, 0) {
                Ok(n) if n > 0 => moved += n,
                other => return Err(format!("splice pipe -> socket: {other:?}")),
            }
        }
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300)); // let it block on the empty pipe
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
    consumer.join().map_err(|_| TestErr::Fail("consumer panicked".into()))?.map_err(TestErr::Fail)?;
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = recv_exact(&rx, LEN)?;
    stable_or_control(flags, "received", &got, &a, &b)
}

pub fn holds_socket_consumer_first(ctx: &Ctx) -> TResult {
    socket_consumer_first(ctx, stable())
}
pub fn plain_socket_consumer_first(ctx: &Ctx) -> TResult {
    socket_consumer_first(ctx, 0)
}

/// A page whose every 4-byte word is `gen`.
fn gen_page(gen: u32) -> Vec<u8> {
    gen.to_ne_bytes().iter().copied().cycle().take(PAGE).collect()
}

/// The generation of a page, or None if it mixes generations.
fn page_gen(p: &[u8]) -> Option<u32> {
    let g = u32::from_ne_bytes(p[..4].try_into().ok()?);
    p.chunks(4).all(|w| w == g.to_ne_bytes()).then_some(g)
}

/// How the racing writer changes page 0.
#[derive(Clone, Copy, PartialEq)]
enum WriteBy {
    /// pwrite() of a whole page (every 8th with fsync, which makes ext4
    /// leave delalloc and take the journal): each page is one generation.
    Pwrite,
    /// A store through a fresh shared mapping, unmapped after each store:
    /// the folio is mapped and unmapped all along, so new holds are taken
    /// on it between faults and the next store comes through
    /// `page_mkwrite`. A store is no atomic page write, so a splice that
    /// runs during one may see a mix (as `read()` would). The mapping is
    /// `MADV_RANDOM`: on the debug kernel (classic LRU, no MGLRU) the
    /// folio of a plain mapping zapped young on the writer's CPU carried
    /// ~20 references more than the page cache's in some runs (gone once
    /// the writer exited), every splice copied and no hold was ever
    /// broken; with `MADV_RANDOM` (no recency: zap does not mark it
    /// accessed) holds are taken and broken by the thousand on both
    /// kernels. The race asserts that they were.
    Mmap,
}

/// A writer thread rewrites page 0 with a new generation in a loop; the
/// splicer splices page 0, tees the buffer to a second pipe, reads the
/// first pipe, then the tee copy. Both are the same buffer, read at two
/// moments: with a snapshot they are equal (and, written by pwrite(),
/// whole generations).
fn writer_race(ctx: &Ctx, flags: u32, by: WriteBy) -> TResult {
    writer_race_on(ctx, flags, by, 1)
}

/// The same on a file of `pages` pages: the writer rewrites one page after
/// another, the splicer splices them all. Every 32 splices the file is
/// made again in one write after its pages were punched out of the page
/// cache, so that where the kernel caches large folios the writer keeps
/// breaking holds of a large folio (whose copy goes in as small folios,
/// `breaks_split`), not only of the small folios the split left. Stores
/// come from two writers, on alternate pages: one's fault may reach a page
/// of a copy that the other's break has just split, before the break gave
/// it its share of the old folio's state (`split_pages_faulted`). In the
/// end the file is fsynced and its pages on the disk must be those in the
/// page cache: a break that lost a page's dirtiness or its blocks would
/// show there.
fn writer_race_on(ctx: &Ctx, flags: u32, by: WriteBy, pages: usize) -> TResult {
    let len = pages * PAGE;
    let whole = |gen: u32| gen_page(gen).repeat(pages);
    let f = tmpfile(&ctx.dir)?;
    pwrite_all(f.fd.raw(), &whole(0), 0)?;
    let stop = Arc::new(AtomicBool::new(false));
    let fd = f.fd.raw();
    let writers = if by == WriteBy::Mmap && pages > 1 { 2 } else { 1 };
    let writer = |k: usize| {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<u32, String> {
            let mut gen = 1u32;
            while !stop.load(Ordering::Relaxed) {
                let page = gen_page(gen);
                let at = ((gen as usize * writers + k) % pages) * PAGE;
                match by {
                    WriteBy::Pwrite => {
                        // SAFETY: writes our buffer to our own descriptor.
                        unsafe { libc::pwrite(fd, page.as_ptr().cast(), PAGE, at as i64) };
                        if gen % 8 == 0 {
                            // SAFETY: as above.
                            unsafe { libc::fsync(fd) };
                        }
                    }
                    WriteBy::Mmap => {
                        let prot = libc::PROT_READ | libc::PROT_WRITE;
                        // SAFETY: a new shared mapping of a page of our own file.
                        let m = unsafe { libc::mmap(std::ptr::null_mut(), PAGE, prot, libc::MAP_SHARED, fd, at as i64) };
                        if m == libc::MAP_FAILED {
                            return Err(format!("mmap: {}", ename(errno())));
                        }
                        // SAFETY: advice on the mapping just made.
                        if unsafe { libc::madvise(m, PAGE, libc::MADV_RANDOM) } != 0 {
                            return Err(format!("madvise: {}", ename(errno())));
                        }
                        // SAFETY: the mapping is PAGE bytes long and ours; unmapped right after.
                        unsafe {
                            std::ptr::copy_nonoverlapping(page.as_ptr(), m.cast::<u8>(), PAGE);
                            libc::munmap(m, PAGE);
                        }
                        // Every other store a pause with the page unmapped
                        // (a spin: sleeps are coarse under TCG), in which
                        // splices can take holds for the next store to break.
                        if gen % 2 == 0 {
                            let t = Instant::now();
                            while t.elapsed() < Duration::from_micros(40) {
                                std::hint::spin_loop();
                            }
                        }
                    }
                }
                gen += 1;
            }
            Ok(gen)
        })
    };
    let writers: Vec<_> = (0..writers).map(writer).collect();
    let (p1, p2) = (pipe()?, pipe()?);
    let c0 = (counter("bytes_zero_copy"), counter("holds_refused"), counter("breaks"));
    let (splits0, raced0) = (counter("breaks_split"), counter("split_pages_faulted"));
    let delta = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0).saturating_sub(a.unwrap_or(0));
    // Where holds are taken, the race is a test of breaks only if writers
    // broke holds: it goes on past its time (up to 100,000 splices) until
    // they did MIN_BREAKS times, and fails if they never do.
    let want_breaks = flags != 0 && !copies_at_splice(&ctx.dir);
    let breaks_short = || want_breaks && delta(c0.2, counter("breaks")) < MIN_BREAKS;
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(5, 20));
    let (mut iters, mut differ, mut torn) = (0u32, 0u32, 0u32);
    let mut first = String::new();
    loop {
        if pages > 1 && iters % 32 == 0 {
            remake_large(fd, &whole(0x8000_0000 | iters), iters % 64 == 0)?;
        }
        splice_exact(fd, 0, p1.w.raw(), len, flags)?;
        let t = tee_raw(p1.r.raw(), p2.w.raw(), len, 0);
        ensure!(t == Ok(len), "tee returned {t:?}");
        let x = read_pipe(&p1.r, len)?;
        std::thread::yield_now();
        let y = read_pipe(&p2.r, len)?;
        let gens = |b: &[u8]| b.chunks(PAGE).map(page_gen).collect::<Option<Vec<u32>>>();
        let (gx, gy) = (gens(&x), gens(&y));
        // A store through the mapping during the splice may leave a mix
        // in both reads alike: only a torn pwrite() is a defect.
        if by == WriteBy::Pwrite && (gx.is_none() || gy.is_none()) {
            torn += 1;
        } else if x != y {
            differ += 1;
            if first.is_empty() {
                first = format!("iteration {iters}: read {gx:?}, tee copy {gy:?}");
            }
        }
        iters += 1;
        // Once the hazard showed a control has done its job, and a stable
        // splice has failed.
        if differ + torn > 0 && iters >= 100 {
            break;
        }
        let done = (Instant::now() >= deadline && iters >= 2000) || iters >= 20000;
        if done && ((iters % 100 == 0 && !breaks_short()) || iters >= 100_000) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut gens = 0;
    for w in writers {
        gens += w.join().map_err(|_| TestErr::Fail("writer panicked".into()))?.map_err(TestErr::Fail)?;
    }
    let breaks = delta(c0.2, counter("breaks"));
    let splits = delta(splits0, counter("breaks_split"));
    let raced = delta(raced0, counter("split_pages_faulted"));
    ctx.note(format!(
        "{iters} splices of {pages} pages against {gens} writes: {differ} differed, {torn} torn; {first} \
         (module: {} pages zero copy, {} holds refused, {} breaks, {splits} of large folios split, \
         {raced} split pages reached first by another writer's fault)",
        delta(c0.0, counter("bytes_zero_copy")) / PAGE as u64,
        delta(c0.1, counter("holds_refused")),
        breaks
    ));
    if crate::detect_fs(&ctx.dir) != "tmpfs" {
        let cached = pread_vec(fd, len, 0)?;
        expect_bytes("the disk after the race and fsync (O_DIRECT)", &fsync_and_read_disk(fd, len)?, &cached, None)?;
    }
    if flags == 0 {
        if differ + torn == 0 {
            skip!("plain splice: the race was not hit in {iters} iterations");
        }
        return Ok(());
    }
    ensure!(differ == 0 && torn == 0, "{differ} of {iters} buffers changed after splice() returned, {torn} torn ({first})");
    ensure!(
        !want_breaks || breaks >= MIN_BREAKS,
        "writers broke {breaks} holds in {iters} splices (want >= {MIN_BREAKS}): the race did not test breaks"
    );
    // Made large again every 32 splices: a good share of those must have
    // been held, broken and split (where they are large at all), dirty or
    // clean.
    if pages > 1 && want_breaks && large_folios_possible() {
        ensure!(
            splits >= u64::from(iters / 32 / 4),
            "{splits} breaks split a large folio in {iters} splices (the file was made large {} times)",
            iters / 32
        );
    }
    Ok(())
}

/// Punches `content`'s range of `fd` out of the page cache, then writes
/// `content` in one write: a large folio again where the kernel caches
/// them (unless a racing writer's page write came in between), dirty or,
/// written back, `clean` (a dirty one with buffer heads splits in one
/// step, see [`dirty_large_splits_in_one_step`]).
fn remake_large(fd: i32, content: &[u8], clean: bool) -> TResult {
    // SAFETY: our own descriptor.
    let r = unsafe { libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, content.len() as i64) };
    ensure!(r == 0, "punching the file's pages out: {}", ename(errno()));
    pwrite_all(fd, content, 0)?;
    // SAFETY: our own descriptor.
    ensure!(!clean || unsafe { libc::fdatasync(fd) } == 0, "fdatasync: {}", ename(errno()));
    Ok(())
}

/// Holds a writer race must have seen broken to count as a test of breaks.
const MIN_BREAKS: u64 = 200;

pub fn holds_writer_race(ctx: &Ctx) -> TResult {
    writer_race(ctx, stable(), WriteBy::Pwrite)
}
pub fn plain_writer_race(ctx: &Ctx) -> TResult {
    writer_race(ctx, 0, WriteBy::Pwrite)
}
pub fn holds_mmap_writer_race(ctx: &Ctx) -> TResult {
    writer_race(ctx, stable(), WriteBy::Mmap)
}
pub fn plain_mmap_writer_race(ctx: &Ctx) -> TResult {
    writer_race(ctx, 0, WriteBy::Mmap)
}

/// Pages of the large-folio writer races: 64 KiB, the pipe's default size.
const LARGE_RACE_PAGES: usize = 16;

pub fn holds_large_writer_race(ctx: &Ctx) -> TResult {
    writer_race_on(ctx, stable(), WriteBy::Pwrite, LARGE_RACE_PAGES)
}
pub fn plain_large_writer_race(ctx: &Ctx) -> TResult {
    writer_race_on(ctx, 0, WriteBy::Pwrite, LARGE_RACE_PAGES)
}
pub fn holds_large_mmap_writer_race(ctx: &Ctx) -> TResult {
    writer_race_on(ctx, stable(), WriteBy::Mmap, LARGE_RACE_PAGES)
}

/// Truncation against the breaks of store faults, on large folios: a
/// store fault breaks a hold before the file system's `page_mkwrite`
/// (and its truncation lock) runs, so a truncation can take pages of a
/// split copy out of the page cache before the break has given them their
/// share of the old folio's state (`split_pages_truncated`: that share is
/// then freed), and stores on the pages below may fault in first
/// (`split_pages_faulted`). One thread stores into the first half of a 16-page file
/// through a shared mapping; another cuts the file to 12 pages and writes
/// the last 4 back; the splicer makes the file large again every 32
/// splices and checks that each stable splice's buffer stays as it was
/// (read against its tee copy) and that pages written by `pwrite()` are
/// whole. In the end, fsync: the disk has what the page cache has.
pub fn holds_large_truncate_race(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    const PAGES: usize = LARGE_RACE_PAGES;
    const CUT: usize = 12;
    let len = PAGES * PAGE;
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    pwrite_all(fd, &gen_page(0).repeat(PAGES), 0)?;
    let map = Map::shared_file(fd, len)?;
    // See `WriteBy::Mmap`: no recency for zapped folios, or holds are refused.
    // SAFETY: advice on our own mapping.
    ensure!(unsafe { libc::madvise(map.ptr().cast(), len, libc::MADV_RANDOM) } == 0, "madvise: {}", ename(errno()));
    let base = map.ptr() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let storer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut gen = 1u32;
            while !stop.load(Ordering::Relaxed) {
                let page = gen_page(gen);
                // Below the cut: never beyond EOF (no SIGBUS).
                let at = (gen as usize % (CUT / 2)) * PAGE;
                // SAFETY: inside our shared mapping of `len` bytes, below EOF.
                unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), (base + at) as *mut u8, PAGE) };
                gen += 1;
            }
            gen
        })
    };
    let cutter = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<u32, String> {
            let mut round = 0u32;
            let tail = gen_page(0x4000_0000).repeat(PAGES - CUT);
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: our own descriptor.
                if unsafe { libc::ftruncate(fd, (CUT * PAGE) as i64) } != 0 {
                    return Err(format!("ftruncate: {}", ename(errno())));
                }
                // SAFETY: our buffer and descriptor.
                let r = unsafe { libc::pwrite(fd, tail.as_ptr().cast(), tail.len(), (CUT * PAGE) as i64) };
                if r != tail.len() as isize {
                    return Err(format!("pwrite of the tail: {r}, {}", ename(errno())));
                }
                round += 1;
            }
            Ok(round)
        })
    };
    let (p1, p2) = (pipe()?, pipe()?);
    let k = |name| counter(name).unwrap_or(0);
    let (breaks0, splits0) = (k("breaks"), k("breaks_split"));
    let (faulted0, truncated0) = (k("split_pages_faulted"), k("split_pages_truncated"));
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(5, 20));
    let (mut iters, mut short, mut bad) = (0u32, 0u32, String::new());
    let result = (|| -> TResult {
        while Instant::now() < deadline || iters < 1000 {
            if iters % 32 == 0 {
                remake_large(fd, &gen_page(0x8000_0000 | iters).repeat(PAGES), iters % 64 == 0)?;
            }
            let mut off = 0i64;
            let n = ck(splice_raw(fd, Some(&mut off), p1.w.raw(), None, len, stable()), "stable splice")?;
            if n < len {
                short += 1;
            }
            if n > 0 {
                let t = tee_raw(p1.r.raw(), p2.w.raw(), n, 0);
                ensure!(t == Ok(n), "tee returned {t:?} for {n}");
                let x = read_pipe(&p1.r, n)?;
                std::thread::yield_now();
                let y = read_pipe(&p2.r, n)?;
                let torn = x.chunks(PAGE).enumerate().skip(CUT / 2).find(|(_, p)| p.len() == PAGE && page_gen(p).is_none());
                if x != y || torn.is_some() {
                    bad = format!("iteration {iters}: {n} bytes, read and tee copy {}, torn page {:?}", if x == y { "equal" } else { "differ" }, torn.map(|(i, _)| i));
                    break;
                }
            }
            iters += 1;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let stores = storer.join().map_err(|_| TestErr::Fail("the storer panicked".into()))?;
    let rounds = cutter.join().map_err(|_| TestErr::Fail("the cutter panicked".into()))?.map_err(TestErr::Fail)?;
    result?;
    ctx.note(format!(
        "{iters} stable splices ({short} short) against {stores} stores and {rounds} cuts: {} breaks, {} splits; \
         pages of split copies reached first by a store fault {}, by the cut {}",
        k("breaks") - breaks0,
        k("breaks_split") - splits0,
        k("split_pages_faulted") - faulted0,
        k("split_pages_truncated") - truncated0
    ));
    ensure!(bad.is_empty(), "a stable splice's buffer changed or was torn: {bad}");
    drop(map);
    // 12 or 16 pages, as the cutter left it.
    let size = file_size(fd)? as usize;
    let cached = pread_vec(fd, size, 0)?;
    expect_bytes("the disk after the race and fsync (O_DIRECT)", &fsync_and_read_disk(fd, size)?, &cached, None)
}

/// Two splices of overlapping ranges into two undrained pipes, then the
/// whole file is overwritten. The second stable splice starts inside the
/// first one's range, mid-page: it joins the first's holds where they
/// overlap (the fast path's one pass over buffers and index, across its
/// 32-buffer chunks and a 64-slot node of the index) and takes new holds
/// past them. Both pipes keep the old bytes, none of them copied (on
/// tmpfs and ext4 `data=journal` all of them are).
fn overlapping_splices(ctx: &Ctx, flags: u32) -> TResult {
    const PAGES: usize = 96;
    let len = PAGES * PAGE;
    let f = tmpfile(&ctx.dir)?;
    let (a, b) = (pattern(0x2b, 0, len), pattern(0x6d, 0, len));
    pwrite_all(f.fd.raw(), &a, 0)?;
    // Written back first: writeback's folio references would make some
    // pages copies instead of holds.
    fsync(f.fd.raw())?;
    settle_page_cache(f.fd.raw(), len)?;
    let (first, second) = ((8 * PAGE, 64 * PAGE), (40 * PAGE + 100, 56 * PAGE - 100));
    let (p1, p2) = (pipe()?, pipe()?);
    for p in [&p1, &p2] {
        // SAFETY: fcntl on our own pipe descriptor.
        let r = unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, (64 * PAGE) as i32) };
        ensure!(r >= (64 * PAGE) as i32, "F_SETPIPE_SZ 256 KiB: {}", ename(errno()));
    }
    let watch = ["holds_taken", "bytes_zero_copy", "bytes_copied_at_splice"];
    let snap = || watch.map(|n| counter(n).unwrap_or(0));
    let before = snap();
    splice_exact(f.fd.raw(), first.0, p1.w.raw(), first.1, flags)?;
    let mid = snap();
    splice_exact(f.fd.raw(), second.0, p2.w.raw(), second.1, flags)?;
    let after = snap();
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got1 = read_pipe(&p1.r, first.1)?;
    let got2 = read_pipe(&p2.r, second.1)?;
    let (old1, old2) = (&a[first.0..first.0 + first.1], &a[second.0..second.0 + second.1]);
    if flags == 0 {
        return control("pipes of two overlapping plain splices", &[got1, got2].concat(), &[old1, old2].concat());
    }
    expect_bytes("first pipe", &got1, old1, Some(("new content", &b[first.0..first.0 + first.1])))?;
    expect_bytes("second pipe (joined holds)", &got2, old2, Some(("new content", &b[second.0..second.0 + second.1])))?;
    let d = |i: usize, x: [u64; 3], y: [u64; 3]| y[i].wrapping_sub(x[i]);
    if copies_at_splice(&ctx.dir) {
        let copied = d(2, before, after);
        ensure!(copied == (first.1 + second.1) as u64, "copied {copied} bytes at splice, want all {} here", first.1 + second.1);
    } else {
        // Pages 8..72 new holds; then 40..72 joined, 72..96 new. A page
        // that somebody else references for a moment is copied instead of
        // held (sound, and counted with the holds here); it must not be
        // among the pages the second splice joined.
        let (page, pages) = (PAGE as u64, |i: u64| i / PAGE as u64);
        let new1 = d(0, before, mid) + pages(d(2, before, mid));
        let new2 = d(0, mid, after) + pages(d(2, mid, after));
        if large_folios_possible() {
            // One hold per folio: a large folio counts once, and one that
            // reaches past page 72 was held by the first splice already.
            ensure!(
                (1..=64).contains(&new1) && new2 <= 24,
                "folios held or pages copied: {new1} by the first splice (want 1..=64), {new2} by the second (want <= 24: pages 72..96, the rest joined); {watch:?} {before:?} -> {mid:?} -> {after:?}"
            );
        } else {
            ensure!(
                new1 == 64 && new2 == 24,
                "pages held or copied: {new1} by the first splice (want 64), {new2} by the second (want 24: pages 72..96, the rest joined); {watch:?} {before:?} -> {mid:?} -> {after:?}"
            );
        }
        let zero_copy2 = d(1, mid, after);
        ensure!(
            zero_copy2 >= second.1 as u64 - 24 * page,
            "the second splice left {zero_copy2} bytes zero copy: the {} bytes it shares with the first were not joined",
            second.1 - 24 * PAGE
        );
    }
    Ok(())
}

/// A warm file as a file server has it (written in one go, so ext4 and xfs
/// cache it in large folios where the kernel has them), spliced stably as
/// an 8 MiB SMB read would be, then rewritten: on ext4 and xfs all of it
/// must have been zero copy (held, large folios too), every byte of the
/// pipe the old content, the file the new, no break failed. Where the
/// module copies at splice (tmpfs, data=journal) all of it is copied.
pub fn holds_warm_file_zero_copy(ctx: &Ctx) -> TResult {
    const LEN: usize = 2 << 20;
    let f = tmpfile(&ctx.dir)?;
    let (a, b) = (pattern(0x51, 0, LEN), pattern(0x52, 0, LEN));
    pwrite_all(f.fd.raw(), &a, 0)?;
    fsync(f.fd.raw())?;
    match pages_in_large_folios(f.fd.raw(), LEN)? {
        Some((large, pages)) => {
            ctx.note(format!("{large} of {pages} pages in large folios"));
            if large_folios_possible() && !copies_at_splice(&ctx.dir) {
                // Else this case would not test what a distribution kernel does.
                ensure!(large > 0, "no page of a freshly written {LEN}-byte file is in a large folio on a kernel with THP");
            }
        }
        None if large_folios_possible() => fail!("no /proc/kpageflags: cannot tell whether large folios were tested"),
        None => ctx.note("no /proc/kpageflags, no THP: small folios only"),
    }
    settle_page_cache(f.fd.raw(), LEN)?;
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe descriptor (root may exceed pipe-max-size).
    let r = unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    ensure!(r >= LEN as i32, "F_SETPIPE_SZ {LEN}: {}", ename(errno()));
    let watch = ["bytes_zero_copy", "bytes_copied_at_splice", "breaks", "break_failures"];
    let snap = || watch.map(|n| counter(n).unwrap_or(0));
    let before = snap();
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, stable())?;
    let mid = snap();
    pwrite_all(f.fd.raw(), &b[..PAGE], 3 * PAGE)?; // one page into a held folio
    pwrite_all(f.fd.raw(), &b, 0)?;
    expect_bytes("pipe after the file was rewritten", &read_pipe(&p.r, LEN)?, &a, Some(("new content", &b)))?;
    expect_bytes("file after the rewrite", &pread_vec(f.fd.raw(), LEN, 0)?, &b, None)?;
    let after = snap();
    let d = |i: usize, x: [u64; 4], y: [u64; 4]| y[i].wrapping_sub(x[i]);
    let (zero_copy, copied) = (d(0, before, mid), d(1, before, mid));
    ctx.note(format!("{zero_copy} bytes zero copy, {copied} copied at splice; {} breaks by the rewrite", d(2, mid, after)));
    if copies_at_splice(&ctx.dir) {
        ensure!(copied == LEN as u64 && zero_copy == 0, "{copied} bytes copied, {zero_copy} zero copy: want all {LEN} copied here");
    } else {
        // A page somebody references for a moment is copied (sound); 99%
        // is the bar for a warm file.
        ensure!(zero_copy * 100 >= LEN as u64 * 99, "only {zero_copy} of {LEN} bytes zero copy ({copied} copied at splice)");
        ensure!(d(2, mid, after) > 0, "the rewrite broke no hold");
    }
    ensure!(d(3, before, after) == 0, "break_failures rose by {}", d(3, before, after));
    Ok(())
}

/// Pages written a moment ago sit in a per-CPU LRU add batch, which
/// references each until it drains (31 folios later on that CPU): off the
/// LRU, with one reference more than the page cache's. The module counts
/// that reference as the LRU's (`ss_folio_unshared` in rust/folio.c), so a
/// file served right after it was written is held zero copy instead of
/// copied, and a writer still breaks each hold: the pipe keeps what was
/// spliced.
pub fn holds_fresh_pages_zero_copy(ctx: &Ctx) -> TResult {
    const N: usize = 16;
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    let (a, b) = (pattern(0x5a, 0, N * PAGE), pattern(0x5b, 0, N * PAGE));
    // A page at a time: small folios, each added through this CPU's batch.
    // Something may drain the batches before the splice (the census below
    // sees it): then try a new file, a few times.
    let mut tries = 0;
    let (f, off_lru) = loop {
        tries += 1;
        let f = tmpfile(&ctx.dir)?;
        for i in 0..N {
            pwrite_all(f.fd.raw(), &a[i * PAGE..(i + 1) * PAGE], i * PAGE)?;
        }
        let off_lru = pages_off_lru(f.fd.raw(), N * PAGE)?;
        if off_lru != Some(0) || tries == 8 {
            break (f, off_lru);
        }
    };
    let p = pipe()?;
    let watch = ["bytes_zero_copy", "bytes_copied_at_splice", "breaks", "break_failures"];
    let snap = || watch.map(|n| counter(n).unwrap_or(0));
    let before = snap();
    splice_exact(f.fd.raw(), 0, p.w.raw(), N * PAGE, stable())?;
    let mid = snap();
    pwrite_all(f.fd.raw(), &b, 0)?;
    expect_bytes("pipe after the file was rewritten", &read_pipe(&p.r, N * PAGE)?, &a, Some(("new content", &b)))?;
    expect_bytes("file after the rewrite", &pread_vec(f.fd.raw(), N * PAGE, 0)?, &b, None)?;
    let after = snap();
    let d = |i: usize, x: [u64; 4], y: [u64; 4]| y[i].wrapping_sub(x[i]);
    let (zero_copy, copied, breaks) = (d(0, before, mid), d(1, before, mid), d(2, mid, after));
    ctx.note(format!(
        "{} of {N} pages off the LRU before the splice (file {tries}); {zero_copy} bytes zero copy, {copied} copied at splice; {breaks} breaks by the rewrite",
        off_lru.map_or("?".into(), |n| n.to_string())
    ));
    ensure!(d(3, before, after) == 0, "break_failures rose by {}", d(3, before, after));
    ensure!(
        zero_copy == (N * PAGE) as u64 && copied == 0,
        "{zero_copy} bytes zero copy, {copied} copied at splice: want all {} bytes of the fresh pages held",
        N * PAGE
    );
    ensure!(breaks >= N as u64, "the rewrite of {N} held pages broke {breaks} holds");
    match off_lru {
        Some(0) => skip!("in {tries} files every page had left the LRU add batch before the splice: the case saw only ordinary holds"),
        None => skip!("no /proc/kpageflags: cannot tell whether a page was in an LRU add batch"),
        Some(_) => Ok(()),
    }
}

pub fn holds_overlapping_splices(ctx: &Ctx) -> TResult {
    overlapping_splices(ctx, stable())
}
pub fn plain_overlapping_splices(ctx: &Ctx) -> TResult {
    overlapping_splices(ctx, 0)
}

/// FS_IOC_SETFLAGS with FS_JOURNAL_DATA_FL (chattr +j) where the file
/// system has it; returns whether it was set.
fn chattr_j(fd: i32) -> bool {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FS_JOURNAL_DATA_FL: libc::c_long = 0x4000;
    let mut flags: libc::c_long = 0;
    // SAFETY: ioctls on our own descriptor with a valid long.
    unsafe {
        if libc::ioctl(fd, FS_IOC_GETFLAGS, &mut flags) != 0 {
            return false;
        }
        flags |= FS_JOURNAL_DATA_FL;
        libc::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0
    }
}

/// When `zeroing` turns data journalling on for the file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Journal {
    No,
    /// chattr +j before anything is spliced: no holds are taken.
    Before,
    /// chattr +j while the first splice holds pages (holds taken under the
    /// ordered aops, writers then journalled).
    WhileHeld,
}

/// Zeroing inside the file: fallocate's punch hole and zero range over
/// parts of pages, and a truncate into the middle of a page, with the
/// spliced range held; optionally with chattr +j.
fn zeroing(ctx: &Ctx, flags: u32, journal: Journal) -> TResult {
    let f = tmpfile(&ctx.dir)?;
    if journal == Journal::Before && !chattr_j(f.fd.raw()) {
        skip!("chattr +j not supported here: {}", ename(errno()));
    }
    let a = pattern(0x3c, 0, LEN);
    pwrite_all(f.fd.raw(), &a, 0)?;
    settle_page_cache(f.fd.raw(), LEN)?;
    if journal == Journal::WhileHeld {
        let p = pipe()?;
        splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
        if !chattr_j(f.fd.raw()) {
            skip!("chattr +j not supported here: {}", ename(errno()));
        }
        pwrite_all(f.fd.raw(), &pattern(0x3d, 0, 100), 2 * PAGE + 7)?;
        // SAFETY: fallocate on our own descriptor.
        ensure!(
            unsafe { libc::fallocate(f.fd.raw(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 100, PAGE as i64) } == 0,
            "punch hole: {}",
            ename(errno())
        );
        let now = pread_vec(f.fd.raw(), LEN, 0)?;
        stable_or_control(flags, "pipe after chattr +j, a write and a punch", &read_pipe(&p.r, LEN)?, &a, &now)?;
    }
    let mut ops = 0;
    for (mode, off, len) in [
        (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 100, PAGE),
        (libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, PAGE + 300, PAGE),
    ] {
        let p = pipe()?;
        pwrite_all(f.fd.raw(), &a, 0)?;
        splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
        // SAFETY: fallocate on our own descriptor.
        if unsafe { libc::fallocate(f.fd.raw(), mode, off as i64, len as i64) } != 0 {
            if errno() == libc::EOPNOTSUPP {
                continue;
            }
            fail!("fallocate({mode:#x}): {}", ename(errno()));
        }
        ops += 1;
        let now = pread_vec(f.fd.raw(), LEN, 0)?;
        ensure!(now != a, "fallocate({mode:#x}) did not change the file");
        let got = read_pipe(&p.r, LEN)?;
        stable_or_control(flags, &format!("pipe after fallocate({mode:#x})"), &got, &a, &now)?;
    }
    let p = pipe()?;
    pwrite_all(f.fd.raw(), &a, 0)?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
    ftruncate(f.fd.raw(), 2 * PAGE + 100)?;
    ftruncate(f.fd.raw(), LEN)?;
    let now = pread_vec(f.fd.raw(), LEN, 0)?;
    let got = read_pipe(&p.r, LEN)?;
    stable_or_control(flags, "pipe after truncate and extend", &got, &a, &now)?;
    ctx.note(format!("{ops} fallocate modes supported here"));
    if flags != 0 {
        ensure!(counter("break_failures") == Some(0), "break_failures = {:?}", counter("break_failures"));
    }
    Ok(())
}

pub fn holds_zeroing(ctx: &Ctx) -> TResult {
    zeroing(ctx, stable(), Journal::No)
}
pub fn holds_zeroing_chattr_j(ctx: &Ctx) -> TResult {
    zeroing(ctx, stable(), Journal::Before)
}
pub fn holds_zeroing_chattr_j_while_held(ctx: &Ctx) -> TResult {
    zeroing(ctx, stable(), Journal::WhileHeld)
}
pub fn plain_zeroing(ctx: &Ctx) -> TResult {
    zeroing(ctx, 0, Journal::No)
}

/// Collapsing and inserting a range (`FALLOC_FL_COLLAPSE_RANGE`,
/// `FALLOC_FL_INSERT_RANGE`) move every byte behind the offset: the file
/// systems write the range back and truncate the page cache from there,
/// which zeroes the folio the offset falls into from there to its end (and
/// only then tries to split it). The file is written in one piece, so on a
/// kernel with large folios the offset, 9 pages in, lies inside a folio the
/// pipe has; plain splice then shows the zeroes.
fn shifting(ctx: &Ctx, flags: u32) -> TResult {
    const FILE: usize = 1 << 20;
    const SPLICED: usize = 16 * PAGE;
    let (off, len) = (9 * PAGE, PAGE);
    let f = tmpfile(&ctx.dir)?;
    let a = pattern(0x4e, 0, FILE);
    let mut ops = 0;
    for (mode, what) in [(libc::FALLOC_FL_COLLAPSE_RANGE, "collapse range"), (libc::FALLOC_FL_INSERT_RANGE, "insert range")] {
        ftruncate(f.fd.raw(), 0)?;
        pwrite_all(f.fd.raw(), &a, 0)?;
        settle_page_cache(f.fd.raw(), SPLICED)?;
        let p = pipe()?;
        splice_exact(f.fd.raw(), 0, p.w.raw(), SPLICED, flags)?;
        // SAFETY: fallocate on our own descriptor.
        if unsafe { libc::fallocate(f.fd.raw(), mode, off as i64, len as i64) } != 0 {
            match errno() {
                libc::EOPNOTSUPP => continue,
                e => fail!("fallocate({what}, {off}, {len}): {}", ename(e)),
            }
        }
        ops += 1;
        let want: Vec<u8> = match mode {
            libc::FALLOC_FL_COLLAPSE_RANGE => [&a[..off], &a[off + len..]].concat(),
            _ => [&a[..off], &vec![0; len][..], &a[off..]].concat(),
        };
        let now = pread_vec(f.fd.raw(), FILE + len, 0)?;
        expect_bytes(&format!("file after {what}"), &now, &want, None)?;
        let got = read_pipe(&p.r, SPLICED)?;
        stable_or_control(flags, &format!("pipe after {what}"), &got, &a[..SPLICED], &now[..SPLICED])?;
    }
    if ops == 0 {
        skip!("neither collapse nor insert range is supported here (EOPNOTSUPP)");
    }
    ctx.note(format!("{ops} of collapse and insert range supported here"));
    if flags != 0 {
        ensure!(counter("break_failures") == Some(0), "break_failures = {:?}", counter("break_failures"));
    }
    Ok(())
}

pub fn holds_shift_ranges(ctx: &Ctx) -> TResult {
    shifting(ctx, stable())
}
pub fn plain_shift_ranges(ctx: &Ctx) -> TResult {
    shifting(ctx, 0)
}

/// A file copied onto itself a little further on through a pipe: file ->
/// pipe, then the pipe -> the same file at +100 bytes (a splice-based
/// in-file copy, or a server that writes back what it just read). The
/// write reads the pipe's buffers, and with plain splice those are the
/// page-cache folios it is writing: each page is copied onto itself and
/// the next one takes its tail from the page just changed. With the flag
/// the write's lookup breaks each hold first, so it reads the snapshot and
/// writes the copy: the file is A shifted by 100 bytes.
fn splice_back_shifted(ctx: &Ctx, held: bool) -> TResult {
    const SHIFT: usize = 100;
    let len = 4 * PAGE;
    let (f, a, _b) = file_ab(ctx, len)?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), len, stable_if(held))?;
    splice_pipe_into(p.r.raw(), f.fd.raw(), SHIFT, len, 0)?;
    let want = [&a[..SHIFT], &a[..]].concat();
    let now = pread_vec(f.fd.raw(), len + SHIFT, 0)?;
    if !held {
        // The hazard is in the file here: it differs from A shifted.
        return control("the file after its pipe went back into it", &now, &want);
    }
    expect_bytes("the file after its pipe went back into it, 100 bytes on", &now, &want, None)?;
    ensure!(counter("break_failures") == Some(0), "break_failures = {:?}", counter("break_failures"));
    Ok(())
}

pub fn holds_splice_back_shifted(ctx: &Ctx) -> TResult {
    splice_back_shifted(ctx, true)
}
pub fn plain_splice_back_shifted(ctx: &Ctx) -> TResult {
    splice_back_shifted(ctx, false)
}

/// ext4's extent swap (`EXT4_IOC_MOVE_EXT`, what `e4defrag` runs) with
/// both files' folios held: it looks them up for writing inside a journal
/// handle (`FGP_WRITEBEGIN`), so holds are broken there, under ext4's own
/// lock order, and it must still move every block. The original keeps its
/// bytes (written into the donor's blocks, read back from the disk past
/// the page cache); the donor gets the original's old blocks. Each pipe
/// keeps what was spliced. Plain splice shows no hazard here (the swap
/// writes no held folio's bytes): this guards the swap, not the snapshot.
pub fn holds_ext4_move_extent(ctx: &Ctx) -> TResult {
    #[repr(C)]
    struct MoveExtent {
        reserved: u32,
        donor_fd: u32,
        orig_start: u64,
        donor_start: u64,
        len: u64,
        moved_len: u64,
    }
    const EXT4_IOC_MOVE_EXT: libc::c_ulong = 0xc028_660f;
    const LEN: usize = 16 * PAGE;
    let (orig, a, b) = file_ab(ctx, LEN)?;
    let donor = tmpfile(&ctx.dir)?;
    pwrite_all(donor.fd.raw(), &b, 0)?;
    for fd in [orig.fd.raw(), donor.fd.raw()] {
        // The swap skips delalloc extents.
        fsync(fd)?;
    }
    settle_page_cache(donor.fd.raw(), LEN)?;
    let (po, pd) = (pipe()?, pipe()?);
    splice_exact(orig.fd.raw(), 0, po.w.raw(), LEN, stable())?;
    splice_exact(donor.fd.raw(), 0, pd.w.raw(), LEN, stable())?;
    let breaks = counter("breaks").unwrap_or(0);
    let blocks = (LEN / PAGE) as u64; // 4 KiB blocks, as the mounts are made
    let mut me = MoveExtent { reserved: 0, donor_fd: donor.fd.raw() as u32, orig_start: 0, donor_start: 0, len: blocks, moved_len: 0 };
    // SAFETY: the ioctl reads and writes `me`, alive for the call.
    if unsafe { libc::ioctl(orig.fd.raw(), EXT4_IOC_MOVE_EXT, &mut me) } != 0 {
        match errno() {
            libc::ENOTTY | libc::EOPNOTSUPP => skip!("EXT4_IOC_MOVE_EXT: {} (not ext4, or journalled data)", ename(errno())),
            e => fail!("EXT4_IOC_MOVE_EXT with held folios: {}", ename(e)),
        }
    }
    ensure!(me.moved_len == blocks, "EXT4_IOC_MOVE_EXT moved {} of {blocks} blocks", me.moved_len);
    ctx.note(format!("{} breaks by the extent swap", counter("breaks").unwrap_or(0) - breaks));
    expect_bytes("pipe of the original", &read_pipe(&po.r, LEN)?, &a, None)?;
    expect_bytes("pipe of the donor", &read_pipe(&pd.r, LEN)?, &b, None)?;
    expect_bytes("original after the swap (page cache)", &pread_vec(orig.fd.raw(), LEN, 0)?, &a, None)?;
    let disk = fsync_and_read_disk(orig.fd.raw(), LEN)?;
    expect_bytes("original on disk after the swap (O_DIRECT)", &disk, &a, Some(("the donor's bytes", &b)))?;
    ensure!(counter("break_failures") == Some(0), "break_failures = {:?}", counter("break_failures"));
    Ok(())
}

/// ext4 files with inline data (`mkfs.ext4 -O inline_data`; the scratch
/// mounts `ext4-inline`, delayed allocation, and `ext4-inline-nodelalloc`,
/// run once, from the `ext4` run): the page of a file small enough to live
/// in its inode is read from the inode into a folio without buffer heads,
/// and ext4 looks that folio up inside a journal handle to write it, where
/// a break must not wait for writeback (an inline write on both mounts,
/// the conversion to extents without delayed allocation). Writers of a
/// held inline file: a write that stays inline, one that converts the file
/// to extents, a store through a mapping (`page_mkwrite` converts), and a
/// store into the dirty folio that a delayed conversion left (the data
/// still in the inode until writeback). Each pipe keeps its snapshot, each
/// writer succeeds (no `ENOMEM`, no break retried or failed), and the file
/// has its write in the page cache and, after fsync and eviction, where
/// ext4 keeps it (the inline flag as the write leaves it). The control: a
/// plain pipe of an inline file shows the inline write.
pub fn holds_ext4_inline_data(ctx: &Ctx) -> TResult {
    if !ctx.dir.trim_end_matches('/').ends_with("/ext4") {
        skip!("the inline-data mounts are tested from the ext4 run");
    }
    let base = std::env::var("SS_FS_BASE").unwrap_or_else(|_| "/tmp/ss".into());
    let mut tested = 0;
    for mount in ["ext4-inline", "ext4-inline-nodelalloc"] {
        let dir = format!("{base}/{mount}");
        if std::path::Path::new(&dir).is_dir() {
            inline_data_writers(ctx, &dir)?;
            tested += 1;
        }
    }
    if tested == 0 {
        skip!("no {base}/ext4-inline*: the harness made no inline-data file system");
    }
    Ok(())
}

fn inline_data_writers(ctx: &Ctx, dir: &str) -> TResult {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_INLINE_DATA_FL: libc::c_long = 0x1000_0000;
    const SMALL: usize = 50; // fits in i_block (60 bytes)
    let inline = |fd: i32| -> TResult<bool> {
        let mut flags: libc::c_long = 0;
        // SAFETY: the ioctl writes a long into `flags`, alive for the call.
        ensure!(unsafe { libc::ioctl(fd, FS_IOC_GETFLAGS, &mut flags) } == 0, "FS_IOC_GETFLAGS: {}", ename(errno()));
        Ok(flags & FS_INLINE_DATA_FL != 0)
    };
    let small = |seed: u8| -> TResult<(TestFile, Vec<u8>)> {
        let f = tmpfile(dir)?;
        let a = pattern(seed, 0, SMALL);
        pwrite_all(f.fd.raw(), &a, 0)?;
        fsync(f.fd.raw())?;
        ensure!(inline(f.fd.raw())?, "{dir}: a {SMALL}-byte file has no inline data");
        settle_page_cache(f.fd.raw(), SMALL)?;
        Ok((f, a))
    };
    let with = |a: &[u8], at: std::ops::Range<usize>| {
        let mut v = a.to_vec();
        v[at].fill(0xa1);
        v
    };
    let k = |name| counter(name).unwrap_or(0);

    // The control: ext4 writes an inline file's cached folio in place.
    let (f, a) = small(0x31)?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), SMALL, 0)?;
    pwrite_all(f.fd.raw(), &[0xa1; 10], 5)?;
    expect_bytes(&format!("{dir}: plain pipe of an inline file (control)"), &read_pipe(&p.r, SMALL)?, &with(&a, 5..15), Some(("snapshot", &a)))?;
    drop(f);

    let (retried, failures, breaks) = (k("breaks_retried"), k("break_failures"), k("breaks"));
    for (how, seed) in [("inline write", 0x32u8), ("converting write", 0x33), ("store", 0x34), ("store after a converting write", 0x35)] {
        let (f, mut a) = small(seed)?;
        let fd = f.fd.raw();
        if how == "store after a converting write" {
            // Delayed allocation: a dirty folio with buffers, the bytes
            // still in the inode until writeback.
            a = pattern(!seed, 0, 2 * PAGE);
            pwrite_all(fd, &a, 0)?;
        }
        let p = pipe()?;
        // SAFETY: fcntl on our own pipe.
        unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, (2 * PAGE) as i32) };
        splice_exact(fd, 0, p.w.raw(), a.len(), stable())?;
        let (now, still_inline) = match how {
            "inline write" => {
                pwrite_all(fd, &[0xa1; 10], 5)?;
                (with(&a, 5..15), true)
            }
            "converting write" => {
                let b = pattern(seed ^ 0x55, 0, 2 * PAGE);
                pwrite_all(fd, &b, 0)?;
                (b, false)
            }
            _ => {
                let map = Map::shared_file(fd, PAGE)?;
                map.store(3, &[0xa1; 4]);
                (with(&a, 3..7), false)
            }
        };
        let snap = read_pipe(&p.r, a.len())?;
        expect_bytes(&format!("{dir}: stable pipe of an inline file after a {how}"), &snap, &a, Some(("write", &now[..a.len()])))?;
        expect_bytes(&format!("{dir}: {how}: the file (page cache)"), &pread_vec(fd, now.len(), 0)?, &now, Some(("snapshot", &a)))?;
        fsync(fd)?;
        // SAFETY: fadvise on our own descriptor.
        ensure!(unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) } == 0, "fadvise");
        expect_bytes(&format!("{dir}: {how}: the file after fsync and eviction"), &pread_vec(fd, now.len(), 0)?, &now, Some(("snapshot", &a)))?;
        ensure!(inline(fd)? == still_inline, "{dir}: after a {how} and fsync the file {} inline data", if still_inline { "lost its" } else { "kept" });
    }
    ctx.note(format!("{dir}: {} breaks of held inline files", k("breaks") - breaks));
    ensure!(k("breaks_retried") == retried, "{dir}: {} breaks retried: a writer of an inline file may have failed", k("breaks_retried") - retried);
    ensure!(k("break_failures") == failures, "{dir}: {} break failures", k("break_failures") - failures);
    Ok(())
}

/// A shrinking truncate while another thread keeps starting writeback of
/// the dirty, held pages: writeback zeroes a page beyond i_size in place.
fn truncate_vs_writeback(ctx: &Ctx, flags: u32) -> TResult {
    let len = 16 * PAGE;
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU32::new(0));
    let flusher = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: sync_file_range on our own descriptor.
                unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, len as i32) };
    let mut bad = None;
    // Up to 300 rounds, within the case's timeout on a loaded emulator
    // (data=journal under TCG on a busy host: over 20 s for 300).
    let t0 = Instant::now();
    let mut iters = 0;
    for i in 0..300 {
        if i >= 50 && t0.elapsed() > Duration::from_secs(10) {
            break;
        }
        iters += 1;
        let a = pattern(i as u8 | 1, 0, len);
        pwrite_all(fd, &a, 0)?;
        splice_exact(fd, 0, p.w.raw(), len, flags)?;
        let cut = 3 * PAGE + 100 + (i % 7) * PAGE;
        ftruncate(fd, cut)?;
        let got = read_pipe(&p.r, len)?;
        if got != a && bad.is_none() {
            let at = got.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(0);
            bad = Some(format!("iteration {i}: byte {at} changed (truncate to {cut})"));
        }
        ftruncate(fd, 0)?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flusher.join();
    ctx.note(format!("{iters} truncates against {} writeback kicks", rounds.load(Ordering::Relaxed)));
    match (flags, bad) {
        (0, None) => skip!("plain splice: no change seen in {iters} iterations"),
        (0, Some(_)) => Ok(()),
        (_, Some(b)) => fail!("{b}"),
        (_, None) => Ok(()),
    }
}

pub fn holds_truncate_vs_writeback(ctx: &Ctx) -> TResult {
    truncate_vs_writeback(ctx, stable())
}
pub fn plain_truncate_vs_writeback(ctx: &Ctx) -> TResult {
    truncate_vs_writeback(ctx, 0)
}

/// An IORING_OP_SPLICE with the flag, linked behind a read that waits on an
/// empty pipe: prepared (accepted) at once, issued only later. Meanwhile
/// the module must stay pinned; issued, it is a stable splice; cancelled
/// with the ring, it lets go.
pub fn holds_io_uring_prep_pins_module(ctx: &Ctx) -> TResult {
    let (f, a, b) = file_ab(ctx, LEN)?;
    let gate = pipe()?;
    let out = pipe()?;
    let mut junk = [0u8; 8];
    let mut chain = |ring: &mut uring::Uring| {
        ring.submit(&[
            uring::Sqe {
                opcode: uring::IORING_OP_READ,
                flags: uring::IOSQE_IO_LINK,
                fd: gate.r.raw(),
                addr: junk.as_mut_ptr() as u64,
                len: 1,
                off: u64::MAX,
                user_data: 1,
                ..Default::default()
            },
            uring::splice_from_file(f.fd.raw(), out.w.raw(), LEN, SPLICE_F_STABLE, 2),
        ])
    };
    // Files with holds pin the module too: measure with none held (the
    // runner leaves none behind between cases; the splice below is issued
    // only after `pinned` is read).
    ensure!(wait_holds_released(Duration::from_secs(5)), "holds left from before: {:?}", counter("holds_active"));
    let pins = module_refcnt;
    let before = pins().ok_or_else(|| TestErr::Fail("no /sys/module/stable_splice/refcnt".into()))?;
    let mut ring = uring::setup_or_skip(8)?;
    chain(&mut ring)?;
    let pinned = pins().unwrap_or(0);
    let rmmod = std::process::Command::new("rmmod").arg("stable_splice").output();
    let loaded = module_refcnt().is_some();
    ctx.note(format!("refcnt {before} -> {pinned} with the request prepared; rmmod: {:?}", rmmod.as_ref().map(|o| o.status)));
    ensure!(loaded, "rmmod unloaded the module while an accepted IORING_OP_SPLICE waited for issue");
    ensure!(pinned > before, "the prepared request holds no module reference ({before} -> {pinned})");
    // Open the gate: the read completes, the splice is issued.
    write_all(gate.w.raw(), b"g")?;
    let mut cqes = ring.wait(2)?;
    cqes.sort();
    ensure!(cqes == vec![(1, 1), (2, LEN as i32)], "completions {cqes:?}");
    pwrite_all(f.fd.raw(), &b, 0)?;
    expect_bytes("pipe", &read_pipe(&out.r, LEN)?, &a, Some(("the new content", &b)))?;
    // Cancelled before issue: closing the ring ends the chain.
    chain(&mut ring)?;
    drop(ring);
    // The issued splice's holds were broken by the write; any left end
    // once idle.
    let back = wait_holds_released(Duration::from_secs(5)) && wait_until(Duration::from_secs(5), || pins() == Some(before));
    ensure!(back, "refcnt {:?} after the ring with a cancelled request closed, was {before}", pins());
    Ok(())
}

/// The reaper ends holds in batches (64) and lets go of its lock between
/// them. Whatever number of holds a file had, a batch's multiple
/// included, once they are reaped the file's registry entry goes too: its
/// module reference is back and rmmod works. (A batch that ended a file's
/// last holds right at the pause left the entry, and the module pinned,
/// for good.)
pub fn holds_reaped_release_module(ctx: &Ctx) -> TResult {
    holds_case(ctx)?;
    let before = module_refcnt().ok_or_else(|| TestErr::Fail("no /sys/module/stable_splice/refcnt".into()))?;
    for want in [64u64, 128, 65] {
        // Written a page at a time: small folios (a hold each) where the
        // file system would otherwise cache one large folio.
        let pages = 2 * want as usize + 16;
        let f = tmpfile(&ctx.dir)?;
        let a = pattern(want as u8, 0, pages * PAGE);
        for (i, page) in a.chunks(PAGE).enumerate() {
            pwrite_all(f.fd.raw(), page, i * PAGE)?;
        }
        settle_page_cache(f.fd.raw(), pages * PAGE)?;
        let p = pipe()?;
        let base = counter("holds_active").unwrap_or(0);
        // A page per splice until exactly `want` holds are taken (a page
        // of a folio already held joins its hold).
        let mut held = 0;
        for i in 0..pages {
            splice_exact(f.fd.raw(), i * PAGE, p.w.raw(), PAGE, stable())?;
            expect_bytes("pipe", &read_pipe(&p.r, PAGE)?, &a[i * PAGE..][..PAGE], None)?;
            held = counter("holds_active").unwrap_or(0).saturating_sub(base);
            if held >= want {
                break;
            }
        }
        ctx.note(format!("{held} holds taken on a {pages}-page file"));
        ensure!(held == want, "{held} holds taken, wanted exactly {want} (zero copy did not happen?)");
        drop(p);
        ensure!(wait_holds_released(Duration::from_secs(10)), "{want} holds: {:?} left after 10 s", counter("holds_active"));
        let back = wait_until(Duration::from_secs(5), || module_refcnt() == Some(before));
        ensure!(back, "{want} holds reaped, module refcnt {:?}, was {before}: a file entry kept the module", module_refcnt());
    }
    Ok(())
}

/// A descriptor that flips between a file and a pipe (`dup2` in another
/// thread) while stable splices read from it: no stable splice may ever
/// take its data from the pipe.
pub fn holds_pipe_source_dup2_race(ctx: &Ctx) -> TResult {
    let (f, _a, _b) = file_ab(ctx, PAGE)?;
    let src = pipe()?;
    // SAFETY: dup of our own descriptor.
    let fd = ck(cvt(unsafe { libc::dup(f.fd.raw()) } as isize), "dup")? as i32;
    let _fd_guard = Fd(fd);
    let stop = Arc::new(AtomicBool::new(false));
    let (ffd, pfd) = (f.fd.raw(), src.r.raw());
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: dup2 onto a descriptor this case owns.
                unsafe { libc::dup2(if n % 2 == 0 { pfd } else { ffd }, fd) };
                n += 1;
            }
        })
    };
    let out = pipe()?;
    set_nonblock(out.r.raw(), true)?;
    let marker = vec![0xeeu8; 64];
    let (mut from_pipe, mut tries) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // Keep data in the source pipe so a splice from it would succeed.
        if pipe_queued(src.r.raw()).unwrap_or(0) < 64 {
            write_all(src.w.raw(), &marker)?;
        }
        match splice_raw(fd, None, out.w.raw(), None, 64, SPLICE_F_STABLE | SPLICE_F_NONBLOCK) {
            Ok(0) => {
                // The file's offset reached its end: start over.
                // SAFETY: lseek on our own descriptor.
                unsafe { libc::lseek(ffd, 0, libc::SEEK_SET) };
            }
            Ok(n) => {
                let got = read_pipe(&out.r, n)?;
                if got.iter().all(|&x| x == 0xee) {
                    from_pipe += 1;
                }
            }
            Err(_) => {}
        }
        tries += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    ctx.note(format!("{tries} stable splices from a flipping descriptor"));
    ensure!(from_pipe == 0, "{from_pipe} stable splices took their data from a pipe");
    Ok(())
}

/// An unprivileged splice storm against a privileged writer: four
/// processes as `nobody` stable-splice a root-owned 0644 file round and
/// round (taking, joining and dropping holds) while root rewrites pages of
/// it. Reports root's longest and 99th-percentile write beside that storm,
/// beside the same storm of plain splices and alone (numbers for people,
/// not asserted: timing under TCG is no contract) and checks that every
/// write landed.
pub fn holds_splice_storm(ctx: &Ctx) -> TResult {
    const PAGES: usize = 64;
    let f = named_file(&ctx.dir, 0o644)?;
    pwrite_all(f.fd.raw(), &pattern(0x41, 0, PAGES * PAGE), 0)?;
    let path = f.path.clone().unwrap_or_default();
    let writes = 400;
    // Root's writes, timed: the longest one and the 99th percentile.
    let write_all = |gen: usize| -> TResult<(Duration, Duration)> {
        let mut times = Vec::with_capacity(writes);
        for i in 0..writes {
            let page = (i * 7) % PAGES;
            let t = Instant::now();
            pwrite_all(f.fd.raw(), &pattern((i + gen) as u8 | 1, page * PAGE, PAGE), page * PAGE)?;
            times.push(t.elapsed());
        }
        times.sort();
        Ok((times[writes - 1], times[writes * 99 / 100]))
    };
    // Root's writes beside four unprivileged splicers of the file that
    // splice with `flags` and drain as fast as they can.
    let beside_storm = |flags: u32, gen: usize| -> TResult<(Duration, Duration)> {
        let stop = pipe()?; // closed by the parent to stop the children
        let mut kids = Vec::new();
        for _ in 0..4 {
            let (path, stop_r, stop_w) = (path.clone(), stop.r.raw(), stop.w.raw());
            kids.push(fork_child(move || {
                // SAFETY: the child's copy of the parent's end; EOF on `stop_r`
                // must come from the parent alone.
                unsafe { libc::close(stop_w) };
                let Ok(fd) = open(&path, libc::O_RDONLY, 0) else { return 2 };
                // SAFETY: dropping privileges in the child.
                if unsafe { libc::setgid(65534) } != 0 || unsafe { libc::setuid(65534) } != 0 {
                    return 3;
                }
                let Ok(p) = pipe() else { return 4 };
                // SAFETY: fcntl on our own pipe.
                unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, (PAGES * PAGE) as i32) };
                let mut buf = vec![0u8; PAGES * PAGE];
                let mut n = 0u64;
                while !poll_in(stop_r, 0) {
                    let mut off = 0i64;
                    match splice_raw(fd.raw(), Some(&mut off), p.w.raw(), None, PAGES * PAGE, flags) {
                        // SAFETY: draining into our own buffer.
                        Ok(k) => unsafe { libc::read(p.r.raw(), buf.as_mut_ptr().cast(), k) },
                        Err(_) => return 5,
                    };
                    n += 1;
                }
                if n > 0 { 0 } else { 6 }
            })?);
        }
        std::thread::sleep(Duration::from_millis(300));
        let worst = write_all(gen);
        drop(stop.w);
        let mut bad = Vec::new();
        for pid in kids {
            match wait_child(pid, Duration::from_secs(20)) {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
                Some(st) => bad.push(describe_status(st)),
                None => {
                    kill_child(pid);
                    bad.push("did not stop".into());
                }
            }
        }
        ensure!(bad.is_empty(), "unprivileged splicers (flags {flags:#x}): {bad:?}");
        worst
    };
    let alone = write_all(1)?;
    // The same storm of plain splices: what any four busy readers cost a
    // writer on these CPUs, whatever the module does.
    let plain = beside_storm(0, 2)?;
    let stable = beside_storm(SPLICE_F_STABLE, 0)?;
    // The last write to each page is what the file must hold.
    let mut want = pattern(0x41, 0, PAGES * PAGE);
    for i in 0..writes {
        let page = (i * 7) % PAGES;
        want[page * PAGE..(page + 1) * PAGE].copy_from_slice(&pattern(i as u8 | 1, page * PAGE, PAGE));
    }
    expect_bytes("file after the storm", &pread_vec(f.fd.raw(), PAGES * PAGE, 0)?, &want, None)?;
    ctx.note(format!(
        "root's 4 KiB pwrite, longest / p99: beside the stable storm {:?} / {:?}, beside a plain one {:?} / {:?}, alone {:?} / {:?} ({writes} writes each; breaks so far {:?})",
        stable.0,
        stable.1,
        plain.0,
        plain.1,
        alone.0,
        alone.1,
        counter("breaks")
    ));
    Ok(())
}

/// A file served over loopback TCP from one CPU to a receiver on another:
/// once the receiver has every byte and both sockets are closed, nothing
/// references the folios any more and every hold ends. The receiver frees
/// the skbs on the sender's CPU (`skb_attempt_defer_free`), at its next
/// network softirq: an idle sender CPU keeps them, with their references
/// to the held folios, until then (the waits raise that softirq on every
/// CPU). A leaked folio reference fails it.
pub fn holds_end_after_tcp_to_other_cpu(ctx: &Ctx) -> TResult {
    const FILE: usize = 1 << 20;
    const CHUNK: usize = 64 << 10;
    // SAFETY: sysconf has no memory effects.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        skip!("one CPU: the receiver frees its skbs where they were allocated");
    }
    holds_case(ctx)?;
    let (f, a, _) = file_ab_written(ctx, FILE, FILE)?;
    let (tx, rx) = tcp_pair()?;
    let receiver = std::thread::spawn(move || -> TResult<Vec<u8>> {
        stable_splice_sys::pin_thread(1).map_err(|e| TestErr::Fail(format!("pin the receiver to CPU 1: {e}")))?;
        recv_exact(&rx, FILE)
    });
    let sender = {
        let fd = f.fd.raw();
        std::thread::spawn(move || -> TResult {
            stable_splice_sys::pin_thread(0).map_err(|e| TestErr::Fail(format!("pin the sender to CPU 0: {e}")))?;
            let p = pipe()?;
            for off in (0..FILE).step_by(CHUNK) {
                splice_exact(fd, off, p.w.raw(), CHUNK, stable())?;
                let mut left = CHUNK;
                while left > 0 {
                    left -= ck(splice_raw(p.r.raw(), None, tx.raw(), None, left, 0), "splice pipe -> socket")?;
                }
            }
            Ok(())
        })
    };
    sender.join().map_err(|_| TestErr::Fail("the sender panicked".into()))??;
    let got = receiver.join().map_err(|_| TestErr::Fail("the receiver panicked".into()))??;
    expect_bytes("bytes the receiver got", &got, &a, None)?;
    let left = counter("holds_active").unwrap_or(0);
    ctx.note(format!("{left} holds active once both sockets were closed"));
    ensure!(
        wait_holds_released(Duration::from_secs(10)),
        "{:?} holds outlived every reader of the file: {}",
        counter("holds_active"),
        holds_report(8)
    );
    Ok(())
}

/// debugfs `holds` says what is held and what keeps it: while a pipe has
/// a stable splice's pages, the file (by inode number) with one line per
/// held folio, each referenced by the page cache, the hold and the pipe
/// (`extra` >= 2); once the pipe is gone and the holds are reaped, nothing.
pub fn holds_debugfs_report(ctx: &Ctx) -> TResult {
    holds_case(ctx)?;
    const PAGES: usize = 8;
    // A page at a time: small folios, a hold each.
    let (f, _, _) = file_ab_written(ctx, PAGES * PAGE, PAGE)?;
    // SAFETY: fstat into a zeroed struct of ours.
    let ino = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        ensure!(libc::fstat(f.fd.raw(), &mut st) == 0, "fstat: {}", ename(errno()));
        st.st_ino
    };
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), PAGES * PAGE, stable())?;
    let held = counter("holds_active").unwrap_or(0);
    let report = std::fs::read_to_string(format!("{COUNTER_DIR}/holds")).map_err(|e| TestErr::Fail(format!("holds: {e}")))?;
    let ours: Vec<&str> = report.lines().filter(|l| l.contains(&format!(" ino {ino} "))).collect();
    ctx.note(format!("{held} holds; the report's lines for inode {ino}: {}", ours.len()));
    ensure!(held > 0, "no holds after a stable splice of a settled file (zero copy did not happen?)");
    ensure!(
        report.lines().any(|l| l.starts_with("file ") && l.contains(&format!(" holds {held} "))),
        "no file line with {held} holds in the report: {report}"
    );
    ensure!(ours.len() as u64 == held, "{} folio lines for inode {ino}, {held} holds: {report}", ours.len());
    for line in &ours {
        let extra: i64 = line
            .split(" extra ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| TestErr::Fail(format!("no extra count in {line:?}")))?;
        ensure!(extra >= 2, "a held folio in the pipe shows {extra} extra references (hold + pipe >= 2): {line:?}");
        ensure!(!line.contains(" gone"), "a held folio still in the file shows as gone: {line:?}");
    }
    drop(p);
    ensure!(wait_holds_released(Duration::from_secs(5)), "{:?} holds left after the pipe closed", counter("holds_active"));
    let after = std::fs::read_to_string(format!("{COUNTER_DIR}/holds")).unwrap_or_default();
    ensure!(after.trim().is_empty(), "the report after every hold ended: {after}");
    Ok(())
}

/// A writer into held folios that are dirty (written, not yet written
/// back): the break moves the folio's file-system state (buffer heads,
/// iomap's per-folio state) and its dirtiness to the copy, as migration
/// does, without a writeback (`breaks_dirty`, not `breaks_written_back`).
/// The pipe keeps the old bytes; the new bytes reach the disk with the
/// next fsync, read back with O_DIRECT (past the page cache). Files
/// written a page at a time (small folios) and in one write (large folios
/// where the kernel caches them).
pub fn holds_dirty_break_moves_state(ctx: &Ctx) -> TResult {
    break_moves_state(ctx, true)
}

/// The same for held folios that are clean but carry their file-system
/// state (written and fsynced, still cached): the break moves it to the
/// copy too (a buffer head left pointing at the old folio would write the
/// pipe's bytes to the disk), and the writer's bytes reach the disk.
pub fn holds_clean_break_moves_state(ctx: &Ctx) -> TResult {
    break_moves_state(ctx, false)
}

fn break_moves_state(ctx: &Ctx, dirty: bool) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    const LEN: usize = 64 * PAGE;
    for (what, chunk) in [("small folios", PAGE), ("one write", LEN)] {
        let f = named_file(&ctx.dir, 0o600)?;
        let fd = f.fd.raw();
        let (a, new) = (pattern(0x11, 0, LEN), pattern(0x77, 0, LEN));
        for (i, c) in a.chunks(chunk).enumerate() {
            pwrite_all(fd, c, i * chunk)?;
        }
        // Out of the LRU batches; still dirty (drop_caches keeps those).
        settle_page_cache(fd, LEN)?;
        if !dirty {
            fsync(fd)?;
        }
        let k = |name| counter(name).unwrap_or(0);
        let (breaks, moved, written_back, zc) = (k("breaks"), k("breaks_dirty"), k("breaks_written_back"), k("bytes_zero_copy"));
        let p = pipe()?;
        // SAFETY: fcntl on our own pipe.
        unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
        splice_exact(fd, 0, p.w.raw(), LEN, stable())?;
        let held = k("bytes_zero_copy") - zc;
        let large = large_pages(fd, LEN)?;
        let splits = k("breaks_split");
        for (i, c) in new.chunks(PAGE).enumerate() {
            pwrite_all(fd, c, i * PAGE)?;
        }
        let splits = k("breaks_split") - splits;
        let (breaks, moved, written_back) = (k("breaks") - breaks, k("breaks_dirty") - moved, k("breaks_written_back") - written_back);
        ctx.note(format!(
            "{what}: {held} bytes held ({large} pages in large folios), {breaks} breaks, {splits} split, \
             {moved} with the dirty state moved, {written_back} writebacks"
        ));
        expect_bytes("pipe", &read_pipe(&p.r, LEN)?, &a, Some(("the new content", &new)))?;
        ensure!(held > 0 && breaks > 0, "{what}: nothing held and broken ({held} bytes held, {breaks} breaks)");
        let want_dirty = if dirty { breaks } else { 0 };
        ensure!(moved == want_dirty, "{what}: {moved} of {breaks} breaks moved a dirty state, want {want_dirty}");
        ensure!(written_back == 0, "{what}: {written_back} writebacks for breaks of held folios");
        let disk = fsync_and_read_disk(fd, LEN).map_err(|e| TestErr::Fail(format!("{what}: {e}")))?;
        expect_bytes(&format!("{what}: the disk after fsync (O_DIRECT)"), &disk, &new, Some(("the old content", &a)))?;
        expect_bytes(&format!("{what}: the page cache"), &pread_vec(fd, LEN, 0)?, &new, Some(("the old content", &a)))?;
        if large > 0 {
            split_pages_break_alone(fd, &new, splits)?;
        }
    }
    Ok(())
}

/// A hold's entry owns no reference: once its reader drained the pipe and
/// the folio left the page cache (here an O_DIRECT write of new bytes
/// takes it out), the entry stays until a writer, the reaper or eviction
/// takes it out, and the folio's memory may come back at once as the new
/// folio a buffered write's lookup makes at the same index of the same
/// file, not read yet, with the LRU add batch's reference on it. That
/// folio may be broken (the module cannot tell it from a held folio whose
/// reader is slow), but a write of part of its page must still read the
/// rest from the file: the O_DIRECT write's bytes. Until this was found
/// (holds_exerciser on xfs in CI, then with reclaim beside it) the copy
/// was marked uptodate, and the file read whatever the new folio's memory
/// had (zeros) after the written bytes.
/// Counts the rounds where the write met the stale entry (a break of the
/// new folio, which the entry matched by its address: the same page
/// again), which must be some.
pub fn holds_stale_entry_new_folio(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    const ROUNDS: usize = 100;
    const HEAD: usize = 100;
    let f = tmpfile(&ctx.dir)?;
    let Some(direct) = reopen_direct(f.fd.raw(), libc::O_WRONLY)? else {
        skip!("no O_DIRECT on this file system");
    };
    let buf = Map::anon(PAGE)?;
    let _cpu = on_one_cpu()?; // the freed page goes back to this CPU's free list
    let k = |name| counter(name).unwrap_or(0);
    let (mut held, mut reused) = (0, 0);
    for round in 0..ROUNDS {
        let seed = (3 * round) as u8;
        let (old, new, head) = (pattern(seed | 1, 0, PAGE), pattern(seed.wrapping_add(1) | 1, 0, PAGE), pattern(seed.wrapping_add(2) | 1, 0, HEAD));
        pwrite_all(f.fd.raw(), &old, 0)?;
        fsync(f.fd.raw())?;
        // Out of this CPU's LRU add batch, whose reference would make the
        // splice copy instead of hold.
        drain_local_lru_batches(&ctx.dir)?;
        let taken = k("holds_taken");
        let p = pipe()?;
        splice_exact(f.fd.raw(), 0, p.w.raw(), PAGE, stable())?;
        let holds = k("holds_taken") - taken;
        expect_bytes("the pipe", &read_pipe(&p.r, PAGE)?, &old, None)?;
        drop(p);
        pwrite_direct(&direct, &buf, &new, 0)?;
        let breaks = k("breaks");
        pwrite_all(f.fd.raw(), &head, 0)?;
        let met = k("breaks") > breaks;
        let mut want = new.clone();
        want[..HEAD].copy_from_slice(&head);
        expect_bytes(
            &format!("round {round} (the write met the stale entry: {met})"),
            &pread_vec(f.fd.raw(), PAGE, 0)?,
            &want,
            Some(("the old folio's bytes", &old)),
        )?;
        held += usize::from(holds > 0);
        reused += usize::from(holds > 0 && met);
    }
    ctx.note(format!("{ROUNDS} rounds, {held} held; the write met the stale entry (the new folio was the held one's page again) in {reused}"));
    ensure!(held >= ROUNDS / 2, "{held} of {ROUNDS} rounds held the page: the test did not hold it");
    ensure!(reused > 0, "no write met the stale entry: the test did not reach it");
    Ok(())
}

/// What reclaim knows of a page goes with it when a break puts a copy in
/// its place, as migration carries it (`ss_folio_add_lru_as` in
/// rust/folio.c): a file read again and again and rewritten while a stable
/// splice held it stays as hot as a plain splice leaves it. In a memory
/// cgroup of its own: a hot file (read eight times: MGLRU counts reads
/// through descriptors and protects the most read), spliced into a pipe
/// and rewritten page by page (with the flag, a break per held folio),
/// then a cold file (written and read once); the cgroup reclaims half a
/// file's worth: it must come from the cold file. The copies used to go on
/// the LRU as pages nobody had used (inactive; with MGLRU, the oldest
/// generation without the reads counted), and reclaim took the hot file's
/// rewritten pages before the cold ones. A plain splice, which leaves the
/// pages in place, is the control. Small folios, and a large one clean
/// (split after the copy) and dirty (on ext4 copied in small folios in one
/// step).
pub fn holds_break_keeps_page_hot(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    let cg = MemCgroup::new("stable-splice-hot", None)?;
    for (what, chunk, dirty) in [("small folios", PAGE, false), ("large folios", HOT_LEN, false), ("dirty large folios", HOT_LEN, true)] {
        for flags in [0, stable()] {
            let what = format!("{what}, {}", if flags == 0 { "plain splice" } else { "stable splice" });
            if !hot_after_break(ctx, &cg, &what, chunk, dirty, flags)? {
                ctx.note(format!("{what}: the page cache did not make large folios here"));
                break;
            }
        }
    }
    Ok(())
}

const HOT_PAGES: usize = 128;
const HOT_LEN: usize = HOT_PAGES * PAGE;

/// One round of [`holds_break_keeps_page_hot`]: the hot file written
/// `chunk` bytes at a time, fsynced before the splice unless `dirty`.
/// False if it asked for large folios and got none.
fn hot_after_break(ctx: &Ctx, cg: &MemCgroup, what: &str, chunk: usize, dirty: bool, flags: u32) -> TResult<bool> {
    let _cpu = on_one_cpu()?;
    let inside = cg.enter()?;
    let (hot, cold) = (named_file(&ctx.dir, 0o600)?, named_file(&ctx.dir, 0o600)?);
    let (old, new) = (pattern(0x21, 0, HOT_LEN), pattern(0x22, 0, HOT_LEN));
    for (i, c) in old.chunks(chunk).enumerate() {
        pwrite_all(hot.fd.raw(), c, i * chunk)?;
    }
    if !dirty {
        fsync(hot.fd.raw())?;
    }
    // Out of the LRU batches first (drop_caches, which also deactivates
    // them: a plain splice keeps them cached), then read hot, the
    // activations drained on this CPU (a folio in a batch would be copied
    // at splice, not held).
    settle_page_cache(hot.fd.raw(), HOT_LEN)?;
    for _ in 0..8 {
        // Through a new open file each time: a read that starts in the
        // folio where the file's last read ended does not count as an
        // access of it (filemap_read()), and a large folio is all of it.
        let again = ck(open(&format!("/proc/self/fd/{}", hot.fd.raw()), libc::O_RDONLY, 0), "reopen")?;
        pread_vec(again.raw(), HOT_LEN, 0)?;
    }
    drain_local_lru_batches(&ctx.dir)?;
    let large = large_pages(hot.fd.raw(), HOT_LEN)?;
    if chunk > PAGE && large == 0 {
        return Ok(false);
    }
    let k = |name| counter(name).unwrap_or(0);
    let (breaks, zero_copy) = (k("breaks"), k("bytes_zero_copy"));
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, HOT_LEN as i32) };
    splice_exact(hot.fd.raw(), 0, p.w.raw(), HOT_LEN, flags)?;
    let held = k("bytes_zero_copy") - zero_copy;
    for (i, c) in new.chunks(PAGE).enumerate() {
        pwrite_all(hot.fd.raw(), c, i * PAGE)?;
    }
    let breaks = k("breaks") - breaks;
    if flags != 0 {
        expect_bytes(&format!("{what}: the pipe"), &read_pipe(&p.r, HOT_LEN)?, &old, Some(("the rewrite", &new)))?;
    }
    drop(p);
    fsync(hot.fd.raw())?;
    for (i, c) in pattern(0x23, 0, HOT_LEN).chunks(PAGE).enumerate() {
        pwrite_all(cold.fd.raw(), c, i * PAGE)?;
    }
    fsync(cold.fd.raw())?;
    pread_vec(cold.fd.raw(), HOT_LEN, 0)?;
    // The copies and the cold pages on the LRU, where reclaim sees them.
    drain_local_lru_batches(&ctx.dir)?;
    drop(inside);
    let reclaimed = cg.reclaim(HOT_LEN / 2);
    let hot_lost = HOT_PAGES - resident_pages(hot.fd.raw(), HOT_LEN)?;
    let cold_lost = HOT_PAGES - resident_pages(cold.fd.raw(), HOT_LEN)?;
    ctx.note(format!(
        "{what}: {large} pages in large folios, {held} bytes held, {breaks} breaks; reclaiming {} pages of the cgroup ({}) \
         took {hot_lost} of the hot file's {HOT_PAGES} pages and {cold_lost} of the cold one's",
        HOT_PAGES / 2,
        reclaimed.map_or_else(ename, |()| "done".into())
    ));
    // A page that another CPU's LRU batch had is copied at splice instead
    // (a few on xfs): it stays where it was, as hot as it was.
    if flags != 0 {
        ensure!(
            held >= HOT_LEN as u64 * 3 / 4 && breaks > 0 && (chunk > PAGE || breaks * PAGE as u64 == held),
            "{what}: {held} of {HOT_LEN} bytes held, {breaks} breaks: the test did not hold and break the file"
        );
    }
    ensure!(hot_lost + cold_lost >= HOT_PAGES / 4, "{what}: reclaim took {} pages of {} asked for: the test did not reclaim", hot_lost + cold_lost, HOT_PAGES / 2);
    ensure!(
        hot_lost <= HOT_PAGES / 16,
        "{what}: reclaim took {hot_lost} of the hot file's {HOT_PAGES} pages (and {cold_lost} of the cold file's): \
         the rewritten pages went on the LRU as pages nobody had read"
    );
    Ok(true)
}

/// A write of one page into a held, dirty large folio (written in one
/// write, not yet written back): the break's copy goes in as small folios,
/// every page dirty from the moment it can be reached (xfs: the copy is
/// dirtied before the kernel splits it; ext4: each page with its buffer
/// heads, all at once, see [`dirty_large_splits_in_one_step`]); fsync
/// puts the pages the writer never touched on the disk too, and the
/// written page with the writer's bytes. The pipe keeps the old bytes.
pub fn holds_split_break_keeps_dirty_pages(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    const LEN: usize = 64 * PAGE;
    let f = named_file(&ctx.dir, 0o600)?;
    let fd = f.fd.raw();
    let a = pattern(0x21, 0, LEN);
    pwrite_all(fd, &a, 0)?;
    settle_page_cache(fd, LEN)?;
    let large = large_pages(fd, LEN)?;
    if large == 0 {
        skip!("the file is in small folios here (no large folio to split)");
    }
    let k = |name| counter(name).unwrap_or(0);
    let splits = k("breaks_split");
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    splice_exact(fd, 0, p.w.raw(), LEN, stable())?;
    let page = pattern(0x66, 0, PAGE);
    pwrite_all(fd, &page, 9 * PAGE)?;
    let splits = k("breaks_split") - splits;
    let left = large_pages(fd, LEN)?;
    ctx.note(format!("{large} pages in large folios, {splits} split on the write, {left} in large folios after it"));
    ensure!(splits == 1 && left == 0, "one write into a held large folio: {splits} splits, {left} pages still in large folios");
    expect_bytes("the pipe", &read_pipe(&p.r, LEN)?, &a, None)?;
    let mut now = a.clone();
    now[9 * PAGE..10 * PAGE].copy_from_slice(&page);
    expect_bytes("the page cache", &pread_vec(fd, LEN, 0)?, &now, Some(("before the write", &a)))?;
    let disk = fsync_and_read_disk(fd, LEN)?;
    expect_bytes("the disk after fsync (O_DIRECT)", &disk, &now, None)
}

/// After the first write into a held large folio (`splits` of them split):
/// its copy is in the page cache as small folios, so a new hold of the
/// range and a write of one page copy that page, not the folio, and the
/// state each page got from the split writes the page to the disk.
fn split_pages_break_alone(fd: i32, content: &[u8], splits: u64) -> TResult {
    let len = content.len();
    let large = large_pages(fd, len)?;
    ensure!(
        splits >= 1 && large == 0,
        "the writes into a held large folio split {splits} copies, and {large} pages are still in large folios"
    );
    let k = |name| counter(name).unwrap_or(0);
    let (breaks, snap) = (k("breaks"), k("snapshot_bytes"));
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, len as i32) };
    splice_exact(fd, 0, p.w.raw(), len, stable())?;
    let page = pattern(0x3c, 0, PAGE);
    pwrite_all(fd, &page, 5 * PAGE)?;
    let (breaks, snap) = (k("breaks") - breaks, k("snapshot_bytes") - snap);
    ensure!(breaks == 1 && snap == PAGE as u64, "a write of one page of the split range: {breaks} breaks, {snap} bytes copied (want 1, one page)");
    expect_bytes("the pipe after the page's break", &read_pipe(&p.r, len)?, content, None)?;
    let mut now = content.to_vec();
    now[5 * PAGE..6 * PAGE].copy_from_slice(&page);
    let disk = fsync_and_read_disk(fd, len)?;
    expect_bytes("the disk after the page's break and fsync (O_DIRECT)", &disk, &now, Some(("before the write", content)))
}

/// Writers of files without holds do not look for holds: with folios of
/// 300 files held (more than the registry has buckets, so before the
/// per-file table every bucket had holds and every writer took a bucket
/// lock), 64 buffered writes into another file leave `writer_lookups`
/// where it was. A write into one of the held files does look, and breaks
/// its hold: the pipe keeps what was spliced.
pub fn holds_other_files_writers_skip_lookup(ctx: &Ctx) -> TResult {
    if copies_at_splice(&ctx.dir) {
        skip!("this mount copies at splice time: nothing is held");
    }
    const FILES: usize = 300;
    const PER_PIPE: usize = 16; // a pipe's default ring
    let other = tmpfile(&ctx.dir)?;
    let taken0 = counter("holds_taken").unwrap_or(0);
    let (mut held, mut pipes) = (Vec::with_capacity(FILES), Vec::new());
    for i in 0..FILES {
        if i % PER_PIPE == 0 {
            pipes.push(pipe()?);
        }
        let f = tmpfile(&ctx.dir)?;
        let page = pattern(i as u8, 0, PAGE);
        pwrite_all(f.fd.raw(), &page, 0)?;
        splice_exact(f.fd.raw(), 0, pipes[i / PER_PIPE].w.raw(), PAGE, stable())?;
        held.push((f, page));
    }
    let taken = counter("holds_taken").unwrap_or(0).saturating_sub(taken0);
    ctx.note(format!("{taken} holds taken on {FILES} files"));
    // A page somebody references for a moment is copied instead (sound);
    // nearly all must be held for the buckets to be full.
    ensure!(taken * 10 >= FILES as u64 * 9, "only {taken} of {FILES} one-page files held (zero copy did not happen?)");
    let before = counter("writer_lookups").unwrap_or(0);
    let new = pattern(0xee, 0, PAGE);
    for i in 0..64 {
        pwrite_all(other.fd.raw(), &new, i * PAGE)?;
    }
    let after_other = counter("writer_lookups").unwrap_or(0);
    pwrite_all(held[0].0.fd.raw(), &new, 0)?;
    let after_held = counter("writer_lookups").unwrap_or(0);
    ctx.note(format!("writer_lookups: +{} for 64 writes into another file, +{} for one into a held file", after_other - before, after_held - after_other));
    ensure!(after_other == before, "64 writes into a file without holds looked for holds {} times", after_other - before);
    ensure!(after_held > after_other, "a write into a held file did not look for its holds");
    expect_bytes("pipe after its file was rewritten", &read_pipe(&pipes[0].r, PAGE)?, &held[0].1, Some(("new content", &new)))?;
    Ok(())
}

/// The last close of an unlinked file evicts its inode, and its holds end
/// right there (`holds_evicted`), not a reaper's second later: the pipe
/// still reads what was spliced (its folios left the page cache with the
/// file, nobody can write them), and no registry entry is left for the
/// mapping's address to be found again under another file.
pub fn holds_end_with_evicted_inode(ctx: &Ctx) -> TResult {
    holds_case(ctx)?;
    const PAGES: usize = 8;
    // A page at a time: small folios, a hold each.
    let (f, a, _) = file_ab_written(ctx, PAGES * PAGE, PAGE)?;
    let p = pipe()?;
    let (active0, evicted0) = (counter("holds_active").unwrap_or(0), counter("holds_evicted").unwrap_or(0));
    splice_exact(f.fd.raw(), 0, p.w.raw(), PAGES * PAGE, stable())?;
    let held = counter("holds_active").unwrap_or(0).saturating_sub(active0);
    ensure!(held > 0, "no holds after a stable splice of a settled file (zero copy did not happen?)");
    drop(f); // unlinked: the inode goes before close() returns
    let (active, evicted) = (counter("holds_active").unwrap_or(0), counter("holds_evicted").unwrap_or(0));
    ctx.note(format!("{held} holds; after the last close holds_active {active0} -> {active}, holds_evicted +{}", evicted - evicted0));
    ensure!(evicted - evicted0 == held, "{} holds ended at eviction, {held} were taken", evicted - evicted0);
    ensure!(active == active0, "holds_active {active} after the eviction, {active0} before the splice");
    expect_bytes("pipe after its file was evicted", &read_pipe(&p.r, PAGES * PAGE)?, &a, None)?;
    Ok(())
}

/// Pages of the files of the entry cases.
const ENTRY_PAGES: usize = 8;

/// A holds case's file of [`ENTRY_PAGES`] small folios (written a page at
/// a time: an entry each), spliced stably into a pipe that was then
/// drained: its entries stay, nobody reads their folios. The file, A (its
/// content), B, the pipe and the entries (`holds_active`).
fn drained_entries(ctx: &Ctx) -> TResult<(TestFile, Vec<u8>, Vec<u8>, Pipe, u64)> {
    holds_case(ctx)?;
    let (f, a, b) = file_ab_written(ctx, ENTRY_PAGES * PAGE, PAGE)?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), ENTRY_PAGES * PAGE, stable())?;
    expect_bytes("pipe", &read_pipe(&p.r, ENTRY_PAGES * PAGE)?, &a, None)?;
    let held = counter("holds_active").unwrap_or(0);
    ensure!(held > 0, "no entries after a stable splice of a settled file (zero copy did not happen?)");
    Ok((f, a, b, p, held))
}

/// Entries own nothing and nothing reaps them: once the pipe is drained
/// its file's entries stay (no per-hold work after the splice, however
/// long the file idles), a second stable splice joins them (no new hold,
/// zero copy), and a writer that meets one whose folio nobody reads
/// writes in place (no break) and takes it out.
pub fn holds_entries_outlive_readers(ctx: &Ctx) -> TResult {
    let (f, a, b, p, held) = drained_entries(ctx)?;
    let c = |n: &str| counter(n).unwrap_or(0);
    // The old reaper ended idle holds after a second.
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(c("holds_active") == held, "entries went by themselves: {held} -> {}", c("holds_active"));
    let (taken, zero_copy) = (c("holds_taken"), c("bytes_zero_copy"));
    splice_exact(f.fd.raw(), 0, p.w.raw(), ENTRY_PAGES * PAGE, stable())?;
    expect_bytes("pipe, served again", &read_pipe(&p.r, ENTRY_PAGES * PAGE)?, &a, None)?;
    ctx.note(format!("{held} entries; served again: holds_taken +{}, bytes_zero_copy +{}", c("holds_taken") - taken, c("bytes_zero_copy") - zero_copy));
    ensure!(c("holds_taken") == taken, "served again took {} new holds instead of joining", c("holds_taken") - taken);
    ensure!(c("bytes_zero_copy") - zero_copy == (ENTRY_PAGES * PAGE) as u64, "served again: {} bytes zero copy", c("bytes_zero_copy") - zero_copy);
    let breaks = c("breaks");
    pwrite_all(f.fd.raw(), &b[..PAGE], 0)?;
    ensure!(c("breaks") == breaks, "a write into a folio nobody reads broke it");
    ensure!(c("holds_active") == held - 1, "holds_active {} after a write into one of {held}", c("holds_active"));
    expect_bytes("file after the write", &pread_vec(f.fd.raw(), PAGE, 0)?, &b[..PAGE], None)?;
    Ok(())
}

/// Under memory pressure the shrinker frees the entries of a range whose
/// folios left the page cache: after the pipe is drained and the page
/// cache dropped (`drop_caches` 1), `drop_caches` 2 (which runs every
/// shrinker) takes the file's entries out while the file stays open (not
/// an eviction: `holds_evicted` unchanged), and the file's registry entry
/// with them (the module's reference count is back).
pub fn holds_entries_shrink_with_page_cache(ctx: &Ctx) -> TResult {
    let refcnt = module_refcnt().ok_or_else(|| TestErr::Fail("no /sys/module/stable_splice/refcnt".into()))?;
    let (f, a, _, _p, held) = drained_entries(ctx)?;
    let c = |n: &str| counter(n).unwrap_or(0);
    let evicted = c("holds_evicted");
    fsync(f.fd.raw())?;
    drain_lru_batches()?; // drops the file's pages, clean now: nobody references them
    std::fs::write("/proc/sys/vm/drop_caches", "2").map_err(|e| TestErr::Fail(format!("drop_caches: {e}")))?;
    ctx.note(format!("{held} entries -> {} after the page cache and the shrinkers were dropped", c("holds_active")));
    ensure!(c("holds_active") == 0, "{} entries left of {held}", c("holds_active"));
    ensure!(c("holds_evicted") == evicted, "the open file was evicted?");
    ensure!(wait_until(Duration::from_secs(2), || module_refcnt() == Some(refcnt)), "module refcnt {:?}, was {refcnt}", module_refcnt());
    expect_bytes("file", &pread_vec(f.fd.raw(), ENTRY_PAGES * PAGE, 0)?, &a, None)?;
    Ok(())
}
