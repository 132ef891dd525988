//! Tables, targets, JSON, plots.

use crate::*;

pub(crate) fn fmt_opt(v: Option<f64>, w: usize, prec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:>w$.prec$}"),
        _ => format!("{:>w$}", "n/a"),
    }
}

pub(crate) fn us(ns: f64) -> String {
    format!("{:.2}", ns / 1000.0)
}

pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) fs: String,
    pub(crate) sink: Option<&'static str>,
    pub(crate) value: Option<f64>,
    pub(crate) threshold: f64,
    /// true: value must be >= threshold; false: <=.
    pub(crate) at_least: bool,
    pub(crate) detail: String,
}

impl Target {
    pub(crate) fn met(&self) -> Option<bool> {
        self.value.map(|v| if self.at_least { v >= self.threshold } else { v <= self.threshold })
    }
}

/// The targets of issue 9 ("Zero copy that pays"), reported as met or not
/// met, never asserted.
///
/// With `clocked` (`--throughput-from`), the throughput targets of ext4 and
/// xfs are judged by the instruction-clock run: under TCG the same
/// build's ratios swing by 20% between runs, with the instruction clock
/// they repeat.
pub(crate) fn targets(
    results: &[FsRes],
    overhead: Option<&OverheadRes>,
    clocked: Option<&ClockedThroughput>,
    first: Option<&ClockedFirst>,
) -> Vec<Target> {
    let mut t = Vec::new();
    // A file served once: every splice takes new holds (issue 21's
    // target, 0.8x plain), judged on the instruction clock with the
    // reaping of those holds counted in: what serving the file costs all
    // CPUs, the reaper's kworker included (the splice alone beside it).
    // The "-4k" files were written 4 KiB at a time: small folios, a hold
    // per page.
    for (label, r) in first.map_or(&[][..], |f| &f.rows[..]) {
        // The same file served again right after (every folio held by the
        // pass before): issue 21's 0.9x, on small folios (a lookup per
        // buffer) as on large ones.
        let again = Some(r.gib_again).filter(|g| g.is_finite());
        t.push(Target {
            name: format!(
                "a file served again >= 0.9x plain at {}, its folios held by the pass before (instruction clock)",
                svg::size_label(r.size)
            ),
            fs: label.clone(),
            sink: Some(r.sink.label()),
            value: again.map(|g| g / r.gib[0]),
            threshold: 0.9,
            at_least: true,
            detail: format!("served again {} GiB/s, plain {:.3} GiB/s", fmt_opt(again, 0, 3), r.gib[0]),
        });
        // Since 2026-12-06 an entry owns nothing and nothing ends it per
        // hold (Documentation/stable-splice.rst, "A record that owns
        // nothing"): the splice is all a file served once costs. The
        // on-demand walk (debugfs reap: tests, unmount, rmmod) is shown
        // beside it, not counted.
        let reaped = Some(r.gib_reaped).filter(|g| g.is_finite());
        t.push(Target {
            name: format!(
                "first stable splice of a page >= 0.8x plain at {}, all CPUs (nothing is deferred per hold; instruction clock)",
                svg::size_label(r.size)
            ),
            fs: label.clone(),
            sink: Some(r.sink.label()),
            value: Some(r.gib[1] / r.gib[0]),
            threshold: 0.8,
            at_least: true,
            detail: format!(
                "with an on-demand walk of its entries (debugfs reap, not per hold) {} GiB/s, plain {:.3} GiB/s; the splice {:.3} GiB/s, {:.2}x plain; {:.0} new holds and {:.0} bytes copied per pass of {} pages",
                fmt_opt(reaped, 0, 3),
                r.gib[0],
                r.gib[1],
                r.gib[1] / r.gib[0],
                r.holds_per_pass,
                r.copied_per_pass,
                r.pages,
            ),
        });
    }
    for r in results {
        let zero_copy_fs = matches!(r.fstype.as_str(), "ext4" | "xfs");
        let f = |v: Option<f64>| fmt_opt(v, 0, 3);
        if zero_copy_fs {
            for sink in SINKS {
                // Issue 21: a file served again >= 0.9x plain at every size
                // the first-splice rows measure (issue 9 had 0.75x at 64 KiB).
                let min = 0.9;
                for size in [64 << 10, 1 << 20, TARGET_SIZE] {
                    let (st, pl) = (r.gib(sink, size, Method::Stable), r.gib(sink, size, Method::Plain));
                    let this_run = r.ratio(sink, size, Method::Stable, Method::Plain);
                    let name = format!("stable >= {min}x plain splice at {}", svg::size_label(size));
                    let (name, value, detail) = match clocked {
                        Some(c) => {
                            let gib = |m| c.gib(&r.label, sink, size, m);
                            let (cs, cp) = (gib(Method::Stable), gib(Method::Plain));
                            let value = cs.zip(cp).map(|(s, p)| s / p);
                            let detail = format!(
                                "instruction clock: stable {} GiB/s, plain {} GiB/s; this run: {} ({} / {} GiB/s)",
                                f(cs),
                                f(cp),
                                fmt_opt(this_run, 0, 3),
                                f(st),
                                f(pl)
                            );
                            (format!("{name} (instruction clock)"), value, detail)
                        }
                        None => (name, this_run, format!("stable {} GiB/s, plain {} GiB/s", f(st), f(pl))),
                    };
                    t.push(Target { name, fs: r.label.clone(), sink: Some(sink.label()), value, threshold: min, at_least: true, detail });
                }
            }
        } else {
            let sink = Sink::DevNull;
            let (st, rw) = (r.gib(sink, TARGET_SIZE, Method::Stable), r.gib(sink, TARGET_SIZE, Method::ReadWrite));
            t.push(Target {
                name: "stable (a copy at splice) >= 1.3x read()+write() at 8 MiB".into(),
                fs: r.label.clone(),
                sink: Some(sink.label()),
                value: r.ratio(sink, TARGET_SIZE, Method::Stable, Method::ReadWrite),
                threshold: 1.3,
                at_least: true,
                detail: format!("stable {} GiB/s, read+write {} GiB/s", f(st), f(rw)),
            });
        }
        // Samba's pipeline: judged on the instruction clock where that run
        // has the file system (`--pipeline-from`), this run's TCG ratio beside it.
        if let Some(pr) = &r.pipeline {
            for size in FIRST_SIZES {
                let (ratio, best, which) = pr.stable_over_best_copying(size);
                let st = pr.get(size, uring::Pipeline::StableSplice).map(|x| x.0);
                let this_run = format!("stable {} GiB/s, best copying ({which}) {best:.3} GiB/s", fmt_opt(st, 0, 3));
                let name = format!("Samba's io_uring pipeline: stable splice beats every copying method at {}", svg::size_label(size));
                let (name, value, detail) = match &r.pipeline_clocked {
                    Some(c) => {
                        let (cr, cbest, cwhich) = c.stable_over_best_copying(size);
                        let cst = c.get(size, uring::Pipeline::StableSplice).map(|x| x.0);
                        let detail = format!(
                            "instruction clock: stable {} GiB/s, best copying ({cwhich}) {cbest:.3} GiB/s; this run: {} ({this_run})",
                            fmt_opt(cst, 0, 3),
                            fmt_opt(ratio, 0, 2)
                        );
                        (format!("{name} (instruction clock)"), cr, detail)
                    }
                    None => (name, ratio, this_run),
                };
                t.push(Target { name, fs: r.label.clone(), sink: Some(Sink::Tcp.label()), value, threshold: 1.0, at_least: true, detail });
            }
        }
        let l = &r.latency;
        let io = |v: Held| l.io_per_write.get(v as usize).copied().flatten();
        if let (Some(st), Some((rd, wr))) = (l.stable.as_ref(), io(Held::StableClean)) {
            // Background writeback (ext4's journal commits every 5 s) lands
            // in a timed write now and then, held or not: what counts is the
            // I/O beyond the controls'. A break that read or wrote the page
            // would add 1 per write.
            let control = [Held::Plain, Held::Nothing].into_iter().filter_map(io).map(|(r, w)| r + w).fold(0.0, f64::max);
            t.push(Target {
                name: "writer into a held clean page: no device I/O (beyond the controls')".into(),
                fs: r.label.clone(),
                sink: None,
                value: Some(rd + wr - control),
                threshold: 0.01,
                at_least: false,
                detail: format!(
                    "{rd:.3} reads and {wr:.3} writes per pwrite({WRITE_LEN} B); {control:.3} in the controls (page in a plain pipe, page not held)"
                ),
            });
            t.push(Target {
                name: "writer into a held clean page: p99 <= 2x nothing held".into(),
                fs: r.label.clone(),
                sink: None,
                value: Some(st.p99 as f64 / l.unheld.p99 as f64),
                threshold: 2.0,
                at_least: false,
                detail: format!("p99 {} us held, {} us nothing held", us(st.p99 as f64), us(l.unheld.p99 as f64)),
            });
        }
        if let (Some(_), Some((rd, wr))) = (l.stable_dirty.as_ref(), io(Held::StableDirty)) {
            t.push(Target {
                name: "writer into a held dirty page: no device read".into(),
                fs: r.label.clone(),
                sink: None,
                value: Some(rd),
                threshold: 0.0,
                at_least: false,
                detail: format!("{rd:.3} reads and {wr:.3} writes per pwrite({WRITE_LEN} B)"),
            });
        }
        if let Some(l) = &r.large {
            large_targets(&mut t, &r.label, l);
        }
        // Issue 21's targets under contention: the writer beside a stable
        // splicer of the same range against beside a plain one, and the
        // stable splicer with the writer against alone; for a range in
        // small folios and one in large folios.
        for c in core::iter::once(&r.contention).chain(r.contention_large.as_ref()) {
            contention_targets(&mut t, &r.label, c);
        }
        if let (Some(st), Some(pl)) = (r.scaling.speedup(Method::Stable), r.scaling.speedup(Method::Plain)) {
            t.push(Target {
                name: "2 stable splicers on 2 files scale like plain (>= 0.9x its speedup)".into(),
                fs: r.label.clone(),
                sink: Some("/dev/null"),
                value: Some(st / pl),
                threshold: 0.9,
                at_least: true,
                detail: format!("2 vs 1 splicers: stable {st:.2}x, plain {pl:.2}x"),
            });
        }
    }
    if let Some(ov) = overhead {
        // Both forms of the module: its default callbacks, then direct_calls=1.
        let forms: [(&str, fn(&(&str, f64, f64, Option<f64>)) -> Option<f64>); 2] =
            [("", |r| Some(r.1)), (" with direct_calls=1", |r| r.3)];
        for (form, loaded) in forms {
            for row in &ov.rows {
                let (name, off) = (row.0, row.2);
                let Some(on) = loaded(row) else { continue };
                t.push(Target {
                    name: format!("module loaded{form} costs {name} <= 3%"),
                    fs: "-".into(),
                    sink: None,
                    value: Some(on / off),
                    threshold: 0.97,
                    at_least: true,
                    detail: format!("{on:.0} ops/s loaded{form}, {off:.0} ops/s not loaded"),
                });
            }
        }
    }
    t
}

