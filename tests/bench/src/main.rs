//! stable-splice-bench: what SPLICE_F_STABLE costs (`make bench`).
//!
//! Runs inside the test VM (scripts/bench -> scripts/vm-run) on each `--dir`
//! and compares, in the same run:
//!
//! * throughput and CPU time per GiB of one "transfer" of S bytes
//!   (S = 4 KiB, 64 KiB, 1 MiB, 8 MiB) from a page-cache-warm file to a sink
//!   (/dev/null, or a loopback TCP socket drained by a receiver thread), by
//!   - plain splice: one splice(file -> pipe) of S bytes, then the pipe is
//!     spliced to the sink,
//!   - stable splice: the same with SPLICE_F_STABLE on the file -> pipe splice,
//!   - read()+write(): pread() of S bytes into a user buffer, write() to the sink,
//!   - kernel copy: splice from an O_DIRECT descriptor of the same file, which
//!     the kernel serves with copy_splice_read() (a private copy per page);
//! * writer latency: pwrite(512 B) into the middle of a page that sits in an
//!   undrained pipe (stable clean, stable dirty, plain, nothing held), with
//!   the block device's reads and writes per write;
//! * a writer into a held large folio: the same pwrite into a page of a
//!   file written 2 MiB at a time, per folio size its break copied, against
//!   a write into an unheld folio and one copy of a folio of that size;
//! * break under contention: 1 MiB splices to /dev/null while a writer thread
//!   keeps overwriting the spliced range, written in 4 KiB writes and (ext4,
//!   xfs) in one 1 MiB write, which large folios cache whole;
//! * 1 vs 2 splicers on two files (do stable splices serialize?);
//! * once, on the first file system: buffered writes, reads and mmap store
//!   faults with the module loaded against not loaded (rmmod/insmod between
//!   interleaved runs; needs SS_KO, which the VM sets).
//!
//! Each point is the median of `--repeats` runs of at least `--secs-per-point`
//! seconds; methods are interleaved run by run. Writes a table to stdout and
//! bench.txt, bench.json and one SVG plot per file system to `--out`.
//! Performance targets are reported, never asserted: the exit status is
//! non-zero only for real errors.

mod json;
mod contention;
mod first;
mod fs;
mod large;
mod latency;
mod machine;
mod methods;
mod opts;
mod overhead;
mod pipeline;
mod report;
mod results;
mod scaling;
mod sendfile;
mod stats;
mod throughput;
mod workload;
mod svg;
mod sys;
mod uring;

// Every module sees what the others define (`use crate::*`).
pub(crate) use {contention::*, first::*, fs::*, large::*, latency::*, machine::*, methods::*, opts::*, overhead::*, pipeline::*, report::*, results::*, scaling::*, sendfile::*, stats::*, throughput::*, workload::*};
pub(crate) use json::Json;
pub(crate) use std::fmt::Write as _;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub(crate) use std::sync::Arc;
pub(crate) use std::time::{Duration, Instant};
pub(crate) use sys::*;


fn label_for(dir: &str, used: &[String]) -> String {
    let base = fs_type(dir).map(str::to_string).unwrap_or_else(|| {
        std::path::Path::new(dir).file_name().map_or("fs".into(), |n| n.to_string_lossy().into_owned())
    });
    let mut l = base.clone();
    let mut i = 2;
    while used.contains(&l) {
        l = format!("{base}-{i}");
        i += 1;
    }
    l
}

