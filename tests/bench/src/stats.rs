//! Runs, medians, percentiles.

use crate::*;

#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub(crate) bytes: u64,
    pub(crate) wall: f64,
    pub(crate) cpu: f64,
}

impl Run {
    pub(crate) fn gib_s(&self) -> f64 {
        self.bytes as f64 / GIB / self.wall
    }
    pub(crate) fn cpu_per_gib(&self) -> f64 {
        self.cpu / (self.bytes as f64 / GIB)
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) struct Lat {
    pub(crate) n: usize,
    pub(crate) median: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

pub(crate) fn lat(mut v: Vec<u64>) -> Lat {
    v.sort_unstable();
    Lat {
        n: v.len(),
        median: pct(&v, 50.0),
        p90: pct(&v, 90.0),
        p99: pct(&v, 99.0),
        max: v.last().copied().unwrap_or(0),
        mean: if v.is_empty() { 0.0 } else { v.iter().sum::<u64>() as f64 / v.len() as f64 },
    }
}

impl Lat {
    pub(crate) fn json(&self) -> Json {
        Json::obj()
            .with("trials", self.n)
            .with("median_ns", self.median)
            .with("p90_ns", self.p90)
            .with("p99_ns", self.p99)
            .with("max_ns", self.max)
            .with("mean_ns", self.mean)
    }
}