pub(crate) fn overhead_table(ov: Option<&OverheadRes>) -> String {
    let mut s = String::new();
    if let Some(ov) = ov {
        let _ = writeln!(
            s,
            "--- module loaded against not loaded (interleaved, rmmod/insmod between runs; ops/s medians; \
             with scripts/bench in a VM whose clock counts guest instructions, qemu -icount shift=0: \
             ops/s there are work per op, not emulator speed) ---"
        );
        for &(n, on, off, direct) in &ov.rows {
            let _ = write!(s, "{n:<42} loaded {on:>12.0}  not loaded {off:>12.0}  ratio {:.3}", on / off);
            if let Some(d) = direct {
                let _ = write!(s, "  direct_calls=1 {d:>12.0}  ratio {:.3}", d / off);
            }
            let _ = writeln!(s);
        }
    }
    s
}

pub(crate) fn table(o: &Opts, m: &Machine, results: &[FsRes], tg: &[Target], module_loaded: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "stable-splice benchmark (make bench){}", if o.quick { " -- QUICK run, not for quoting" } else { "" });
    let _ = writeln!(s, "{}", m.summary);
    let _ = writeln!(
        s,
        "each point: median of {} runs of >= {} s (methods interleaved); CPU = getrusage(RUSAGE_SELF), all threads incl. the TCP receiver",
        o.repeats, o.secs
    );
    let _ = writeln!(s, "module: {}", if module_loaded { "stable_splice loaded" } else { "stable_splice NOT loaded (no counters)" });
    for r in results {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "=== {} ({}, {}): source file {} MiB, page cache warm ===",
            r.label,
            r.dir,
            r.fstype,
            r.file_bytes >> 20
        );
        if let Some(e) = &r.stable_error {
            let _ = writeln!(s, "stable splice unavailable: {e}");
        }
        if let Some(e) = &r.odirect_error {
            let _ = writeln!(s, "kernel copy (O_DIRECT splice) unavailable: {e}");
        }
        for sink in SINKS {
            let _ = writeln!(s, "--- sink {}: GiB/s and CPU s/GiB per method ---", sink.label());
            let mut h1 = format!("{:<8}", "size");
            let mut h2 = format!("{:<8}", "");
            for mth in METHODS {
                let _ = write!(h1, " | {:^15}", mth.short());
                let _ = write!(h2, " | {:>7} {:>7}", "GiB/s", "s/GiB");
            }
            let _ = write!(h1, " | {:>8} {:>8} {:>8}", "stable/", "stable/", "stable/");
            let _ = write!(h2, " | {:>8} {:>8} {:>8}", "plain", "rw", "kcopy");
            let _ = writeln!(s, "{h1}\n{h2}");
            for size in SIZES {
                let mut row = format!("{:<8}", svg::size_label(size));
                for mth in METHODS {
                    let p = r.point(sink, size, mth);
                    let _ = write!(row, " | {} {}", fmt_opt(p.map(Point::gib_s), 7, 3), fmt_opt(p.map(Point::cpu_per_gib), 7, 3));
                }
                let rt = |b| match r.ratio(sink, size, Method::Stable, b) {
                    Some(x) if x.is_finite() => format!("{x:>7.2}x"),
                    _ => format!("{:>8}", "n/a"),
                };
                let _ = write!(row, " | {} {} {}", rt(Method::Plain), rt(Method::ReadWrite), rt(Method::KernelCopy));
                let _ = writeln!(s, "{row}");
            }
        }
        s += &latency_table(&r.latency);
        if let Some(l) = &r.large {
            s += &large_table(l);
        }
        for (m, g) in &r.scaling.gib {
            let _ = writeln!(
                s,
                "--- 1 vs 2 splicers on two files, 1 MiB to /dev/null: {} {:.3} -> {:.3} GiB/s ({:.2}x)",
                m.label(),
                g[0],
                g[1],
                g[1] / g[0]
            );
        }
        if let Some(fr) = &r.first {
            let _ = writeln!(
                s,
                "--- first stable splice of every page (a file served once: its entries taken out before each pass), 1 MiB to /dev/null over {} MiB: plain {:.3} GiB/s, stable {:.3} GiB/s ({:.2}x), with an on-demand walk of its entries {:.3} GiB/s ({:.2}x), served again right after {:.3} GiB/s ({:.2}x); {:.0} new holds per pass of {} pages",
                FIRST_FILE >> 20,
                fr.gib[0],
                fr.gib[1],
                fr.gib[1] / fr.gib[0],
                fr.gib_reaped,
                fr.gib_reaped / fr.gib[0],
                fr.gib_again,
                fr.gib_again / fr.gib[0],
                fr.holds_per_pass,
                fr.pages
            );
        }
        if let Some(pr) = &r.pipeline {
            let _ = writeln!(
                s,
                "--- Samba's read pipeline on io_uring to loopback TCP, {} requests in flight: GiB/s and CPU s/GiB of all CPUs ---",
                pr.depth
            );
            s += &pr.table();
            if let Some(c) = &r.pipeline_clocked {
                let _ = writeln!(s, "the same on the instruction clock (qemu -icount, 1 vCPU: GiB/s is bytes per guest instruction of all the work):");
                s += &c.table();
            }
            let _ = writeln!(
                s,
                "counters over the stable runs: bytes_zero_copy {}, bytes_copied_at_splice {}, holds_refused {}",
                cget(&pr.counters, "bytes_zero_copy"),
                cget(&pr.counters, "bytes_copied_at_splice"),
                cget(&pr.counters, "holds_refused")
            );
        }
        let sf = &r.sendfile;
        match sf.mode {
            Some(m) => {
                let _ = writeln!(
                    s,
                    "--- sendfile() 8 MiB to loopback TCP (nginx `sendfile on;`): {:.3} GiB/s plain, {:.3} GiB/s in the stable mode ({:.2}x); in the mode bytes_zero_copy {}, bytes_copied_at_splice {}, holds_refused {}",
                    sf.plain,
                    m,
                    m / sf.plain,
                    cget(&sf.counters, "bytes_zero_copy"),
                    cget(&sf.counters, "bytes_copied_at_splice"),
                    cget(&sf.counters, "holds_refused")
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "--- sendfile() 8 MiB to loopback TCP: {:.3} GiB/s plain; stable mode not measured: {}",
                    sf.plain,
                    sf.error.as_deref().unwrap_or("module not loaded")
                );
            }
        }
        s += &contention_table(&r.contention);
        if let Some(c) = &r.contention_large {
            s += &contention_table(c);
        }
        let _ = writeln!(
            s,
            "counters on {} (whole run): stable_calls {}, bytes_copied_at_splice {}, bytes_zero_copy {}, breaks {}",
            r.label,
            cget(&r.counters, "stable_calls"),
            cget(&r.counters, "bytes_copied_at_splice"),
            cget(&r.counters, "bytes_zero_copy"),
            cget(&r.counters, "breaks")
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "=== targets (reported, not asserted) ===");
    s += &target_lines(tg);
    let _ = writeln!(s);
    for r in results {
        let (zc, cp) = (cget(&r.counters, "bytes_zero_copy"), cget(&r.counters, "bytes_copied_at_splice"));
        let _ = writeln!(
            s,
            "notes: {}: stable splices put {zc} bytes into pipes zero copy and copied {cp} bytes at splice time (holds taken {}, refused {})",
            r.label,
            cget(&r.counters, "holds_taken"),
            cget(&r.counters, "holds_refused")
        );
    }
    let _ = writeln!(s, "       kernel copy on a block file system is a real O_DIRECT read (here through a loop device), not only a memory copy.");
    s
}

