//! A writer into a held large folio: one pwrite(512 B) into a page whose
//! folio (of up to 2 MiB, as ext4 and xfs cache a file written in large
//! writes on a kernel with transparent hugepages) sits in an undrained pipe
//! after a stable splice of that page. The break copies the whole folio
//! (the contract's bound: one snapshot copy of that folio) and puts the
//! copy in the page cache as small folios (`breaks_split`; a dirty one with
//! buffer heads, ext4's, stays whole until it is clean), so a held
//! region is made again in one write before each trial; the rows say what
//! that costs per folio size, against a write into an unheld large folio
//! and one copy of a folio of that size.

use crate::*;

/// The regions the file is written in, one `pwrite` each: the largest
/// folio the page cache makes (PMD size on x86).
pub(crate) const LARGE_REGION: usize = 2 << 20;
/// Regions of the file: even ones are spliced (held), odd ones never are.
const LARGE_REGIONS: usize = 8;

/// What a timed write lands in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LargeCase {
    /// A clean folio held by a stable splice.
    Clean,
    /// A folio dirtied before the stable splice that holds it.
    Dirty,
    /// A folio nothing holds (never spliced).
    Unheld,
}

const LARGE_CASES: [LargeCase; 3] = [LargeCase::Clean, LargeCase::Dirty, LargeCase::Unheld];

/// The writes into held folios of one size (what the break copied).
pub(crate) struct LargeRow {
    /// Bytes the write's break copied: the held folio's size.
    pub(crate) folio: u64,
    pub(crate) clean: Option<Lat>,
    pub(crate) dirty: Option<Lat>,
    /// pread() of `folio` bytes from the warm cache, for reference: under
    /// TCG it cost about three times a whole break (4.6 ms against 1.5 ms
    /// for 2 MiB in one run), so it would overstate a folio copy.
    pub(crate) pread: Lat,
}

impl LargeRow {
    /// One copy of such a folio as a break makes it, measured: the median
    /// held clean write less the median unheld one (the copy and the
    /// break's bookkeeping).
    pub(crate) fn break_ns(&self, unheld: &Lat) -> Option<f64> {
        self.clean.as_ref().map(|c| (c.median as f64 - unheld.median as f64).max(0.0))
    }

    /// The bound: p99 held clean / (unheld p99 + one copy).
    pub(crate) fn ratio(&self, unheld: &Lat) -> Option<f64> {
        Some(self.clean.as_ref()?.p99 as f64 / (unheld.p99 as f64 + self.break_ns(unheld)?))
    }
}

pub(crate) struct LargeRes {
    pub(crate) trials: usize,
    pub(crate) rows: Vec<LargeRow>,
    pub(crate) unheld: Lat,
    /// Device (reads, writes) per write, by `LARGE_CASES` order; None on a
    /// file system without a block device.
    pub(crate) io_per_write: Vec<Option<(f64, f64)>>,
    /// Writes into a held region that broke nothing (the splice copied
    /// that page instead of holding its folio), clean and dirty.
    pub(crate) not_broken: [usize; 2],
    /// Writes that failed (ENOMEM: no copy could be made, after retries).
    pub(crate) failed: usize,
    pub(crate) counters: Counters,
}

impl LargeRes {
    /// The row of the largest folio size seen, if it is a large folio.
    pub(crate) fn largest(&self) -> Option<&LargeRow> {
        self.rows.last().filter(|r| r.folio > PAGE as u64)
    }
}

