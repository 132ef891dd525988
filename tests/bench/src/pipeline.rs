//! Samba's io_uring pipeline.

use crate::*;

/// Samba's read pipeline on io_uring (`src/uring.rs`) to loopback TCP:
/// GiB/s and CPU s/GiB of all CPUs (io-wq workers, softirqs and the
/// receiver included) per method and request size.
pub(crate) struct PipelineRes {
    pub(crate) depth: usize,
    /// (size, method, median GiB/s, median all-CPU s/GiB).
    pub(crate) rows: Vec<(usize, uring::Pipeline, f64, f64)>,
    /// Counter deltas over the stable runs.
    pub(crate) counters: Counters,
}

impl PipelineRes {
    pub(crate) fn get(&self, size: usize, m: uring::Pipeline) -> Option<(f64, f64)> {
        self.rows.iter().find(|r| r.0 == size && r.1 == m).map(|r| (r.2, r.3))
    }

    /// Stable GiB/s over the best copying method's at `size`, and that
    /// method's label.
    pub(crate) fn stable_over_best_copying(&self, size: usize) -> (Option<f64>, f64, &'static str) {
        let st = self.get(size, uring::Pipeline::StableSplice).map(|x| x.0);
        let (best, which) = uring::PIPELINES
            .iter()
            .filter(|m| m.copies())
            .filter_map(|&m| self.get(size, m).map(|x| (x.0, m.label())))
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
        (st.map(|s| s / best), best, which)
    }

    /// The table of `bench.txt`: GiB/s and all-CPU s/GiB per method and size.
    pub(crate) fn table(&self) -> String {
        let mut s = format!("{:<8}", "size");
        for m in uring::PIPELINES {
            let _ = write!(s, " | {:>23}", m.label());
        }
        let _ = writeln!(s, " | stable/best copying");
        for size in FIRST_SIZES {
            let _ = write!(s, "{:<8}", svg::size_label(size));
            for m in uring::PIPELINES {
                let (g, c) = self.get(size, m).unwrap_or((f64::NAN, f64::NAN));
                let _ = write!(s, " | {g:>8.3} GiB/s {c:>6.2} s");
            }
            let _ = writeln!(s, " | {:.2}x", self.stable_over_best_copying(size).0.unwrap_or(f64::NAN));
        }
        s
    }
}

/// The pipeline measured in a VM whose clock counts instructions
/// (`--pipeline-only`, written to and read from `pipeline.tsv`): one vCPU
/// runs the submitter, io-wq, softirqs and the receiver, so GiB/s there is
/// bytes per guest instruction of all of them. Under TCG with two vCPUs the
/// same build's 64 KiB ratios swung from 0.78x to 1.62x between runs.
pub(crate) struct ClockedPipeline {
    pub(crate) rows: Vec<(String, PipelineRes)>,
}

impl ClockedPipeline {
    pub(crate) fn tsv(rows: &[(String, PipelineRes)]) -> String {
        let mut s = String::new();
        for (label, pr) in rows {
            for &(size, m, g, c) in &pr.rows {
                let _ = writeln!(s, "{label}\t{size}\t{}\t{g}\t{c}", m.key());
            }
        }
        s
    }

    pub(crate) fn read(path: &str) -> Res<ClockedPipeline> {
        let lines = read_tsv(path, |f| {
            let [label, size, key, gib, cpu] = f[..] else { return None };
            let m = uring::PIPELINES.into_iter().find(|m| m.key() == key)?;
            Some((label.to_string(), (size.parse().ok()?, m, gib.parse::<f64>().ok()?, cpu.parse::<f64>().ok()?)))
        })?;
        let mut rows: Vec<(String, PipelineRes)> = Vec::new();
        for (label, row) in lines {
            match rows.iter_mut().find(|r| r.0 == label) {
                Some(r) => r.1.rows.push(row),
                None => rows.push((label, PipelineRes { depth: PIPELINE_DEPTH, rows: vec![row], counters: Counters::new() })),
            }
        }
        Ok(ClockedPipeline { rows })
    }
}

/// Requests in flight in the pipeline bench.
pub(crate) const PIPELINE_DEPTH: usize = 4;

pub(crate) fn uring_pipeline(o: &Opts, dir: &str, stable_ok: bool) -> Res<Option<PipelineRes>> {
    if !stable_ok {
        return Ok(None);
    }
    let file_bytes = (o.file_mib as u64) << 20;
    let f = create_file(dir, "pipeline")?;
    fill_and_warm(f.fd.raw(), file_bytes, 1 << 20)?;
    let mut tcp = TcpSink::new()?;
    let mut rows = Vec::new();
    let mut counters = Counters::new();
    for size in FIRST_SIZES {
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); uring::PIPELINES.len()];
        for rep in 0..=o.repeats {
            for (mi, &m) in uring::PIPELINES.iter().enumerate() {
                let (c0, busy0, t0) = (read_counters(), all_cpu_busy_secs(), Instant::now());
                let sent = uring::run(m, f.fd.raw(), file_bytes, tcp.tx.raw(), size, PIPELINE_DEPTH, o.secs)?;
                tcp.sent += sent;
                tcp.wait()?;
                let (wall, busy) = (t0.elapsed().as_secs_f64(), all_cpu_busy_secs() - busy0);
                if m == uring::Pipeline::StableSplice {
                    merge_counters(&mut counters, counter_delta(&c0, &read_counters()));
                }
                // The first round warms up.
                if rep > 0 {
                    let gib = sent as f64 / GIB;
                    runs[mi].push((gib / wall, busy / gib));
                }
            }
        }
        let mut line = format!("io_uring pipeline {:>7}:", svg::size_label(size));
        for (mi, &m) in uring::PIPELINES.iter().enumerate() {
            let g = median(&runs[mi].iter().map(|r| r.0).collect::<Vec<_>>());
            let c = median(&runs[mi].iter().map(|r| r.1).collect::<Vec<_>>());
            let _ = write!(line, "  {} {g:.3} GiB/s {c:.2} s/GiB", m.label());
            rows.push((size, m, g, c));
        }
        progress(&line);
    }
    tcp.finish()?;
    progress(&format!(
        "io_uring pipeline, stable runs: bytes_zero_copy {}, bytes_copied_at_splice {}, holds_taken {}, holds_refused {}",
        cget(&counters, "bytes_zero_copy"),
        cget(&counters, "bytes_copied_at_splice"),
        cget(&counters, "holds_taken"),
        cget(&counters, "holds_refused")
    ));
    Ok(Some(PipelineRes { depth: PIPELINE_DEPTH, rows, counters }))
}