/// One line per target: met, not met or n/a, and what it was measured as.
pub(crate) fn target_lines(tg: &[Target]) -> String {
    let mut s = String::new();
    for t in tg {
        let state = match t.met() {
            Some(true) => "met    ",
            Some(false) => "NOT met",
            None => "n/a    ",
        };
        let where_ = match t.sink {
            Some(k) => format!("{} -> {}", t.fs, k),
            None => t.fs.clone(),
        };
        let _ = writeln!(
            s,
            "[{state}] {:<22} {}: {} (want {} {}; {})",
            where_,
            t.name,
            fmt_opt(t.value, 0, 2),
            if t.at_least { ">=" } else { "<=" },
            t.threshold,
            t.detail
        );
    }
    s
}

/// The writer-latency rows of one file system.
pub(crate) fn latency_table(l: &LatencyRes) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "--- writer latency: pwrite({WRITE_LEN} B) into the middle of a page held in an undrained pipe, {} trials (us; device I/O per write) ---",
        l.plain.n
    );
    let _ = writeln!(s, "{:<36} {:>9} {:>9} {:>9} {:>8} {:>8}", "", "median", "p99", "max", "reads", "writes");
    let lrow = |v: Held, x: Option<&Lat>| {
        let io = l.io_per_write.get(v as usize).copied().flatten();
        let (rd, wr) = io.map_or(("n/a".into(), "n/a".into()), |(r, w)| (format!("{r:.3}"), format!("{w:.3}")));
        match x {
            Some(x) => format!(
                "{:<36} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
                v.label(),
                us(x.median as f64),
                us(x.p99 as f64),
                us(x.max as f64),
                rd,
                wr
            ),
            None => format!("{:<36} {:>9}\n", v.label(), "n/a"),
        }
    };
    s += &lrow(Held::StableClean, l.stable.as_ref());
    s += &lrow(Held::StableDirty, l.stable_dirty.as_ref());
    s += &lrow(Held::Plain, Some(&l.plain));
    s += &lrow(Held::Nothing, Some(&l.unheld));
    let lrow = |name: &str, x: Option<&Lat>| match x {
        Some(x) => format!("{:<36} {:>9} {:>9} {:>9}\n", name, us(x.median as f64), us(x.p99 as f64), us(x.max as f64)),
        None => format!("{name:<36} {:>9}\n", "n/a"),
    };
    s += &lrow("pread 4 KiB (folio copy)", Some(&l.pread_4k));
    let _ = writeln!(
        s,
        "one folio copy = pread 4 KiB median {} us; per page of a 1 MiB pread {} us; user memcpy 4 KiB {} us",
        us(l.folio_copy_ns()),
        us(l.pread_per_page_1mib_ns),
        us(l.memcpy_4k_ns)
    );
    if let Some(st) = &l.stable {
        let _ = writeln!(
            s,
            "writer p99 / one folio copy = {:.2} (stable held), {:.2} (plain held), {:.2} (nothing held)",
            st.p99 as f64 / l.folio_copy_ns(),
            l.plain.p99 as f64 / l.folio_copy_ns(),
            l.unheld.p99 as f64 / l.folio_copy_ns()
        );
    }
    let _ = writeln!(
        s,
        "counters during the trials: breaks {}, bytes_copied_at_splice {}, bytes_zero_copy {}, max_writer_wait_ns {}",
        cget(&l.counters, "breaks"),
        cget(&l.counters, "bytes_copied_at_splice"),
        cget(&l.counters, "bytes_zero_copy"),
        cget(&l.counters, "max_writer_wait_ns")
    );
    s
}

