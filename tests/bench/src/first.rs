//! The first stable splice of every page (a file served once).

use crate::*;

/// Stable splices that take a new hold on every folio (nobody spliced the
/// file for a while: a file served once), against plain splice: whole
/// passes over a file at one transfer size to one sink, the file's holds
/// taken out before each stable pass, plain and stable passes interleaved;
/// and a second stable pass right after the first, which finds every folio
/// held by it (the same file served again).
pub(crate) struct FirstRes {
    pub(crate) sink: Sink,
    pub(crate) size: usize,
    /// Median GiB/s of plain and of stable passes.
    pub(crate) gib: [f64; 2],
    /// Median GiB/s of stable passes with an on-demand walk of their
    /// entries counted in (a write to the `reap` file right after the
    /// pass, in the splicer's own time). Until 2026-12-06 that walk was
    /// the reaper's per-hold work, what a file served once cost all CPUs;
    /// since, entries own nothing and nothing walks them per hold, so it is
    /// shown, not counted. NaN where not measured (an older first.tsv).
    pub(crate) gib_reaped: f64,
    /// Median GiB/s of the stable pass right after the first, which joins
    /// the first pass's holds: the file served again. NaN where not
    /// measured (an older first.tsv).
    pub(crate) gib_again: f64,
    /// New holds and bytes copied at splice per stable pass (medians), and
    /// pages per pass.
    pub(crate) holds_per_pass: f64,
    pub(crate) copied_per_pass: f64,
    pub(crate) pages: usize,
}

pub(crate) const FIRST_FILE: usize = 32 << 20;

/// Sizes of the first-splice rows (`--first-only`).
pub(crate) const FIRST_SIZES: [usize; 3] = [64 << 10, 1 << 20, 8 << 20];

/// The module's debugfs `reap`, opened once: ends the holds of a drained
/// pass at once, in the splicer's own time (`stable_splice_sys::Reaper`);
/// returns how long that took.
fn reap_timed(reaper: &Reaper) -> Res<Duration> {
    let t0 = Instant::now();
    reaper.reap().map_err(|e| format!("write {COUNTER_DIR}/reap: {e}"))?;
    Ok(t0.elapsed())
}

