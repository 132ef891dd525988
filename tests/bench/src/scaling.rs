//! One splicer against two.

use crate::*;

/// Aggregate throughput of 1 and 2 splicers on two files (1 MiB transfers
/// to /dev/null): do stable splices of different files serialize?
pub(crate) struct ScaleRes {
    /// (method, [GiB/s with 1 splicer, GiB/s with 2]) medians.
    pub(crate) gib: Vec<(Method, [f64; 2])>,
}

impl ScaleRes {
    pub(crate) fn speedup(&self, m: Method) -> Option<f64> {
        self.gib.iter().find(|(x, _)| *x == m).map(|(_, g)| g[1] / g[0])
    }
}

pub(crate) fn scaling(o: &Opts, dir: &str, stable_ok: bool) -> Res<ScaleRes> {
    const FILE: usize = 8 << 20;
    let files = [create_file(dir, "scale-a")?, create_file(dir, "scale-b")?];
    for f in &files {
        fill_and_warm(f.fd.raw(), FILE as u64, 1 << 20)?;
    }
    let methods: Vec<Method> = [Method::Plain, Method::Stable].into_iter().filter(|&m| m != Method::Stable || stable_ok).collect();
    let mut runs: Vec<[Vec<f64>; 2]> = methods.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for rep in 0..=o.repeats {
        for (mi, &m) in methods.iter().enumerate() {
            for threads in [1usize, 2] {
                let flags = if m == Method::Stable { SPLICE_F_STABLE } else { 0 };
                let secs = if rep == 0 { o.secs / 4.0 } else { o.secs };
                let t0 = Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|i| {
                        let fd = files[i].fd.raw();
                        std::thread::spawn(move || -> Res<u64> {
                            let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
                            let p = pipe(CONT_SIZE)?;
                            let (mut bytes, mut off) = (0u64, 0u64);
                            let t0 = Instant::now();
                            while t0.elapsed().as_secs_f64() < secs {
                                splice_file_to_pipe(fd, off, p.w.raw(), CONT_SIZE, flags)?;
                                drain_pipe(p.r.raw(), devnull.raw(), CONT_SIZE)?;
                                bytes += CONT_SIZE as u64;
                                off = (off + CONT_SIZE as u64) % FILE as u64;
                            }
                            Ok(bytes)
                        })
                    })
                    .collect();
                let mut bytes = 0;
                for h in handles {
                    bytes += h.join().map_err(|_| "splicer thread panicked".to_string())??;
                }
                if rep > 0 {
                    runs[mi][threads - 1].push(bytes as f64 / GIB / t0.elapsed().as_secs_f64());
                }
            }
        }
    }
    Ok(ScaleRes { gib: methods.iter().zip(&runs).map(|(&m, r)| (m, [median(&r[0]), median(&r[1])])).collect() })
}
