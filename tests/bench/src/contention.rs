//! Break under contention: splices while a writer keeps overwriting the range.

use crate::*;

/// splice 1 MiB at offset 0 (flags) into a pipe, drain to /dev/null.
pub(crate) struct Resplice<'a> {
    pub(crate) fd: i32,
    pub(crate) flags: u32,
    pub(crate) pipe: &'a Pipe,
    pub(crate) out: i32,
}

pub(crate) const CONT_SIZE: usize = 1 << 20;

impl Workload for Resplice<'_> {
    fn xfer(&mut self) -> Res<u64> {
        splice_file_to_pipe(self.fd, 0, self.pipe.w.raw(), CONT_SIZE, self.flags)?;
        drain_pipe(self.pipe.r.raw(), self.out, CONT_SIZE)?;
        Ok(CONT_SIZE as u64)
    }
}

/// A thread that pwrites 4 KiB blocks round-robin over the first 1 MiB
/// until stopped; returns its per-write latencies (ns) and its run time.
pub(crate) type WriterHandle = std::thread::JoinHandle<WriterRun>;
/// What the writer thread returns: its per-write latencies (ns) and run time.
pub(crate) type WriterRun = Res<(Vec<u64>, f64)>;

pub(crate) fn spawn_writer(fd: i32, stop: Arc<AtomicBool>, started: Arc<AtomicBool>) -> Res<WriterHandle> {
    // SAFETY: dup of a descriptor we own; the copy is owned by the thread.
    let wfd = unsafe { libc::dup(fd) };
    if wfd < 0 {
        return Err(format!("dup: {}", last_err()));
    }
    let wfd = Fd(wfd);
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || -> WriterRun {
            let mut buf = vec![0u8; PAGE];
            let mut lats = Vec::with_capacity(1 << 16);
            let t0 = Instant::now();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                buf[0] = k as u8 | 1;
                let off = ((k % (CONT_SIZE / PAGE)) * PAGE) as u64;
                let w0 = Instant::now();
                pwrite_full(wfd.raw(), &buf, off)?;
                if lats.len() < 4 << 20 {
                    lats.push(w0.elapsed().as_nanos() as u64);
                }
                started.store(true, Ordering::Relaxed);
                k += 1;
            }
            Ok((lats, t0.elapsed().as_secs_f64()))
        })
        .map_err(|e| format!("spawn writer: {e}"))
}

/// Whether the large-folio rows are measured on `fstype`: not on tmpfs,
/// whose stable splices copy (and whose folios are small unless mounted
/// `huge=`).
pub(crate) fn large_rows(fstype: &str) -> bool {
    fstype != "tmpfs"
}

/// `w` for `secs`, beside the writer if `writer`: its run, the module's
/// counters that moved meanwhile, and the writer's latencies and run time.
fn splice_beside(w: &mut Resplice<'_>, fd: i32, writer: bool, secs: f64) -> Res<(Run, Counters, Option<WriterRun>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let th = if writer {
        let th = spawn_writer(fd, stop.clone(), started.clone())?;
        while !started.load(Ordering::Relaxed) && !th.is_finished() {
            std::thread::yield_now();
        }
        Some(th)
    } else {
        None
    };
    let c0 = read_counters();
    let r = run_once(w, secs);
    let d = counter_delta(&c0, &read_counters());
    stop.store(true, Ordering::Relaxed);
    let wres = th.map(|t| t.join().map_err(|_| "writer thread panicked".to_string()).and_then(|x| x));
    Ok((r?, d, wres))
}

/// The contended range and what a splicer of it needs: the file, its
/// first 1 MiB written (in one write where `large`, else a page at a
/// time) and read into the page cache, a pipe and /dev/null.
struct ContendedRange {
    f: BenchFile,
    p: Pipe,
    devnull: Fd,
}

impl ContendedRange {
    fn new(dir: &str, large: bool) -> Res<Self> {
        let f = create_file(dir, if large { "contention-large" } else { "contention" })?;
        fill_and_warm(f.fd.raw(), CONT_SIZE as u64, if large { CONT_SIZE } else { PAGE })?;
        let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
        Ok(Self { p: pipe(CONT_SIZE)?, f, devnull })
    }

    fn fd(&self) -> i32 {
        self.f.fd.raw()
    }

    /// The splicer of the range by method `m`.
    fn splicer(&self, m: Method) -> Resplice<'_> {
        let flags = if m == Method::Stable { SPLICE_F_STABLE } else { 0 };
        Resplice { fd: self.fd(), flags, pipe: &self.p, out: self.devnull.raw() }
    }
}

/// `large`: the range is written in one 1 MiB write, so where the file
/// system caches large folios it sits in them, and each writer's 4 KiB
/// write goes into a folio the splicer reads whole.
pub(crate) fn contention(o: &Opts, dir: &str, stable_ok: bool, large: bool) -> Res<ContRes> {
    let range = ContendedRange::new(dir, large)?;
    let fd = range.fd();
    let methods: Vec<Method> = [Method::Plain, Method::Stable].into_iter().filter(|&m| m != Method::Stable || stable_ok).collect();
    let n = methods.len();
    let mut runs: Vec<[Vec<Run>; 2]> = (0..n).map(|_| [Vec::new(), Vec::new()]).collect();
    let mut counters: Vec<[Counters; 2]> = (0..n).map(|_| [Counters::new(), Counters::new()]).collect();
    let mut wlat: Vec<(Vec<u64>, f64)> = (0..n).map(|_| (Vec::new(), 0.0)).collect();
    for rep in 0..=o.repeats {
        for (mi, &m) in methods.iter().enumerate() {
            let mut w = range.splicer(m);
            for contended in [false, true] {
                let secs = if rep == 0 { o.secs / 4.0 } else { o.secs };
                let (r, d, wres) = splice_beside(&mut w, fd, contended, secs)?;
                if rep == 0 {
                    continue; // warm-up
                }
                if let Some(wr) = wres {
                    let (l, secs) = wr?;
                    wlat[mi].0.extend(l);
                    wlat[mi].1 += secs;
                }
                merge_counters(&mut counters[mi][contended as usize], d);
                runs[mi][contended as usize].push(r);
            }
        }
    }
    let writer = wlat
        .into_iter()
        .map(|(l, secs)| {
            let n = l.len() as f64;
            (!l.is_empty()).then(|| (lat(l), n / secs))
        })
        .collect();
    Ok(ContRes { runs, writer, counters, methods, large })
}

/// `m` beside the writer (without it unless `writer`) on a range in small
/// folios for `--secs-per-point` x `--repeats` seconds, no warm-up: a
/// steady load to profile (`--contended`). Its GiB/s, the writer's
/// writes/s and the module's counters that moved.
pub(crate) fn contended_load(o: &Opts, dir: &str, m: Method, writer: bool) -> Res<String> {
    let range = ContendedRange::new(dir, false)?;
    let (r, d, wres) = splice_beside(&mut range.splicer(m), range.fd(), writer, o.secs * o.repeats as f64)?;
    let writes = match wres {
        Some(wr) => {
            let (lats, secs) = wr?;
            format!("the writer {:.0} writes/s", lats.len() as f64 / secs)
        }
        None => "no writer".into(),
    };
    let moved: Vec<String> = d.iter().filter(|(_, v)| **v != 0).map(|(k, v)| format!("{k} {v}")).collect();
    Ok(format!("{} {:.3} GiB/s, {writes}; counters: {}\n", m.label(), r.gib_s(), moved.join(", ")))
}