pub(crate) fn cget(c: &Counters, k: &str) -> String {
    c.get(k).map_or("n/a".into(), |v| v.to_string())
}

pub(crate) fn to_json(o: &Opts, m: &Machine, results: &[FsRes], tg: &[Target], module: &Json) -> Json {
    let mut fss = Json::Arr(Vec::new());
    for r in results {
        let mut pts = Json::Arr(Vec::new());
        for p in &r.points {
            pts.push(
                Json::obj()
                    .with("sink", p.sink.key())
                    .with("size", p.size)
                    .with("method", p.method.key())
                    .with("method_label", p.method.label())
                    .with("gib_s", p.gib_s())
                    .with("cpu_s_per_gib", p.cpu_per_gib())
                    .with("runs_gib_s", p.runs.iter().map(Run::gib_s).collect::<Vec<_>>())
                    .with("runs_cpu_s_per_gib", p.runs.iter().map(Run::cpu_per_gib).collect::<Vec<_>>())
                    .with("runs_bytes", p.runs.iter().map(|r| r.bytes).collect::<Vec<_>>())
                    .with("runs_secs", p.runs.iter().map(|r| r.wall).collect::<Vec<_>>())
                    .with("counters_delta", &p.counters),
            );
        }
        let mut ratios = Json::Arr(Vec::new());
        for sink in SINKS {
            for size in SIZES {
                ratios.push(
                    Json::obj()
                        .with("sink", sink.key())
                        .with("size", size)
                        .with("stable_over_plain", r.ratio(sink, size, Method::Stable, Method::Plain))
                        .with("stable_over_read_write", r.ratio(sink, size, Method::Stable, Method::ReadWrite))
                        .with("stable_over_kernel_copy", r.ratio(sink, size, Method::Stable, Method::KernelCopy)),
                );
            }
        }
        let mut methods = Json::obj();
        for mth in METHODS {
            let avail = r.points.iter().any(|p| p.method == mth);
            let why = match mth {
                Method::Stable => r.stable_error.clone(),
                Method::KernelCopy => r.odirect_error.clone(),
                _ => None,
            };
            methods.set(mth.key(), Json::obj().with("label", mth.label()).with("available", avail).with("unavailable_reason", why));
        }
        let l = &r.latency;
        let latency = Json::obj()
            .with(
                "method",
                "per trial: make the page clean (sync_file_range) or dirty (a pwrite), splice it into a pipe, time a pwrite of 512 B into the middle of the page, then drain the pipe; device reads and writes from the block device's stat around the timed pwrite",
            )
            .with("held_by_stable_splice", l.stable.as_ref().map(Lat::json))
            .with("held_by_stable_splice_dirty", l.stable_dirty.as_ref().map(Lat::json))
            .with(
                "device_io_per_write",
                HELD.iter().fold(Json::obj(), |j, v| {
                    let io = l.io_per_write.get(*v as usize).copied().flatten();
                    j.with(v.key(), io.map(|(r, w)| Json::obj().with("reads", r).with("writes", w)))
                }),
            )
            .with("held_by_plain_splice", l.plain.json())
            .with("nothing_held", l.unheld.json())
            .with("pread_4k", l.pread_4k.json())
            .with("pread_per_page_of_1mib_ns", l.pread_per_page_1mib_ns)
            .with("memcpy_4k_user_ns", l.memcpy_4k_ns)
            .with("one_folio_copy_ns", l.folio_copy_ns())
            .with("one_folio_copy_definition", "median of pread(4 KiB) from the warm page cache")
            .with("stable_p99_over_folio_copy", l.stable.as_ref().map(|s| s.p99 as f64 / l.folio_copy_ns()))
            .with("plain_p99_over_folio_copy", l.plain.p99 as f64 / l.folio_copy_ns())
            .with("counters_delta", &l.counters);
        fss.push(
            Json::obj()
                .with("label", r.label.clone())
                .with("dir", r.dir.clone())
                .with("fstype", r.fstype.clone())
                .with("source_file_bytes", r.file_bytes)
                .with("methods", methods)
                .with("throughput", pts)
                .with("ratios", ratios)
                .with("writer_latency", latency)
                .with("writer_into_held_large_folio", r.large.as_ref().map(large_json))
                .with(
                    "scaling_1_vs_2_splicers",
                    r.scaling.gib.iter().fold(Json::obj(), |j, (m, g)| {
                        j.with(m.key(), Json::obj().with("one_gib_s", g[0]).with("two_gib_s", g[1]))
                    }),
                )
                .with(
                    "first_holds_1mib_devnull",
                    r.first.as_ref().map(|f| {
                        Json::obj()
                            .with("file_bytes", FIRST_FILE)
                            .with("plain_gib_s", f.gib[0])
                            .with("stable_gib_s", f.gib[1])
                            .with("stable_over_plain", f.gib[1] / f.gib[0])
                            .with("stable_with_reaping_gib_s", f.gib_reaped)
                            .with("stable_with_reaping_over_plain", f.gib_reaped / f.gib[0])
                            .with("stable_served_again_gib_s", f.gib_again)
                            .with("stable_served_again_over_plain", f.gib_again / f.gib[0])
                            .with("new_holds_per_pass", f.holds_per_pass)
                            .with("pages_per_pass", f.pages)
                    }),
                )
                .with("contention", contention_json(&r.contention))
                .with("contention_large", r.contention_large.as_ref().map(contention_json))
                .with(
                    "sendfile_8mib_tcp",
                    Json::obj()
                        .with("plain_gib_s", r.sendfile.plain)
                        .with("stable_mode_gib_s", r.sendfile.mode)
                        .with("stable_mode_over_plain", r.sendfile.mode.map(|m| m / r.sendfile.plain))
                        .with("stable_mode_counters", &r.sendfile.counters),
                )
                .with(
                    "io_uring_pipeline_tcp",
                    r.pipeline.as_ref().map(|pr| {
                        pr.rows.iter().fold(Json::obj().with("depth", pr.depth).with("stable_counters", &pr.counters), |j, &(size, m, g, c)| {
                            j.with(&format!("{}/{}", m.label(), size), Json::obj().with("gib_s", g).with("cpu_s_per_gib_all_cpus", c))
                        })
                    }),
                )
                .with(
                    "io_uring_pipeline_tcp_instruction_clock",
                    r.pipeline_clocked.as_ref().map(|pr| {
                        pr.rows.iter().fold(Json::obj().with("depth", pr.depth), |j, &(size, m, g, c)| {
                            j.with(&format!("{}/{}", m.label(), size), Json::obj().with("gib_s", g).with("cpu_s_per_gib_all_cpus", c))
                        })
                    }),
                )
                .with("counters_delta", &r.counters),
        );
    }
    let mut tj = Json::Arr(Vec::new());
    for t in tg {
        tj.push(
            Json::obj()
                .with("target", t.name.clone())
                .with("fs", t.fs.clone())
                .with("sink", t.sink)
                .with("value", t.value)
                .with("threshold", t.threshold)
                .with("comparison", if t.at_least { ">=" } else { "<=" })
                .with("met", t.met())
                .with("detail", t.detail.clone()),
        );
    }
    Json::obj()
        .with("schema", "stable-splice-bench/1")
        .with("quick", o.quick)
        .with("secs_per_point", o.secs)
        .with("repeats", o.repeats)
        .with("latency_trials", o.trials)
        .with("sizes", SIZES.to_vec())
        .with("machine", m.json.clone())
        .with("module", module.clone())
        .with("filesystems", fss)
        .with("targets", tj)
}

