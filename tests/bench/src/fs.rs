//! One file system, all of it.

use crate::*;

/// Does this kernel take the flag? (EINVAL without the module.)
pub(crate) fn probe_stable(file: &BenchFile, stable_ok: &mut bool, stable_error: &mut Option<String>) -> Res {
    if *stable_ok {
        let p = pipe(0)?;
        if let Err(e) = splice(file.fd.raw(), Some(&mut 0i64), p.w.raw(), PAGE, SPLICE_F_STABLE) {
            *stable_ok = false;
            *stable_error = Some(format!("splice(SPLICE_F_STABLE): {e} (module not loaded?)"));
            progress(&format!("stable splice unavailable: {e}"));
        }
    }
    Ok(())
}

/// Plain and stable splice throughput only (`--throughput-only`): the
/// rows of `throughput.tsv`.
pub(crate) fn throughput_fs(o: &Opts, dir: &str, label: &str) -> Res<Vec<Point>> {
    let (file, file_bytes) = source_file(o, dir, label)?;
    let (mut stable_ok, mut stable_error) = (true, None);
    probe_stable(&file, &mut stable_ok, &mut stable_error)?;
    if let Some(e) = stable_error {
        return Err(e);
    }
    throughput(o, &file, file_bytes, None, true, label)
}

/// The source file of the throughput rows, `--file-mib` large, page cache
/// warm; and its size.
pub(crate) fn source_file(o: &Opts, dir: &str, label: &str) -> Res<(BenchFile, u64)> {
    let file_bytes = (o.file_mib as u64) << 20;
    progress(&format!("{label}: writing and warming a {} MiB source file in {dir}", o.file_mib));
    let file = create_file(dir, "source")?;
    fill_and_warm(file.fd.raw(), file_bytes, 1 << 20)?;
    Ok((file, file_bytes))
}

/// Plain and stable splice throughput measured in a VM whose clock counts
/// instructions (`throughput.tsv`: fs label, sink, size, method, GiB/s).
pub(crate) struct ClockedThroughput {
    pub(crate) rows: Vec<(String, Sink, usize, Method, f64)>,
}

impl ClockedThroughput {
    pub(crate) fn tsv(points: &[(String, Vec<Point>)]) -> String {
        let mut s = String::new();
        for (label, ps) in points {
            for p in ps {
                let _ = writeln!(s, "{label}\t{}\t{}\t{}\t{}", p.sink.key(), p.size, p.method.key(), p.gib_s());
            }
        }
        s
    }

    pub(crate) fn read(path: &str) -> Res<ClockedThroughput> {
        let rows = read_tsv(path, |f| {
            let [label, sink, size, method, gib] = f[..] else { return None };
            Some((
                label.to_string(),
                SINKS.into_iter().find(|s| s.key() == sink)?,
                size.parse::<usize>().ok()?,
                METHODS.into_iter().find(|m| m.key() == method)?,
                gib.parse::<f64>().ok()?,
            ))
        })?;
        Ok(ClockedThroughput { rows })
    }

    pub(crate) fn gib(&self, label: &str, sink: Sink, size: usize, m: Method) -> Option<f64> {
        self.rows.iter().find(|r| r.0 == label && r.1 == sink && r.2 == size && r.3 == m).map(|r| r.4)
    }
}

pub(crate) fn bench_fs(o: &Opts, dir: &str, label: &str, stable_ok: &mut bool, stable_error: &mut Option<String>) -> Res<FsRes> {
    let fstype = fs_type(dir).unwrap_or("unknown").to_string();
    let c_fs0 = read_counters();
    let (file, file_bytes) = source_file(o, dir, label)?;

    probe_stable(&file, stable_ok, stable_error)?;

    // The kernel's own copy: splice from an O_DIRECT descriptor goes through
    // copy_splice_read(). Probe it with one page.
    let (odirect, odirect_error) = match open(&file.path, libc::O_RDONLY | libc::O_DIRECT, 0) {
        Ok(fd) => {
            let p = pipe(0)?;
            match splice(fd.raw(), Some(&mut 0i64), p.w.raw(), PAGE, 0) {
                Ok(n) if n > 0 => (Some(fd), None),
                Ok(n) => (None, Some(format!("splice from O_DIRECT returned {n}"))),
                Err(e) => (None, Some(format!("splice from O_DIRECT: {e}"))),
            }
        }
        Err(e) => (None, Some(format!("open(O_DIRECT): {e}"))),
    };
    if let Some(e) = &odirect_error {
        progress(&format!("{label}: kernel copy unavailable: {e}"));
    }

    let points = throughput(o, &file, file_bytes, odirect.as_ref(), *stable_ok, label)?;
    drop(odirect);
    drop(file);

    progress(&format!("{label}: writer latency ({} trials)", o.trials));
    let latency = writer_latency(o, dir, *stable_ok)?;
    let large = match *stable_ok && large_rows(&fstype) {
        true => {
            progress(&format!("{label}: writer into a held large folio ({} trials per case)", (o.trials / 2).max(50)));
            Some(large_folio_writer(o, dir)?)
        }
        false => None,
    };
    progress(&format!("{label}: break under contention"));
    let small = contention(o, dir, *stable_ok, false)?;
    let contention_large = match large_rows(&fstype) {
        true => {
            progress(&format!("{label}: break under contention, large folios"));
            Some(contention(o, dir, *stable_ok, true)?)
        }
        false => None,
    };
    progress(&format!("{label}: 1 and 2 splicers on two files"));
    let scaling = scaling(o, dir, *stable_ok)?;
    progress(&format!("{label}: first stable splice of every page (new holds)"));
    let first = match *stable_ok {
        true => Some(first_holds(o, first_file(dir, 1 << 20)?.fd.raw(), CONT_SIZE, Sink::DevNull)?),
        false => None,
    };
    progress(&format!("{label}: sendfile 8 MiB to TCP with and without the stable mode"));
    let sendfile = sendfile_mode(o, dir, *stable_ok)?;
    progress(&format!("{label}: Samba's io_uring read pipeline to TCP (splice+splice stable/plain, read_fixed+send_zc, read+send)"));
    let pipeline = uring_pipeline(o, dir, *stable_ok)?;
    let counters = counter_delta(&c_fs0, &read_counters());
    Ok(FsRes {
        dir: dir.to_string(),
        label: label.to_string(),
        fstype,
        file_bytes,
        odirect_error,
        stable_error: stable_error.clone(),
        points,
        latency,
        large,
        contention: small,
        contention_large,
        scaling,
        first,
        sendfile,
        pipeline,
        pipeline_clocked: None,
        counters,
    })
}
