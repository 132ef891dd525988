//! Thin syscall wrappers for the benchmark (style of tests/userspace/src/util.rs).
//!
//! Errors are `String`s with context: any of them is a real error and ends
//! the run with a non-zero status.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use stable_splice_uapi::{COUNTER_DIR, SPLICE_F_STABLE};
pub const PAGE: usize = 4096;

pub type Res<T = ()> = Result<T, String>;

pub fn last_err() -> io::Error {
    io::Error::last_os_error()
}

pub use stable_splice_sys::{cstr, open, Fd, Pipe, Reaper};

static NAME_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A scratch file in `dir`, unlinked on drop.
pub struct BenchFile {
    pub fd: Fd,
    pub path: String,
}

impl Drop for BenchFile {
    fn drop(&mut self) {
        let c = cstr(&self.path);
        // SAFETY: valid C string; failure (already gone) is fine.
        unsafe { libc::unlink(c.as_ptr()) };
    }
}

pub fn create_file(dir: &str, what: &str) -> Res<BenchFile> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let n = NAME_SEQ.fetch_add(1, Ordering::Relaxed);
    let path = format!("{}/.stable-splice-bench.{what}.{pid}.{n}", dir.trim_end_matches('/'));
    let fd = open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600)
        .map_err(|e| format!("create {path}: {e}"))?;
    Ok(BenchFile { fd, path })
}

pub fn pread_full(fd: i32, buf: &mut [u8], off: u64) -> Res {
    stable_splice_sys::pread_exact(fd, buf, off).map_err(|e| format!("pread({} @{off}): {e}", buf.len()))
}

pub fn pwrite_full(fd: i32, buf: &[u8], off: u64) -> Res {
    stable_splice_sys::pwrite_all(fd, buf, off).map_err(|e| format!("pwrite({} @{off}): {e}", buf.len()))
}

pub fn write_full(fd: i32, buf: &[u8]) -> Res {
    stable_splice_sys::write_all(fd, buf).map_err(|e| format!("write({}): {e}", buf.len()))
}

pub fn fsync(fd: i32) -> Res {
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::fsync(fd) } != 0 {
        return Err(format!("fsync: {}", last_err()));
    }
    Ok(())
}

/// One splice(2) call; `off_in` is the file offset (None for a pipe source).
pub fn splice(fd_in: i32, off_in: Option<&mut i64>, fd_out: i32, len: usize, flags: u32) -> io::Result<usize> {
    stable_splice_sys::splice(fd_in, off_in, fd_out, None, len, flags)
}

/// Splice exactly `len` bytes at `off` from a file into a pipe that has room
/// for them (loops over short counts, which the pipe's size makes rare).
pub fn splice_file_to_pipe(file: i32, off: u64, pipe_w: i32, len: usize, flags: u32) -> Res {
    let mut o = off as i64;
    let mut done = 0;
    while done < len {
        match splice(file, Some(&mut o), pipe_w, len - done, flags) {
            Ok(0) => return Err(format!("splice(file @{off}, {len}, flags={flags:#x}): EOF after {done}")),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("splice(file @{off}, {len}, flags={flags:#x}): {e}")),
        }
    }
    Ok(())
}

/// Move exactly `len` bytes from a pipe to `out` (/dev/null or a socket).
pub fn drain_pipe(pipe_r: i32, out: i32, len: usize) -> Res {
    let mut done = 0;
    while done < len {
        match splice(pipe_r, None, out, len - done, 0) {
            Ok(0) => return Err(format!("splice(pipe -> sink): 0 after {done} of {len}")),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("splice(pipe -> sink, {len}): {e}")),
        }
    }
    Ok(())
}

/// A pipe that holds at least `min_bytes` (F_SETPIPE_SZ; never below the
/// default 64 KiB).
pub fn pipe(min_bytes: usize) -> Res<Pipe> {
    let p = stable_splice_sys::pipe().map_err(|e| format!("pipe2: {e}"))?;
    if min_bytes > 65536 {
        // SAFETY: fcntl on a pipe we own.
        let r = unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, min_bytes as libc::c_int) };
        if r < 0 {
            return Err(format!("F_SETPIPE_SZ({min_bytes}): {}", last_err()));
        }
        if (r as usize) < min_bytes {
            return Err(format!("F_SETPIPE_SZ({min_bytes}) gave only {r} bytes"));
        }
    }
    Ok(p)
}

