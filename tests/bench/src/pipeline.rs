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
