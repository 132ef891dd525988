//! sendfile() in the stable mode.

use crate::*;

/// sendfile() of 8 MiB to loopback TCP (what nginx does with `sendfile
/// on;`), the bench process in the stable mode against not, interleaved.
pub(crate) struct SendfileRes {
    /// Median GiB/s without the mode.
    pub(crate) plain: f64,
    /// Median GiB/s in the mode; None if the mode is unavailable.
    pub(crate) mode: Option<f64>,
    /// Counter deltas over the runs in the mode.
    pub(crate) counters: Counters,
    pub(crate) error: Option<String>,
}

pub(crate) const SENDFILE_CHUNK: usize = 8 << 20;

/// Puts the bench process into the stable mode or out of it.
pub(crate) fn set_stable_mode(on: bool) -> Res {
    let dev = open(stable_splice_uapi::DEVICE, libc::O_RDONLY, 0).map_err(|e| format!("open {}: {e}", stable_splice_uapi::DEVICE))?;
    // SAFETY: STABLE_SPLICE_SET_MODE takes its argument by value.
    if unsafe { libc::ioctl(dev.raw(), stable_splice_uapi::SET_MODE, on as libc::c_ulong) } != 0 {
        return Err(format!("STABLE_SPLICE_SET_MODE {on}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) struct Sendfile<'a> {
    pub(crate) fd: i32,
    pub(crate) off: u64,
    pub(crate) file: u64,
    pub(crate) tcp: &'a mut TcpSink,
}

impl Workload for Sendfile<'_> {
    fn xfer(&mut self) -> Res<u64> {
        let mut off = self.off as libc::off_t;
        let mut left = SENDFILE_CHUNK;
        while left > 0 {
            // SAFETY: our descriptors; the kernel advances `off`.
            let n = unsafe { libc::sendfile(self.tcp.tx.raw(), self.fd, &mut off, left) };
            if n <= 0 {
                return Err(format!("sendfile: {}", std::io::Error::last_os_error()));
            }
            left -= n as usize;
        }
        self.off = (self.off + SENDFILE_CHUNK as u64) % self.file;
        self.tcp.sent += SENDFILE_CHUNK as u64;
        Ok(SENDFILE_CHUNK as u64)
    }
    fn sync(&mut self) -> Res {
        self.tcp.wait()
    }
}

pub(crate) fn sendfile_mode(o: &Opts, dir: &str, stable_ok: bool) -> Res<SendfileRes> {
    const FILE: u64 = 32 << 20;
    let f = create_file(dir, "sendfile")?;
    fill_and_warm(f.fd.raw(), FILE, 1 << 20)?;
    let mut tcp = TcpSink::new()?;
    let mut error = None;
    let mut modes = vec![false];
    if stable_ok {
        match set_stable_mode(false) {
            Ok(()) => modes.push(true),
            Err(e) => error = Some(e),
        }
    }
    let mut runs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut counters = Counters::new();
    for rep in 0..=o.repeats {
        for &on in &modes {
            if stable_ok {
                set_stable_mode(on)?;
            }
            let secs = if rep == 0 { o.secs / 4.0 } else { o.secs };
            let c0 = read_counters();
            let r = run_once(&mut Sendfile { fd: f.fd.raw(), off: 0, file: FILE, tcp: &mut tcp }, secs);
            let d = counter_delta(&c0, &read_counters());
            if stable_ok {
                set_stable_mode(false)?;
            }
            let r = r?;
            if rep > 0 {
                runs[on as usize].push(r.gib_s());
                if on {
                    for (k, v) in d {
                        *counters.entry(k).or_insert(0) += v;
                    }
                }
            }
        }
    }
    tcp.finish()?;
    Ok(SendfileRes {
        plain: median(&runs[0]),
        mode: (!runs[1].is_empty()).then(|| median(&runs[1])),
        counters,
        error,
    })
}
