//! Writer latency into a page that sits in an undrained pipe.

use crate::*;

/// What a writer meets: the four situations of the writer-latency bench.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The page sits clean in an undrained pipe after a stable splice.
    StableClean,
    /// The same, but the page was dirty when it was spliced.
    StableDirty,
    /// The page sits in an undrained pipe after a plain splice.
    Plain,
    /// Nothing holds the page.
    Nothing,
}

pub(crate) const HELD: [Held; 4] = [Held::StableClean, Held::StableDirty, Held::Plain, Held::Nothing];

impl Held {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Held::StableClean => "stable_clean",
            Held::StableDirty => "stable_dirty",
            Held::Plain => "plain",
            Held::Nothing => "nothing_held",
        }
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            Held::StableClean => "clean page held by a stable splice",
            Held::StableDirty => "dirty page held by a stable splice",
            Held::Plain => "page in a pipe after plain splice",
            Held::Nothing => "page not held",
        }
    }
}

/// Bytes a writer writes into the middle of a page: a partial write, which
/// needs the rest of the page (a device read if the page left the cache).
pub(crate) const WRITE_LEN: usize = 512;

pub(crate) fn writer_latency(o: &Opts, dir: &str, stable_ok: bool) -> Res<LatencyRes> {
    const PAGES: usize = 256;
    let f = create_file(dir, "latency")?;
    let fd = f.fd.raw();
    fill_and_warm(fd, (PAGES * PAGE) as u64, PAGE)?;
    let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
    let p = pipe(0)?;
    let mut wbuf = vec![0u8; WRITE_LEN];
    let mut lats: Vec<Vec<u64>> = vec![Vec::new(); HELD.len()];
    let mut io = [(0u64, 0u64); 4];
    let c0 = read_counters();
    // Disjoint page ranges per variant, so that a trial never finds its page
    // still held by an earlier one; the order rotates trial by trial.
    let per = PAGES / HELD.len();
    for t in 0..o.trials {
        let k = t % per;
        pattern(t as u8, 0, &mut wbuf);
        for i in 0..HELD.len() {
            let vi = (t + i) % HELD.len();
            let v = HELD[vi];
            if !stable_ok && matches!(v, Held::StableClean | Held::StableDirty) {
                continue;
            }
            let page = vi * per + k;
            let off = (page * PAGE) as u64;
            match v {
                Held::StableDirty => pwrite_full(fd, &wbuf, off + 1024)?,
                _ => sync_range(fd, off, PAGE)?,
            }
            if v != Held::Nothing {
                let flags = if v == Held::Plain { 0 } else { SPLICE_F_STABLE };
                splice_file_to_pipe(fd, off, p.w.raw(), PAGE, flags)?;
            }
            let io0 = block_io(dir);
            let t0 = Instant::now();
            pwrite_full(fd, &wbuf, off + 2048)?;
            let dt = t0.elapsed().as_nanos() as u64;
            if let (Some(a), Some(b)) = (io0, block_io(dir)) {
                io[vi].0 += b.0 - a.0;
                io[vi].1 += b.1 - a.1;
            }
            if v != Held::Nothing {
                drain_pipe(p.r.raw(), devnull.raw(), PAGE)?;
            }
            lats[vi].push(dt);
        }
    }
    let counters = counter_delta(&c0, &read_counters());
    let n = o.trials as f64;
    let io_per_write: Vec<Option<(f64, f64)>> =
        io.iter().map(|&(r, w)| block_io(dir).map(|_| (r as f64 / n, w as f64 / n))).collect();
    let mut lats = lats.into_iter();
    let (st, st_dirty, pl, none) = (
        lats.next().unwrap_or_default(),
        lats.next().unwrap_or_default(),
        lats.next().unwrap_or_default(),
        lats.next().unwrap_or_default(),
    );

    // The cost of copying that folio: pread of 4 KiB from the warm cache,
    // timed one by one (a kernel copy of one page plus a syscall) ...
    let mut rbuf = vec![0u8; 1 << 20];
    let mut pr = Vec::with_capacity(o.trials);
    for t in 0..o.trials {
        let off = ((t * 7 % PAGES) * PAGE) as u64;
        let t0 = Instant::now();
        pread_full(fd, &mut rbuf[..PAGE], off)?;
        pr.push(t0.elapsed().as_nanos() as u64);
    }
    // ... the per-page time of a 1 MiB pread (copy without syscall overhead) ...
    let mut per_page = Vec::new();
    for _ in 0..(o.trials / 20).max(10) {
        let t0 = Instant::now();
        pread_full(fd, &mut rbuf, 0)?;
        per_page.push(t0.elapsed().as_nanos() as f64 / PAGES as f64);
    }
    // ... and a user-space memcpy of 4 KiB (cache-hot).
    let src = vec![7u8; PAGE];
    let mut dst = vec![0u8; PAGE];
    let mut mc = Vec::new();
    for _ in 0..(o.trials / 10).max(20) {
        const N: u32 = 256;
        let t0 = Instant::now();
        for _ in 0..N {
            // SAFETY: both buffers are PAGE bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(std::hint::black_box(src.as_ptr()), dst.as_mut_ptr(), PAGE) };
            std::hint::black_box(&mut dst);
        }
        mc.push(t0.elapsed().as_nanos() as f64 / N as f64);
    }
    Ok(LatencyRes {
        stable: stable_ok.then(|| lat(st)),
        stable_dirty: stable_ok.then(|| lat(st_dirty)),
        plain: lat(pl),
        unheld: lat(none),
        io_per_write,
        pread_4k: lat(pr),
        pread_per_page_1mib_ns: median(&per_page),
        memcpy_4k_ns: median(&mc),
        counters,
    })
}