fn real_main() -> Res {
    let o = parse_args()?;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("create {}: {e}", o.out))?;
    mount_debugfs();
    let _pmax = PipeMaxGuard::raise(*SIZES.iter().max().unwrap_or(&(1 << 20)));
    let m = machine();
    progress(&m.summary);
    let module_loaded = std::path::Path::new(COUNTER_DIR).is_dir();
    // Wall-clock rows only: the instruction-clock runs do not see the host.
    if !(o.throughput_only || o.first_only || o.overhead_only || o.pipeline_only) {
        let t0 = Instant::now();
        let n = touch_free_memory();
        progress(&format!("touched {} MiB of free guest memory once ({:.1} s)", n >> 20, t0.elapsed().as_secs_f64()));
    }
    if o.throughput_only {
        let mut points = Vec::new();
        let mut labels = Vec::new();
        for dir in &o.dirs {
            let label = label_for(dir, &labels);
            labels.push(label.clone());
            let ps = throughput_fs(&o, dir, &label)?;
            points.push((label, ps));
        }
        let p = format!("{}/throughput.tsv", o.out.trim_end_matches('/'));
        std::fs::write(&p, ClockedThroughput::tsv(&points)).map_err(|e| format!("write {p}: {e}"))?;
        progress(&format!("wrote {p}"));
        return Ok(());
    }
    if o.pipeline_only {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for dir in &o.dirs {
            let label = label_for(dir, &labels);
            labels.push(label.clone());
            rows.push((label, uring_pipeline(&o, dir, true)?.ok_or("no pipeline result")?));
        }
        let p = format!("{}/pipeline.tsv", o.out.trim_end_matches('/'));
        std::fs::write(&p, ClockedPipeline::tsv(&rows)).map_err(|e| format!("write {p}: {e}"))?;
        progress(&format!("wrote {p}"));
        return Ok(());
    }
    if o.first_only {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for dir in &o.dirs {
            let label = label_for(dir, &labels);
            labels.push(label.clone());
            rows.extend(first_fs(&o, dir, &label)?);
        }
        let p = format!("{}/first.tsv", o.out.trim_end_matches('/'));
        std::fs::write(&p, ClockedFirst::tsv(&rows)).map_err(|e| format!("write {p}: {e}"))?;
        progress(&format!("wrote {p}"));
        return Ok(());
    }
    if let (true, Some((m, writer))) = (o.contention_only, o.contended) {
        for dir in &o.dirs {
            print!("{dir}: {}", contended_load(&o, dir, m, writer)?);
        }
        return Ok(());
    }
    if o.contention_only {
        for dir in &o.dirs {
            progress(&format!("{dir}: break under contention"));
            print!("{}", contention_table(&contention(&o, dir, module_loaded, false)?));
            if large_rows(fs_type(dir).unwrap_or("unknown")) {
                print!("{}", contention_table(&contention(&o, dir, module_loaded, true)?));
            }
        }
        return Ok(());
    }
    if o.large_only {
        let mut txt = String::new();
        for dir in &o.dirs {
            if !large_rows(fs_type(dir).unwrap_or("unknown")) {
                progress(&format!("{dir}: no large-folio rows on this file system"));
                continue;
            }
            progress(&format!("{dir}: writer into a held large folio"));
            let l = large_folio_writer(&o, dir)?;
            let _ = writeln!(txt, "{dir} ({})", fs_type(dir).unwrap_or("unknown"));
            txt += &large_table(&l);
            let mut t = Vec::new();
            large_targets(&mut t, fs_type(dir).unwrap_or("unknown"), &l);
            txt += &target_lines(&t);
        }
        print!("{txt}");
        let p = format!("{}/large.txt", o.out.trim_end_matches('/'));
        std::fs::write(&p, &txt).map_err(|e| format!("write {p}: {e}"))?;
        progress(&format!("wrote {p}"));
        return Ok(());
    }
    if o.latency_only {
        for dir in &o.dirs {
            progress(&format!("{dir}: writer latency"));
            print!("{}", latency_table(&writer_latency(&o, dir, module_loaded)?));
        }
        return Ok(());
    }
    if o.overhead_only {
        pin_to_last_cpu();
        progress("module loaded against not loaded (rmmod/insmod between runs)");
        let ov = module_overhead(&o, &o.dirs[0])?.ok_or("module not loaded, or SS_KO not set")?;
        print!("{}", overhead_table(Some(&ov)));
        let p = format!("{}/overhead.tsv", o.out.trim_end_matches('/'));
        std::fs::write(&p, overhead_tsv(&ov)).map_err(|e| format!("write {p}: {e}"))?;
        progress(&format!("wrote {p}"));
        return Ok(());
    }
    let c0 = read_counters();
    let t0 = Instant::now();
    let mut results = Vec::new();
    let mut labels = Vec::new();
    let mut stable_ok = true;
    let mut stable_error = None;
    for dir in &o.dirs {
        let label = label_for(dir, &labels);
        labels.push(label.clone());
        results.push(bench_fs(&o, dir, &label, &mut stable_ok, &mut stable_error)?);
    }
    let c1 = read_counters();
    let module = Json::obj()
        .with("loaded", module_loaded)
        .with("counter_dir", COUNTER_DIR)
        .with("counters_before", &c0)
        .with("counters_after", &c1)
        .with("counters_delta", &counter_delta(&c0, &c1));
    let overhead = match results.first() {
        _ if o.overhead_from.is_some() => o.overhead_from.as_deref().map(read_overhead_tsv).transpose()?,
        Some(r) if module_loaded => {
            progress(&format!("{}: module loaded against not loaded (rmmod/insmod between runs)", r.label));
            module_overhead(&o, &r.dir)?
        }
        _ => None,
    };
    let clocked = o.throughput_from.as_deref().map(ClockedThroughput::read).transpose()?;
    let first = o.first_from.as_deref().map(ClockedFirst::read).transpose()?;
    if let Some(mut cp) = o.pipeline_from.as_deref().map(ClockedPipeline::read).transpose()? {
        for r in &mut results {
            r.pipeline_clocked = cp.rows.iter().position(|x| x.0 == r.label).map(|i| cp.rows.swap_remove(i).1);
        }
    }
    let tg = targets(&results, overhead.as_ref(), clocked.as_ref(), first.as_ref());
    let mut txt = table(&o, &m, &results, &tg, module_loaded);
    txt += &overhead_table(overhead.as_ref());
    let _ = writeln!(txt, "total benchmark time {:.0} s", t0.elapsed().as_secs_f64());
    print!("{txt}");
    let mut j = to_json(&o, &m, &results, &tg, &module);
    if let Some(ov) = &overhead {
        let rows = ov.rows.iter().fold(Json::obj(), |j, &(n, on, off, direct)| {
            let row = Json::obj().with("loaded_ops_s", on).with("not_loaded_ops_s", off).with("ratio", on / off);
            let row = match direct {
                Some(d) => row.with("loaded_direct_calls_ops_s", d).with("ratio_direct_calls", d / off),
                None => row,
            };
            j.with(n, row)
        });
        j.set("module_overhead", rows);
    }
    j.set("total_secs", t0.elapsed().as_secs_f64());
    let out = o.out.trim_end_matches('/');
    let write = |name: &str, data: &str| -> Res {
        let p = format!("{out}/{name}");
        std::fs::write(&p, data).map_err(|e| format!("write {p}: {e}"))
    };
    write("bench.json", &j.to_pretty())?;
    write("bench.txt", &txt)?;
    let mut files = vec![format!("{out}/bench.json"), format!("{out}/bench.txt")];
    for r in &results {
        let name = format!("throughput-{}.svg", r.label);
        write(&name, &plot(r, &m, &o))?;
        files.push(format!("{out}/{name}"));
    }
    progress(&format!("wrote {}", files.join(", ")));
    Ok(())
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("stable-splice-bench: error: {e}");
        std::process::exit(1);
    }
}
