//! Throughput: one transfer of S bytes, by each method, to each sink.

use crate::*;

/// Fills `f` with `bytes` of non-zero data in `chunk`-sized writes, fsyncs it
/// (no writeback during the measurements) and reads it once (cache warm).
pub(crate) fn fill_and_warm(fd: i32, bytes: u64, chunk: usize) -> Res {
    let mut buf = vec![0u8; chunk];
    let mut off = 0;
    while off < bytes {
        pattern((off / chunk as u64) as u8, off, &mut buf);
        pwrite_full(fd, &buf, off)?;
        off += chunk as u64;
    }
    fsync(fd)?;
    off = 0;
    while off < bytes {
        pread_full(fd, &mut buf, off)?;
        off += chunk as u64;
    }
    Ok(())
}

pub(crate) fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}


pub(crate) fn throughput(
    o: &Opts,
    file: &BenchFile,
    file_bytes: u64,
    odirect: Option<&Fd>,
    stable_ok: bool,
    label: &str,
) -> Res<Vec<Point>> {
    progress(&format!("{label}: throughput ({} s per run, {} runs per point)", o.secs, o.repeats));
    let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
    let mut points = Vec::new();
    for sink in SINKS {
        let mut tcp = if sink == Sink::Tcp { Some(TcpSink::new()?) } else { None };
        let out = match &tcp {
            Some(t) => t.tx.raw(),
            None => devnull.raw(),
        };
        for size in SIZES {
            let pipe = pipe(size)?;
            let mut buf = vec![1u8; size];
            let methods: Vec<Method> = METHODS
                .into_iter()
                .filter(|&m| match m {
                    _ if o.throughput_only && !matches!(m, Method::Plain | Method::Stable) => false,
                    Method::Stable => stable_ok,
                    Method::KernelCopy => odirect.is_some(),
                    _ => true,
                })
                .collect();
            let mut runs: Vec<Vec<Run>> = vec![Vec::new(); 4];
            let mut counters: Vec<Counters> = vec![Counters::new(); 4];
            let mut w = Xfer {
                method: Method::Plain,
                size,
                file: file.fd.raw(),
                odirect: odirect.map(Fd::raw),
                file_bytes,
                next: [0; 4],
                pipe: &pipe,
                buf: &mut buf,
                out,
                tcp: tcp.as_mut(),
            };
            // Warm-up (a quarter run each), then the runs, interleaved
            // method by method so that drift hits every method alike.
            for &m in &methods {
                w.method = m;
                run_once(&mut w, o.secs / 4.0)?;
            }
            for _ in 0..o.repeats {
                for &m in &methods {
                    w.method = m;
                    let c0 = read_counters();
                    let r = run_once(&mut w, o.secs)?;
                    let d = counter_delta(&c0, &read_counters());
                    merge_counters(&mut counters[m.idx()], d);
                    runs[m.idx()].push(r);
                }
            }
            let mut line = format!("{label} {:>9} {:>7}:", sink.label(), svg::size_label(size));
            for &m in &methods {
                let p = Point {
                    sink,
                    size,
                    method: m,
                    runs: std::mem::take(&mut runs[m.idx()]),
                    counters: std::mem::take(&mut counters[m.idx()]),
                };
                let _ = write!(line, "  {} {:.3} GiB/s", m.short(), p.gib_s());
                points.push(p);
            }
            progress(&line);
        }
        if let Some(t) = tcp.take() {
            t.finish()?;
        }
    }
    Ok(points)
}
