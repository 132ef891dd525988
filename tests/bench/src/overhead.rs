//! What the loaded module costs work that does not use it.

use crate::*;

/// Unrelated work with the module loaded against not loaded, interleaved
/// (rmmod/insmod between runs): ops/s medians, loaded as by default and
/// with `direct_calls=1` (the redirects on paths of unrelated work as
/// direct calls).
pub(crate) struct OverheadRes {
    /// (workload, loaded ops/s, not loaded ops/s, loaded with
    /// `direct_calls=1` ops/s where measured).
    pub(crate) rows: Vec<(&'static str, f64, f64, Option<f64>)>,
}

/// The plain splice rows come three times: while no stable splice is in
/// use (the redirects of `do_splice` and `do_splice_read` out, as after
/// ten idle seconds: debugfs `idle` before each run), while stable splices
/// are in use (one right before the run puts them back), and while a
/// process is in the stable mode (every `do_splice_read` then asks whether
/// the caller is in it).
pub(crate) const OVERHEAD_WORK: [&str; 9] = [
    "buffered pwrite 4 KiB",
    "pread 4 KiB",
    "mmap store fault",
    "plain splice 4 KiB",
    "plain splice 64 KiB",
    "plain splice 4 KiB, stable in use",
    "plain splice 64 KiB, stable in use",
    "plain splice 4 KiB, a process in the mode",
    "plain splice 64 KiB, a process in the mode",
];

/// Another process in the stable mode while this lives: stable splices
/// are in use on the machine, so the module's splice entry points stay
/// redirected. Without the module the child only waits.
struct StableUser {
    child: libc::pid_t,
    release: Fd,
}

impl StableUser {
    fn start() -> Res<StableUser> {
        let ready = pipe(PAGE)?;
        let release = pipe(PAGE)?;
        // SAFETY: the child only makes system calls and exits.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(format!("fork: {}", last_err()));
        }
        if child == 0 {
            let _ = set_stable_mode(true);
            let mut b = [0u8; 1];
            // SAFETY: our own pipes; the read returns when the parent closes its end.
            unsafe {
                libc::write(ready.w.raw(), b.as_ptr().cast(), 1);
                libc::close(release.w.raw());
                libc::read(release.r.raw(), b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: as above.
        unsafe { libc::read(ready.r.raw(), b.as_mut_ptr().cast(), 1) };
        Ok(StableUser { child, release: release.w })
    }
}

impl Drop for StableUser {
    fn drop(&mut self) {
        // SAFETY: our pipe's write end and our child.
        unsafe {
            libc::close(self.release.raw());
            libc::waitpid(self.child, std::ptr::null_mut(), 0);
        }
    }
}

/// Takes the module's idle splice entry points out now (debugfs `idle`):
/// the state of a machine where nobody stable-splices. Without the module
/// (or debugfs) nothing to do.
fn splice_entries_idle() {
    let _ = std::fs::write("/sys/kernel/debug/stable_splice/idle", "1");
}

/// Plain splices (no flag, a task outside the stable mode): the module
/// redirects the splice entry points, so what that costs a splice that
/// does not ask for it is measured here, file -> pipe -> /dev/null.
pub(crate) struct PlainSplicer {
    p: Pipe,
    devnull: Fd,
}

impl PlainSplicer {
    pub(crate) fn new() -> Res<PlainSplicer> {
        let p = pipe(16 * PAGE)?;
        let devnull = open("/dev/null", libc::O_WRONLY, 0).map_err(|e| format!("open /dev/null: {e}"))?;
        Ok(PlainSplicer { p, devnull })
    }

    fn splice(&self, fd: i32, off: u64, len: usize) -> Res {
        let mut left = len;
        while left > 0 {
            let mut o = (off + (len - left) as u64) as i64;
            // SAFETY: splice between our own descriptors.
            let n = unsafe { libc::splice(fd, &mut o, self.p.w.raw(), std::ptr::null_mut(), left, 0) };
            if n <= 0 {
                return Err(format!("plain splice: {}", last_err()));
            }
            let mut out = n as usize;
            while out > 0 {
                // SAFETY: as above.
                let m = unsafe { libc::splice(self.p.r.raw(), std::ptr::null_mut(), self.devnull.raw(), std::ptr::null_mut(), out, 0) };
                if m <= 0 {
                    return Err(format!("splice to /dev/null: {}", last_err()));
                }
                out -= m as usize;
            }
            left -= n as usize;
        }
        Ok(())
    }

    /// One stable splice of a page, drained: stable splices are in use
    /// (without the module the flag is refused, and nothing changes).
    fn one_stable(&self, fd: i32) {
        let mut o = 0i64;
        // SAFETY: splices between our own descriptors.
        unsafe {
            let n = libc::splice(fd, &mut o, self.p.w.raw(), std::ptr::null_mut(), PAGE, stable_splice_uapi::SPLICE_F_STABLE);
            if n > 0 {
                libc::splice(self.p.r.raw(), std::ptr::null_mut(), self.devnull.raw(), std::ptr::null_mut(), n as usize, 0);
            }
        }
    }
}

pub(crate) fn overhead_run(fd: i32, map: *mut u8, pages: usize, which: usize, secs: f64) -> Res<f64> {
    let mut buf = vec![5u8; PAGE];
    let (mut ops, mut k) = (0u64, 0usize);
    let splicer = PlainSplicer::new()?;
    let _user = match which {
        3 | 4 => {
            splice_entries_idle();
            None
        }
        5 | 6 => {
            splicer.one_stable(fd);
            None
        }
        7 | 8 => Some(StableUser::start()?),
        _ => None,
    };
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let off = ((k * 7919) % pages * PAGE) as u64;
        match which {
            0 => pwrite_full(fd, &buf, off)?,
            1 => pread_full(fd, &mut buf, off)?,
            3 | 5 | 7 => splicer.splice(fd, off, PAGE)?,
            4 | 6 | 8 => splicer.splice(fd, off / (16 * PAGE as u64) * (16 * PAGE as u64), 16 * PAGE)?,
            _ => {
                // One store per page, then drop the ptes: every store is a
                // shared write fault with page_mkwrite.
                for i in 0..64 {
                    // SAFETY: inside the mapping of `pages` pages.
                    unsafe { map.add(((k + i) % pages) * PAGE).write_volatile(k as u8) };
                }
                // SAFETY: the mapping is ours; its data stays in the page cache.
                unsafe { libc::madvise(map.cast(), pages * PAGE, libc::MADV_DONTNEED) };
                ops += 63;
            }
        }
        ops += 1;
        k += 1;
    }
    Ok(ops as f64 / t0.elapsed().as_secs_f64())
}

/// The rows as `overhead.tsv`: workload, loaded ops/s, not loaded ops/s
/// and, where measured, loaded with `direct_calls=1`.
pub(crate) fn overhead_tsv(ov: &OverheadRes) -> String {
    ov.rows
        .iter()
        .map(|(n, on, off, direct)| match direct {
            Some(d) => format!("{n}\t{on}\t{off}\t{d}\n"),
            None => format!("{n}\t{on}\t{off}\n"),
        })
        .collect()
}

pub(crate) fn read_overhead_tsv(path: &str) -> Res<OverheadRes> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let name = OVERHEAD_WORK.iter().find(|&&n| f.first() == Some(&n)).ok_or(format!("{path}: bad line {line:?}"))?;
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or(format!("{path}: bad line {line:?}"));
        rows.push((*name, num(1)?, num(2)?, if f.len() > 3 { Some(num(3)?) } else { None }));
    }
    Ok(OverheadRes { rows })
}