/// Process CPU time (user + system, all threads) in seconds, from
/// getrusage(RUSAGE_SELF).
pub fn cpu_secs() -> f64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// File-system type name of `dir` from statfs, or None if unknown.
pub fn fs_type(dir: &str) -> Option<&'static str> {
    let c = cstr(dir);
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path, st a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(match st.f_type as i64 {
        0xEF53 => "ext4",
        0x01021994 => "tmpfs",
        0x58465342 => "xfs",
        0x9123683E => "btrfs",
        0xF2F52010 => "f2fs",
        0x6969 => "nfs",
        0x01021997 => "9p",
        0x794c7630 => "overlayfs",
        _ => return None,
    })
}

// ---- stable_splice counters (debugfs) ----


pub type Counters = BTreeMap<String, i64>;

/// Make sure debugfs is mounted (vm-run's guest does it; a bare machine may not).
pub fn mount_debugfs() {
    if std::path::Path::new("/sys/kernel/debug/stable_splice").exists() {
        return;
    }
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/kernel/debug")))
        .unwrap_or(false);
    if !mounted {
        let (src, tgt, ty) = (cstr("debugfs"), cstr("/sys/kernel/debug"), cstr("debugfs"));
        // SAFETY: valid C strings, no data argument.
        unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    }
}

/// One counter of the module; 0 if the module (or debugfs) is absent.
pub fn read_counter(name: &str) -> i64 {
    std::fs::read_to_string(format!("{COUNTER_DIR}/{name}")).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// All counters of the module; empty if the module (or debugfs) is absent.
pub fn read_counters() -> Counters {
    let mut m = Counters::new();
    if let Ok(rd) = std::fs::read_dir(COUNTER_DIR) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(v) = std::fs::read_to_string(e.path()) {
                if let Ok(n) = v.trim().parse::<i64>() {
                    m.insert(name, n);
                }
            }
        }
    }
    m
}

fn is_gauge(name: &str) -> bool {
    matches!(name, "holds_active" | "max_writer_wait_ns")
}

/// Adds a delta to an accumulated one (gauges take the latest value).
pub fn merge_counters(acc: &mut Counters, delta: Counters) {
    for (k, v) in delta {
        let gauge = is_gauge(&k);
        let e = acc.entry(k).or_insert(0);
        *e = if gauge { v } else { *e + v };
    }
}

/// after - before for the cumulative counters (the gauges holds_active and
/// max_writer_wait_ns are reported as their `after` value).
pub fn counter_delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .map(|(k, &a)| {
            (k.clone(), if is_gauge(k) { a } else { a - before.get(k).copied().unwrap_or(0) })
        })
        .collect()
}

// ---- /proc/sys/fs/pipe-max-size ----

const PIPE_MAX: &str = "/proc/sys/fs/pipe-max-size";

/// Raises pipe-max-size to at least `want` and puts the old value back on drop.
pub struct PipeMaxGuard {
    orig: Option<String>,
}

impl PipeMaxGuard {
    pub fn raise(want: usize) -> PipeMaxGuard {
        let cur = std::fs::read_to_string(PIPE_MAX).unwrap_or_default();
        match cur.trim().parse::<usize>() {
            Ok(v) if v < want => {
                if std::fs::write(PIPE_MAX, want.to_string()).is_ok() {
                    return PipeMaxGuard { orig: Some(cur.trim().to_string()) };
                }
                // Not root: F_SETPIPE_SZ will say so if it matters.
                PipeMaxGuard { orig: None }
            }
            _ => PipeMaxGuard { orig: None },
        }
    }
}

impl Drop for PipeMaxGuard {
    fn drop(&mut self) {
        if let Some(v) = &self.orig {
            let _ = std::fs::write(PIPE_MAX, v);
        }
    }
}

// ---- loopback TCP ----