/// Waits until no hold is left: entries stay until asked to go (debugfs
/// `reap`, asked here every 1.5 s), and go once nobody reads their folios.
/// With more than one CPU, the TCP receiver's skbs may wait on the
/// sending CPU's defer list with their references to the folios: those
/// are freed every 1.5 s too.
pub(crate) fn wait_holds_reaped(reaper: &Reaper) -> Res {
    let released = Instant::now();
    let mut flushed = released;
    reaper.reap().map_err(|e| format!("write {COUNTER_DIR}/reap: {e}"))?;
    while read_counter("holds_active") != 0 {
        if released.elapsed().as_secs() > 10 {
            return Err("holds_active did not drop to 0 within 10 s".into());
        }
        if flushed.elapsed() > Duration::from_millis(1500) {
            stable_splice_sys::flush_deferred_skb_frees().map_err(|e| format!("flushing deferred skb frees: {e}"))?;
            reaper.reap().map_err(|e| format!("write {COUNTER_DIR}/reap: {e}"))?;
            flushed = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One first-splice row: `file` (FIRST_FILE bytes, warm) at `size` to `sink`.
pub(crate) fn first_holds(o: &Opts, file: i32, size: usize, sink: Sink) -> Res<FirstRes> {
    let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
    let mut tcp = if sink == Sink::Tcp { Some(TcpSink::new()?) } else { None };
    let out = tcp.as_ref().map_or(devnull.raw(), |t| t.tx.raw());
    let p = pipe(size)?;
    let reaper = Reaper::open(COUNTER_DIR).map_err(|e| format!("open {COUNTER_DIR}/reap: {e}"))?;
    // Seconds per pass.
    let mut pass = |flags: u32| -> Res<f64> {
        let t0 = Instant::now();
        for off in (0..FIRST_FILE).step_by(size) {
            splice_file_to_pipe(file, off as u64, p.w.raw(), size, flags)?;
            drain_pipe(p.r.raw(), out, size)?;
        }
        if let Some(t) = tcp.as_mut() {
            t.sent += FIRST_FILE as u64;
            t.wait()?;
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    let gib_s = |secs: f64| FIRST_FILE as f64 / GIB / secs;
    let (mut gib, mut reaped, mut again, mut holds, mut copied) =
        ([Vec::new(), Vec::new()], Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..=o.repeats {
        let plain = pass(0)?;
        wait_holds_reaped(&reaper)?;
        let (h0, c0) = (read_counter("holds_taken"), read_counter("bytes_copied_at_splice"));
        let stable = pass(SPLICE_F_STABLE)?;
        let (h1, c1) = (read_counter("holds_taken"), read_counter("bytes_copied_at_splice"));
        // Served again: every folio is held by the pass before.
        let stable_again = pass(SPLICE_F_STABLE)?;
        // The pipe is drained (a TCP sink's receiver has all of it): no
        // hold is read any more, so this ends all of the passes' holds.
        let reap = reap_timed(&reaper)?.as_secs_f64();
        if rep > 0 {
            gib[0].push(gib_s(plain));
            gib[1].push(gib_s(stable));
            reaped.push(gib_s(stable + reap));
            again.push(gib_s(stable_again));
            holds.push((h1 - h0) as f64);
            copied.push((c1 - c0) as f64);
        }
    }
    if let Some(t) = tcp.take() {
        t.finish()?;
    }
    Ok(FirstRes {
        sink,
        size,
        gib: [median(&gib[0]), median(&gib[1])],
        gib_reaped: median(&reaped),
        gib_again: median(&again),
        holds_per_pass: median(&holds),
        copied_per_pass: median(&copied),
        pages: FIRST_FILE / PAGE,
    })
}

/// The first-splice file of `dir`, FIRST_FILE bytes, written `chunk` bytes
/// at a time (what size of folios the page cache gets: writes of 4 KiB
/// make small folios, of 1 MiB large ones where the file system and the
/// kernel support them), page cache warm.
pub(crate) fn first_file(dir: &str, chunk: usize) -> Res<BenchFile> {
    let f = create_file(dir, "first")?;
    fill_and_warm(f.fd.raw(), FIRST_FILE as u64, chunk)?;
    // A folio still in another CPU's LRU add batch has a reference of that
    // batch's, which no reaping ends while that CPU idles: every pass would
    // wait for holds that cannot end. Drain all CPUs' batches once, here;
    // nothing adds the file's folios to a batch again.
    drain_lru_batches()?;
    Ok(f)
}

/// Every first-splice row of `dir` (`--first-only`): a file written 1 MiB
/// at a time (labelled `label`) and one written 4 KiB at a time (`label`
/// with "-4k": small folios, a hold per page).
pub(crate) fn first_fs(o: &Opts, dir: &str, label: &str) -> Res<Vec<(String, FirstRes)>> {
    let mut rows = Vec::new();
    for (chunk, label) in [(1 << 20, label.to_string()), (PAGE, format!("{label}-4k"))] {
        if o.first_small && chunk != PAGE {
            continue;
        }
        let f = first_file(dir, chunk)?;
        let (mut stable_ok, mut stable_error) = (true, None);
        probe_stable(&f, &mut stable_ok, &mut stable_error)?;
        if let Some(e) = stable_error {
            return Err(e);
        }
        for sink in SINKS.into_iter().filter(|&s| !o.first_small || s == Sink::DevNull) {
            for size in FIRST_SIZES {
                let r = first_holds(o, f.fd.raw(), size, sink)?;
                progress(&format!(
                    "{label} {:>9} {:>7}: first stable splice {:.3} GiB/s, plain {:.3} GiB/s ({:.2}x; with an on-demand walk of its entries {:.2}x; served again {:.2}x); {:.0} new holds, {:.0} bytes copied per pass",
                    sink.label(),
                    svg::size_label(size),
                    r.gib[1],
                    r.gib[0],
                    r.gib[1] / r.gib[0],
                    r.gib_reaped / r.gib[0],
                    r.gib_again / r.gib[0],
                    r.holds_per_pass,
                    r.copied_per_pass
                ));
                rows.push((label.clone(), r));
            }
        }
    }
    Ok(rows)
}

/// First-splice rows measured in a VM whose clock counts instructions
/// (`first.tsv`: fs label, sink, size, plain GiB/s, stable GiB/s, new holds
/// per pass, bytes copied per pass, pages per pass, stable GiB/s with the
/// reaping of its holds, stable GiB/s of the pass served again).
pub(crate) struct ClockedFirst {
    pub(crate) rows: Vec<(String, FirstRes)>,
}

impl ClockedFirst {
    pub(crate) fn tsv(rows: &[(String, FirstRes)]) -> String {
        let mut s = String::new();
        for (label, r) in rows {
            let _ = writeln!(
                s,
                "{label}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.sink.key(),
                r.size,
                r.gib[0],
                r.gib[1],
                r.holds_per_pass,
                r.copied_per_pass,
                r.pages,
                r.gib_reaped,
                r.gib_again
            );
        }
        s
    }

    pub(crate) fn read(path: &str) -> Res<ClockedFirst> {
        let rows = read_tsv(path, |f| {
            // Older first.tsv files lack the last columns.
            let (f, reaped, again) = match f.len() {
                10 => (&f[..8], Some(f[8]), Some(f[9])),
                9 => (&f[..8], Some(f[8]), None),
                _ => (f, None, None),
            };
            let [label, sink, size, plain, stable, holds, copied, pages] = f[..] else { return None };
            let num = |v: &str| v.parse::<f64>().ok();
            let r = FirstRes {
                sink: SINKS.into_iter().find(|s| s.key() == sink)?,
                size: size.parse().ok()?,
                gib: [num(plain)?, num(stable)?],
                gib_reaped: match reaped {
                    Some(v) => num(v)?,
                    None => f64::NAN,
                },
                gib_again: match again {
                    Some(v) => num(v)?,
                    None => f64::NAN,
                },
                holds_per_pass: num(holds)?,
                copied_per_pass: num(copied)?,
                pages: pages.parse().ok()?,
            };
            Some((label.to_string(), r))
        })?;
        Ok(ClockedFirst { rows })
    }
}