pub(crate) fn plot(r: &FsRes, m: &Machine, o: &Opts) -> String {
    let panels: Vec<svg::Panel> = SINKS
        .iter()
        .map(|&sink| svg::Panel {
            title: format!("{} -> {}", r.label, sink.label()),
            series: METHODS
                .iter()
                .map(|&mth| svg::Series {
                    label: mth.label().to_string(),
                    color: mth.color(),
                    dashed: mth == Method::Stable,
                    points: SIZES.iter().map(|&s| (s, r.gib(sink, s, mth))).collect(),
                })
                .collect(),
        })
        .collect();
    svg::render(
        &format!("stable-splice: throughput vs transfer size on {}{}", r.label, if o.quick { " (quick run)" } else { "" }),
        &format!("{}; median of {} runs of >= {} s per point", m.short, o.repeats, o.secs),
        &panels,
    )
}

/// bench.json's record of one "break under contention" table.
fn contention_json(c: &ContRes) -> Json {
    let mut cont = Json::obj()
        .with("transfer_size", CONT_SIZE)
        .with("sink", "devnull")
        .with("writer", "one thread, pwrite(4 KiB) round-robin over the spliced 1 MiB, no pause")
        .with("range_written", if c.large { "one 1 MiB write (large folios where cached so)" } else { "4 KiB writes" });
    for (mi, mth) in c.methods.iter().enumerate() {
        let g = |k: usize| c.gib_s(mi, k);
        let w = c.writer[mi].as_ref();
        cont.set(
            mth.key(),
            Json::obj()
                .with("alone_gib_s", g(0))
                .with("contended_gib_s", g(1))
                .with("contended_over_alone", g(1) / g(0))
                .with("runs_alone_gib_s", c.runs[mi][0].iter().map(Run::gib_s).collect::<Vec<_>>())
                .with("runs_contended_gib_s", c.runs[mi][1].iter().map(Run::gib_s).collect::<Vec<_>>())
                .with("writer_writes_per_s", w.map(|x| x.1))
                .with("writer_latency", w.map(|x| x.0.json()))
                .with("counters_delta_alone", &c.counters[mi][0])
                .with("counters_delta_contended", &c.counters[mi][1]),
        );
    }
    cont
}