/// A connected loopback TCP pair: (sender, receiver).
pub fn tcp_pair() -> Res<(Fd, Fd)> {
    let sock = || -> Res<Fd> {
        // SAFETY: plain socket creation.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(format!("socket: {}", last_err()));
        }
        Ok(Fd(s))
    };
    let lst = sock()?;
    // SAFETY: zeroed sockaddr_in is valid; fields set below.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr = libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() };
    sa.sin_port = 0;
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(lst.raw(), (&sa as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(format!("bind 127.0.0.1: {}", last_err()));
    }
    // SAFETY: listening socket we own.
    if unsafe { libc::listen(lst.raw(), 1) } != 0 {
        return Err(format!("listen: {}", last_err()));
    }
    let mut alen = len;
    // SAFETY: sa/alen are valid out-parameters.
    if unsafe { libc::getsockname(lst.raw(), (&mut sa as *mut libc::sockaddr_in).cast(), &mut alen) } != 0 {
        return Err(format!("getsockname: {}", last_err()));
    }
    let tx = sock()?;
    // SAFETY: sa holds the listener's address.
    if unsafe { libc::connect(tx.raw(), (&sa as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(format!("connect 127.0.0.1:{}: {}", u16::from_be(sa.sin_port), last_err()));
    }
    // SAFETY: accept on our listener; peer address not needed.
    let rx = unsafe { libc::accept4(lst.raw(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if rx < 0 {
        return Err(format!("accept: {}", last_err()));
    }
    Ok((tx, Fd(rx)))
}

pub fn shutdown_write(fd: i32) {
    // SAFETY: plain syscall on a socket we own.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// recv() into `buf`; Ok(0) at EOF.
pub fn recv(fd: i32, buf: &mut [u8]) -> Res<usize> {
    loop {
        // SAFETY: pointer/len describe buf.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = last_err();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(format!("recv: {e}"));
        }
    }
}

/// File data: every byte differs between `seed`s; never zero pages (tmpfs
/// would splice its shared zero page for holes).
pub fn pattern(seed: u8, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let o = off + i as u64;
        *b = ((o as u32).wrapping_mul(31).wrapping_add((o / PAGE as u64) as u32 * 7).wrapping_add(seed as u32) as u8) | 1;
    }
}

/// Reads and writes completed by the block device that holds `dir`
/// (`/sys/dev/block/MAJ:MIN/stat`, fields 1 and 5); None on tmpfs.
pub fn block_io(dir: &str) -> Option<(u64, u64)> {
    // SAFETY: zeroed stat is a valid out-parameter; the path is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let c = cstr(dir);
    // SAFETY: as above.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let (maj, min) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    let s = std::fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/stat")).ok()?;
    let f: Vec<u64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Some((*f.first()?, *f.get(4)?))
}

/// Punches `len` bytes at `off` out of the file (and its page cache).
pub fn punch(fd: i32, off: u64, len: usize) -> Res {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on our own descriptor.
    if unsafe { libc::fallocate(fd, mode, off as i64, len as i64) } != 0 {
        return Err(format!("fallocate(PUNCH_HOLE): {}", last_err()));
    }
    Ok(())
}

/// Writes `len` bytes at `off` of `fd` back and waits (the page is clean
/// afterwards).
pub fn sync_range(fd: i32, off: u64, len: usize) -> Res {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range on our own descriptor.
    if unsafe { libc::sync_file_range(fd, off as i64, len as i64, flags) } != 0 {
        return Err(format!("sync_file_range: {}", last_err()));
    }
    Ok(())
}

/// Busy time of all CPUs (not idle, not waiting for I/O) in seconds, from
/// /proc/stat: the work of every thread, kworker and softirq a method
/// causes, not only the bench process's.
pub fn all_cpu_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: f64 = v.iter().take(8).enumerate().filter(|&(i, _)| i != 3 && i != 4).map(|(_, x)| x).sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Drains every CPU's LRU add batches without evicting the page cache:
/// `/proc/sys/vm/compact_memory` does `lru_add_drain_all()` first (and then
/// compacts, which moves no folio anybody references). Without
/// CONFIG_COMPACTION nothing is drained.
pub(crate) fn drain_lru_batches() -> Res {
    match std::fs::write("/proc/sys/vm/compact_memory", "1") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("write /proc/sys/vm/compact_memory: {e}")),
        _ => Ok(()),
    }
}

/// The rows of a tab-separated file the instruction-clock guest wrote,
/// each parsed by `row` from its fields (`None`: a bad line, reported with
/// the file and the line).
pub(crate) fn read_tsv<T>(path: &str, mut row: impl FnMut(&[&str]) -> Option<T>) -> Res<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    text.lines()
        .map(|line| row(&line.split('\t').collect::<Vec<_>>()).ok_or_else(|| format!("{path}: bad line {line:?}")))
        .collect()
}