/// `--trials` / 2 trials of each case on `dir`, the cases interleaved.
pub(crate) fn large_folio_writer(o: &Opts, dir: &str) -> Res<LargeRes> {
    let f = create_file(dir, "large")?;
    let fd = f.fd.raw();
    fill_and_warm(fd, (LARGE_REGIONS * LARGE_REGION) as u64, LARGE_REGION)?;
    let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
    let p = pipe(0)?;
    let trials = (o.trials / 2).max(50);
    let mut wbuf = vec![0u8; WRITE_LEN];
    let mut region_buf = vec![0u8; LARGE_REGION];
    // (latency, bytes its break copied) per case
    let mut samples: Vec<Vec<(u64, u64)>> = vec![Vec::new(); LARGE_CASES.len()];
    let mut io = [(0u64, 0u64); 3];
    let mut failed = 0;
    let c0 = read_counters();
    let pages = LARGE_REGION / PAGE;
    for t in 0..trials {
        pattern(t as u8, 0, &mut wbuf);
        // A different page of the region each trial, spread over the folio.
        let page = (t * 97) % pages;
        for i in 0..LARGE_CASES.len() {
            let ci = (t + i) % LARGE_CASES.len();
            let case = LARGE_CASES[ci];
            let region = 2 * ((t + ci) % (LARGE_REGIONS / 2)) + (case == LargeCase::Unheld) as usize;
            let start = (region * LARGE_REGION) as u64;
            let off = start + (page * PAGE) as u64;
            if case != LargeCase::Unheld {
                // The last break left the region in small folios: out of
                // the page cache with it, and one write makes it large.
                punch(fd, start, LARGE_REGION)?;
                pattern(t as u8 ^ 0x5a, start, &mut region_buf);
                pwrite_full(fd, &region_buf, start)?;
            }
            match case {
                LargeCase::Dirty => pwrite_full(fd, &wbuf, off + 1024)?,
                _ => sync_range(fd, start, LARGE_REGION)?,
            }
            if case != LargeCase::Unheld {
                splice_file_to_pipe(fd, off, p.w.raw(), PAGE, SPLICE_F_STABLE)?;
            }
            let s0 = read_counter("snapshot_bytes");
            let io0 = block_io(dir);
            let t0 = Instant::now();
            // SAFETY: a write from our own buffer.
            let r = unsafe { libc::pwrite(fd, wbuf.as_ptr().cast(), WRITE_LEN, (off + 2048) as libc::off_t) };
            let dt = t0.elapsed().as_nanos() as u64;
            if let (Some(a), Some(b)) = (io0, block_io(dir)) {
                io[ci].0 += b.0 - a.0;
                io[ci].1 += b.1 - a.1;
            }
            let copied = (read_counter("snapshot_bytes") - s0).max(0) as u64;
            if case != LargeCase::Unheld {
                drain_pipe(p.r.raw(), devnull.raw(), PAGE)?;
            }
            if r != WRITE_LEN as isize {
                let e = last_err();
                if e.raw_os_error() != Some(libc::ENOMEM) {
                    return Err(format!("pwrite({WRITE_LEN} @{}): {r}: {e}", off + 2048));
                }
                failed += 1;
                continue;
            }
            samples[ci].push((dt, copied));
        }
    }
    let counters = counter_delta(&c0, &read_counters());
    let n = trials as f64;
    let io_per_write = io.iter().map(|&(r, w)| block_io(dir).map(|_| (r as f64 / n, w as f64 / n))).collect();

    let mut sizes: Vec<u64> = samples[..2].iter().flatten().map(|&(_, c)| c).filter(|&c| c > 0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let of = |ci: usize, size: u64| {
        let v: Vec<u64> = samples[ci].iter().filter(|&&(_, c)| c == size).map(|&(d, _)| d).collect();
        (!v.is_empty()).then(|| lat(v))
    };
    let mut rows = Vec::new();
    let mut rbuf = vec![0u8; LARGE_REGION];
    for &size in &sizes {
        // For reference, a pread of as many bytes from an unheld region,
        // aligned as the folio is.
        let len = (size as usize).min(LARGE_REGION);
        let mut copy = Vec::new();
        for k in 0..20 {
            let region = 2 * (k % (LARGE_REGIONS / 2)) + 1;
            let t0 = Instant::now();
            pread_full(fd, &mut rbuf[..len], (region * LARGE_REGION) as u64)?;
            copy.push(t0.elapsed().as_nanos() as u64);
        }
        rows.push(LargeRow { folio: size, clean: of(0, size), dirty: of(1, size), pread: lat(copy) });
    }
    let not_broken = [0, 1].map(|ci| samples[ci].iter().filter(|&&(_, c)| c == 0).count());
    let unheld = lat(samples[2].iter().map(|&(d, _)| d).collect());
    Ok(LargeRes { trials, rows, unheld, io_per_write, not_broken, failed, counters })
}

/// The large-folio writer rows of one file system.
pub(crate) fn large_table(l: &LargeRes) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "--- writer into a held large folio: pwrite({WRITE_LEN} B) into a page of a file written {} at a time, its folio held by a stable splice of that page in an undrained pipe, {} trials per case (us) ---",
        svg::size_label(LARGE_REGION),
        l.trials
    );
    let _ = writeln!(
        s,
        "{:<10} | {:>6} {:>9} {:>9} | {:>6} {:>9} {:>9} | {:>9} {:>9} | {:>22}",
        "folio", "clean", "median", "p99", "dirty", "median", "p99", "break", "pread", "clean p99 / (unheld p99 + break)"
    );
    let lt = |x: &Option<Lat>| match x {
        Some(x) => format!("{:>6} {:>9} {:>9}", x.n, us(x.median as f64), us(x.p99 as f64)),
        None => format!("{:>6} {:>9} {:>9}", 0, "n/a", "n/a"),
    };
    for r in &l.rows {
        let _ = writeln!(
            s,
            "{:<10} | {} | {} | {:>9} {:>9} | {:>22}",
            svg::size_label(r.folio as usize),
            lt(&r.clean),
            lt(&r.dirty),
            r.break_ns(&l.unheld).map_or("n/a".into(), us),
            us(r.pread.median as f64),
            fmt_opt(r.ratio(&l.unheld), 0, 2)
        );
    }
    let _ = writeln!(
        s,
        "{:<10} | {:>6} {:>9} {:>9} | (a write into a folio nothing holds)",
        "unheld",
        l.unheld.n,
        us(l.unheld.median as f64),
        us(l.unheld.p99 as f64)
    );
    let io = |i: usize| {
        l.io_per_write
            .get(i)
            .copied()
            .flatten()
            .map_or("n/a".to_string(), |(r, w)| format!("{r:.3} reads, {w:.3} writes"))
    };
    let _ = writeln!(
        s,
        "device I/O per write: held clean {}; held dirty {}; unheld {}; break = one copy of the folio as a break makes it (held clean median - unheld median); pread = a pread of the folio's size (median)",
        io(0),
        io(1),
        io(2)
    );
    let _ = writeln!(
        s,
        "writes into a held region that broke nothing (the splice copied instead): {} clean, {} dirty; writes failed: {}; counters: breaks {}, snapshot_bytes {}, breaks_retried {}, break_failures {}",
        l.not_broken[0],
        l.not_broken[1],
        l.failed,
        cget(&l.counters, "breaks"),
        cget(&l.counters, "snapshot_bytes"),
        cget(&l.counters, "breaks_retried"),
        cget(&l.counters, "break_failures")
    );
    s
}