/// The contention targets of one "break under contention" table.
fn contention_targets(t: &mut Vec<Target>, label: &str, c: &ContRes) {
    let at = |m: Method| c.methods.iter().position(|&x| x == m);
    if let (Some(si), Some(pi)) = (at(Method::Stable), at(Method::Plain)) {
        if let (Some((ls, ws)), Some((lp, wp))) = (&c.writer[si], &c.writer[pi]) {
            t.push(Target {
                name: format!("a writer beside a stable splicer{}: >= 0.5x its writes beside a plain one", folios(c)),
                fs: label.to_string(),
                sink: Some("/dev/null"),
                value: Some(ws / wp),
                threshold: 0.5,
                at_least: true,
                detail: format!(
                    "{ws:.0} writes/s beside stable, {wp:.0} beside plain; writer p99 {} us / {} us",
                    us(ls.p99 as f64),
                    us(lp.p99 as f64)
                ),
            });
        }
        let (alone, beside) = (c.gib_s(si, 0), c.gib_s(si, 1));
        // The plain splicer beside the same writer, for what the file
        // system itself loses there (xfs's IOLOCK, tmpfs's copies).
        let plain = c.gib_s(pi, 1) / c.gib_s(pi, 0);
        t.push(Target {
            name: format!("the stable splicer beside a writer{}: >= 0.8x its speed alone", folios(c)),
            fs: label.to_string(),
            sink: Some("/dev/null"),
            value: Some(beside / alone),
            threshold: 0.8,
            at_least: true,
            detail: format!(
                "{beside:.3} GiB/s beside the writer, {alone:.3} GiB/s alone; a plain splicer beside the same writer: {plain:.2}x of its speed alone"
            ),
        });
    }
}

