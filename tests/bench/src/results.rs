//! What one file system's measurements come to.

use crate::*;

pub(crate) struct Point {
    pub(crate) sink: Sink,
    pub(crate) size: usize,
    pub(crate) method: Method,
    pub(crate) runs: Vec<Run>,
    pub(crate) counters: Counters,
}

impl Point {
    pub(crate) fn gib_s(&self) -> f64 {
        median(&self.runs.iter().map(Run::gib_s).collect::<Vec<_>>())
    }
    pub(crate) fn cpu_per_gib(&self) -> f64 {
        median(&self.runs.iter().map(Run::cpu_per_gib).collect::<Vec<_>>())
    }
}

pub(crate) struct LatencyRes {
    /// Writer into a clean page held by a stable splice.
    pub(crate) stable: Option<Lat>,
    /// Writer into a dirty page held by a stable splice.
    pub(crate) stable_dirty: Option<Lat>,
    pub(crate) plain: Lat,
    pub(crate) unheld: Lat,
    /// Device (reads, writes) per write, by `HELD` order; None on tmpfs.
    pub(crate) io_per_write: Vec<Option<(f64, f64)>>,
    pub(crate) pread_4k: Lat,
    pub(crate) pread_per_page_1mib_ns: f64,
    pub(crate) memcpy_4k_ns: f64,
    pub(crate) counters: Counters,
}

impl LatencyRes {
    pub(crate) fn folio_copy_ns(&self) -> f64 {
        self.pread_4k.median as f64
    }
}

pub(crate) struct ContRes {
    /// [method][contended] runs, method 0 = plain, 1 = stable.
    pub(crate) runs: Vec<[Vec<Run>; 2]>,
    pub(crate) writer: Vec<Option<(Lat, f64)>>,
    pub(crate) counters: Vec<[Counters; 2]>,
    pub(crate) methods: Vec<Method>,
    /// The range was written in one 1 MiB write, so it sits in large
    /// folios where the file system caches them; else 4 KiB writes.
    pub(crate) large: bool,
}

impl ContRes {
    /// Median GiB/s of method `m`'s runs, alone (`contended` 0) or beside
    /// the writer (1).
    pub(crate) fn gib_s(&self, m: usize, contended: usize) -> f64 {
        median(&self.runs[m][contended].iter().map(Run::gib_s).collect::<Vec<_>>())
    }
}

pub(crate) struct FsRes {
    pub(crate) dir: String,
    pub(crate) label: String,
    pub(crate) fstype: String,
    pub(crate) file_bytes: u64,
    pub(crate) odirect_error: Option<String>,
    pub(crate) stable_error: Option<String>,
    pub(crate) points: Vec<Point>,
    pub(crate) latency: LatencyRes,
    /// A writer into a held large folio (ext4 and xfs: not tmpfs, which copies).
    pub(crate) large: Option<LargeRes>,
    pub(crate) contention: ContRes,
    /// The same over a range in large folios (ext4 and xfs).
    pub(crate) contention_large: Option<ContRes>,
    pub(crate) scaling: ScaleRes,
    pub(crate) first: Option<FirstRes>,
    pub(crate) sendfile: SendfileRes,
    pub(crate) pipeline: Option<PipelineRes>,
    /// The same pipeline on the instruction clock (`--pipeline-from`).
    pub(crate) pipeline_clocked: Option<PipelineRes>,
    pub(crate) counters: Counters,
}

impl FsRes {
    pub(crate) fn point(&self, sink: Sink, size: usize, m: Method) -> Option<&Point> {
        self.points.iter().find(|p| p.sink == sink && p.size == size && p.method == m)
    }
    pub(crate) fn gib(&self, sink: Sink, size: usize, m: Method) -> Option<f64> {
        self.point(sink, size, m).map(Point::gib_s)
    }
    pub(crate) fn ratio(&self, sink: Sink, size: usize, a: Method, b: Method) -> Option<f64> {
        Some(self.gib(sink, size, a)? / self.gib(sink, size, b)?)
    }
}