/// Issue 21's targets for a writer into a held large folio, per folio size.
pub(crate) fn large_targets(t: &mut Vec<Target>, fs: &str, l: &LargeRes) {
    if l.largest().is_none() {
        t.push(Target {
            name: "writer into a held large folio: p99 <= 2x (an unheld write + one copy of that folio)".into(),
            fs: fs.to_string(),
            sink: None,
            value: None,
            threshold: 2.0,
            at_least: false,
            detail: "no write broke a large folio (the file is in small folios?)".into(),
        });
    }
    for r in l.rows.iter().filter(|r| r.folio > PAGE as u64) {
        let (Some(c), Some(copy)) = (&r.clean, r.break_ns(&l.unheld)) else { continue };
        t.push(Target {
            name: format!(
                "writer into a held {} folio: p99 <= 2x (an unheld write + one copy of that folio)",
                svg::size_label(r.folio as usize)
            ),
            fs: fs.to_string(),
            sink: None,
            value: r.ratio(&l.unheld),
            threshold: 2.0,
            at_least: false,
            detail: format!(
                "p99 {} us over {} writes; unheld p99 {} us + one break {} us (pread of {} {} us)",
                us(c.p99 as f64),
                c.n,
                us(l.unheld.p99 as f64),
                us(copy),
                svg::size_label(r.folio as usize),
                us(r.pread.median as f64)
            ),
        });
    }
    for (i, what) in [(0, "clean"), (1, "dirty")] {
        if let Some((rd, wr)) = l.io_per_write.get(i).copied().flatten() {
            t.push(Target {
                name: format!("writer into a held {what} large folio: no device read"),
                fs: fs.to_string(),
                sink: None,
                value: Some(rd),
                threshold: 0.0,
                at_least: false,
                detail: format!("{rd:.3} reads and {wr:.3} writes per pwrite({WRITE_LEN} B)"),
            });
        }
    }
}

/// JSON of the rows.
pub(crate) fn large_json(l: &LargeRes) -> Json {
    let lj = |x: &Option<Lat>| x.as_ref().map(Lat::json);
    let rows = l.rows.iter().fold(Json::Arr(Vec::new()), |mut a, r| {
        a.push(
            Json::obj()
                .with("folio_bytes", r.folio)
                .with("held_clean", lj(&r.clean))
                .with("held_dirty", lj(&r.dirty))
                .with("one_break_ns", r.break_ns(&l.unheld))
                .with("p99_over_unheld_p99_plus_break", r.ratio(&l.unheld))
                .with("pread_of_folio_size", r.pread.json()),
        );
        a
    });
    Json::obj()
        .with(
            "method",
            "file written 2 MiB at a time; per trial and case: a held region punched out and written again in one pwrite (its last break split it), then make the region clean (sync_file_range) or dirty (a pwrite), stable-splice one page into a pipe, time a pwrite of 512 B into that page, then drain the pipe; rows by the bytes the write's break copied (snapshot_bytes); one break = held clean median - unheld median; pread of that many bytes for reference",
        )
        .with("trials_per_case", l.trials)
        .with("by_folio_size", rows)
        .with("unheld", l.unheld.json())
        .with(
            "device_io_per_write",
            [(0, "held_clean"), (1, "held_dirty"), (2, "unheld")].iter().fold(Json::obj(), |j, &(i, k)| {
                let io = l.io_per_write.get(i).copied().flatten();
                j.with(k, io.map(|(r, w)| Json::obj().with("reads", r).with("writes", w)))
            }),
        )
        .with("not_broken_clean", l.not_broken[0])
        .with("not_broken_dirty", l.not_broken[1])
        .with("writes_failed", l.failed)
        .with("counters_delta", &l.counters)
}