/// How a contention table's range was written, for its rows' names.
fn folios(c: &ContRes) -> &'static str {
    if c.large { " (large folios)" } else { "" }
}

/// The "break under contention" rows: splicer alone and beside a writer,
/// the writer's rate and p99, per method.
pub(crate) fn contention_table(c: &ContRes) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "--- break under contention{}: 1 MiB splice -> /dev/null, a writer thread pwrites 4 KiB blocks over the range, {} ---",
        folios(c),
        if c.large { "written in one 1 MiB write" } else { "written 4 KiB at a time" }
    );
    let _ = writeln!(
        s,
        "{:<14} {:>12} {:>14} {:>8} {:>15} {:>12} {:>8} {:>14}",
        "method", "alone GiB/s", "w/ writer", "ratio", "writer writes/s", "writer p99us", "breaks", "snapshot bytes"
    );
    for (mi, mth) in c.methods.iter().enumerate() {
        let (a, b) = (c.gib_s(mi, 0), c.gib_s(mi, 1));
        let (wps, wp99) = match &c.writer[mi] {
            Some((l, r)) => (format!("{r:.0}"), us(l.p99 as f64)),
            None => ("n/a".into(), "n/a".into()),
        };
        let _ = writeln!(
            s,
            "{:<14} {:>12.3} {:>14.3} {:>7.2}x {:>15} {:>12} {:>8} {:>14}",
            mth.short(),
            a,
            b,
            b / a,
            wps,
            wp99,
            cget(&c.counters[mi][1], "breaks"),
            cget(&c.counters[mi][1], "snapshot_bytes")
        );
    }
    if let Some(mi) = c.methods.iter().position(|&m| m == Method::Stable) {
        let k = |name| cget(&c.counters[mi][1], name);
        let _ = writeln!(
            s,
            "stable beside the writer: breaks_written_back {}, bytes_copied_at_splice {}, bytes_zero_copy {}",
            k("breaks_written_back"),
            k("bytes_copied_at_splice"),
            k("bytes_zero_copy")
        );
    }
    s
}