/// Keeps the workloads on one CPU: no TLB shootdowns between vCPUs, which
/// an emulator makes expensive and uneven.
pub(crate) fn pin_to_last_cpu() {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    // As before: where the pin fails the workloads run unpinned.
    let _ = stable_splice_sys::pin_thread(n - 1);
}

pub(crate) fn module_overhead(o: &Opts, dir: &str) -> Res<Option<OverheadRes>> {
    let Ok(ko) = std::env::var("SS_KO") else {
        return Ok(None);
    };
    if !std::path::Path::new("/sys/module/stable_splice").exists() {
        return Ok(None);
    }
    const PAGES: usize = 1024;
    let f = create_file(dir, "overhead")?;
    let fd = f.fd.raw();
    fill_and_warm(fd, (PAGES * PAGE) as u64, 1 << 20)?;
    // SAFETY: a shared mapping of our file, unmapped below.
    let map = unsafe {
        libc::mmap(std::ptr::null_mut(), PAGES * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
    };
    if map == libc::MAP_FAILED {
        return Err(format!("mmap: {}", last_err()));
    }
    let map = map.cast::<u8>();
    // The states the runs cycle through: loaded (with --module-params),
    // not loaded, loaded with direct_calls=1, not loaded; the module is
    // loaded (as the VM loaded it) when this starts.
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Loaded,
        NotLoaded,
        Direct,
    }
    const CYCLE: [State; 4] = [State::Loaded, State::NotLoaded, State::Direct, State::NotLoaded];
    // The harness's own parameters first (scripts/lib/guest.sh: none in a
    // one-vCPU guest), then the run's.
    let params: Vec<String> = std::env::var("SS_KO_PARAMS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .chain(o.module_params.iter().cloned())
        .collect();
    let direct_params: Vec<String> = params
        .iter()
        .filter(|p| !p.starts_with("direct_calls="))
        .cloned()
        .chain(std::iter::once("direct_calls=1".to_string()))
        .collect();
    let enter = |state: State| -> Res {
        let st = match state {
            State::Loaded => std::process::Command::new("insmod").arg(&ko).args(&params).status(),
            State::Direct => std::process::Command::new("insmod").arg(&ko).args(&direct_params).status(),
            State::NotLoaded => {
                // The entries of the stable runs keep the module until they
                // go: reaped here (the reaper's file closed before rmmod).
                let reaper = Reaper::open(COUNTER_DIR).map_err(|e| format!("open {COUNTER_DIR}/reap: {e}"))?;
                crate::first::wait_holds_reaped(&reaper)?;
                drop(reaper);
                std::process::Command::new("rmmod").arg("stable_splice").status()
            }
        };
        match st {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("{} stable_splice: {other:?}", if state == State::NotLoaded { "rmmod" } else { "insmod" })),
        }
    };
    let mut res: Vec<[Vec<f64>; 3]> = OVERHEAD_WORK.iter().map(|_| [Vec::new(), Vec::new(), Vec::new()]).collect();
    let mut state = State::Loaded;
    let result = (|| -> Res {
        // The first run (in the VM's load) is discarded.
        for step in 0..=o.repeats * 4 {
            for (w, r) in res.iter_mut().enumerate() {
                let v = overhead_run(fd, map, PAGES, w, o.secs)?;
                if step > 0 {
                    r[state as usize].push(v);
                }
            }
            let next = CYCLE[(step + 1) % CYCLE.len()];
            if state != State::NotLoaded && next != State::NotLoaded {
                enter(State::NotLoaded)?;
            }
            enter(next)?;
            state = next;
            // Loading and unloading patch kernel text (ftrace), which an
            // emulator retranslates: one discarded run of each workload.
            for w in 0..OVERHEAD_WORK.len() {
                overhead_run(fd, map, PAGES, w, o.secs / 2.0)?;
            }
        }
        Ok(())
    })();
    // Leave it loaded as the VM had it.
    if state == State::Direct {
        enter(State::NotLoaded)?;
        state = State::NotLoaded;
    }
    if state == State::NotLoaded {
        enter(State::Loaded)?;
    }
    // SAFETY: mapped above.
    unsafe { libc::munmap(map.cast(), PAGES * PAGE) };
    result?;
    Ok(Some(OverheadRes {
        rows: OVERHEAD_WORK.iter().zip(&res).map(|(&n, r)| (n, median(&r[0]), median(&r[1]), Some(median(&r[2])))).collect(),
    }))
}
