//! Thin syscall wrappers and helpers shared by the cases.
//!
//! Raw wrappers return `Result<_, i32>` (errno) so cases can assert on the
//! exact errno; the checked ones return `TResult` with context in the message.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// From include/uapi/linux/stable_splice.h.
pub use stable_splice_uapi::{COUNTER_DIR, SPLICE_F_STABLE};
pub const SPLICE_F_MOVE: u32 = 0x01;

/// Flag the snapshot cases pass: SPLICE_F_STABLE, unless the environment
/// variable STABLE_SPLICE_TESTS_FLAG overrides it (e.g. `0` runs the cases
/// with plain splice to prove that they detect the overwrite).
pub fn stable() -> u32 {
    static FLAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| stable_override().unwrap_or(SPLICE_F_STABLE))
}

/// The flags of a case's splice: [`stable()`] for the stable twin (`held`),
/// 0 for its plain control.
pub fn stable_if(held: bool) -> u32 {
    if held { stable() } else { 0 }
}

pub fn stable_override() -> Option<u32> {
    let v = std::env::var("STABLE_SPLICE_TESTS_FLAG").ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}
pub const SPLICE_F_NONBLOCK: u32 = 0x02;
pub const PAGE: usize = 4096;

/// Outcome of a case that did not pass.
#[derive(Debug)]
pub enum TestErr {
    Fail(String),
    Skip(String),
}

impl fmt::Display for TestErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestErr::Fail(m) => write!(f, "{m}"),
            TestErr::Skip(m) => write!(f, "SKIP {m}"),
        }
    }
}

pub type TResult<T = ()> = Result<T, TestErr>;

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Symbolic name of an errno, for readable failure messages.
pub fn ename(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ETXTBSY => "ETXTBSY",
        libc::EDEADLK => "EDEADLK",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

/// Turn a raw syscall return value into Ok(count) / Err(errno).
pub fn cvt(ret: isize) -> Result<usize, i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// Map an errno result into a failure with context.
pub fn ck<T>(r: Result<T, i32>, what: &str) -> TResult<T> {
    r.map_err(|e| TestErr::Fail(format!("{what}: {}", ename(e))))
}

pub use stable_splice_sys::{cstr, Fd, Pipe};

pub fn open(path: &str, flags: i32, mode: u32) -> Result<Fd, i32> {
    stable_splice_sys::open(path, flags, mode).map_err(os_errno)
}

/// The errno of an `io::Error` from a syscall.
fn os_errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Scratch file; a named one is unlinked on drop unless already gone.
pub struct TestFile {
    pub fd: Fd,
    pub path: Option<String>,
}

impl Drop for TestFile {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let c = cstr(p);
            // SAFETY: valid C string; failure (already unlinked) is fine.
            unsafe { libc::unlink(c.as_ptr()) };
        }
    }
}

static NAME_SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique_name(dir: &str) -> String {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let n = NAME_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{}/.stable-splice-test.{pid}.{n}", dir.trim_end_matches('/'))
}

/// Anonymous scratch file: O_TMPFILE, else create + unlink.
pub fn tmpfile(dir: &str) -> TResult<TestFile> {
    match open(dir, libc::O_RDWR | libc::O_TMPFILE, 0o600) {
        Ok(fd) => Ok(TestFile { fd, path: None }),
        Err(libc::EOPNOTSUPP) | Err(libc::EISDIR) | Err(libc::EINVAL) => {
            let mut f = named_file(dir, 0o600)?;
            let c = cstr(f.path.take().as_deref().unwrap_or_default());
            // SAFETY: valid C string; the open fd keeps the inode alive.
            unsafe { libc::unlink(c.as_ptr()) };
            Ok(f)
        }
        Err(e) => fail!("open({dir}, O_TMPFILE): {}", ename(e)),
    }
}

/// Named scratch file (root-owned when run as root) with an explicit mode.
pub fn named_file(dir: &str, mode: u32) -> TResult<TestFile> {
    let path = unique_name(dir);
    let fd = ck(
        open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode),
        &format!("create {path}"),
    )?;
    // SAFETY: fd is valid; fchmod overrides the umask.
    unsafe { libc::fchmod(fd.raw(), mode) };
    Ok(TestFile { fd, path: Some(path) })
}

pub fn pwrite_all(fd: i32, buf: &[u8], off: usize) -> TResult {
    stable_splice_sys::pwrite_all(fd, buf, off as u64)
        .or_else(|e| fail!("pwrite({} bytes @{off}): {}", buf.len(), io_ename(e)))
}

pub fn write_all(fd: i32, buf: &[u8]) -> TResult {
    stable_splice_sys::write_all(fd, buf).or_else(|e| fail!("write({} bytes): {}", buf.len(), io_ename(e)))
}

/// An I/O error as its errno's name, or as it says itself.
fn io_ename(e: std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), ename)
}

/// pread until `len` bytes or EOF; the result may be short (checked by caller).
pub fn pread_vec(fd: i32, len: usize, off: usize) -> TResult<Vec<u8>> {
    let mut v = vec![0u8; len];
    let mut done = 0;
    while done < len {
        // SAFETY: pointer/len describe the unfilled tail of v.
        let r = unsafe {
            libc::pread(fd, v[done..].as_mut_ptr().cast(), len - done, (off + done) as libc::off_t)
        };
        match cvt(r) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(libc::EINTR) => {}
            Err(e) => fail!("pread({len} @{off}): {}", ename(e)),
        }
    }
    v.truncate(done);
    Ok(v)
}

pub fn lseek(fd: i32, off: i64) -> TResult {
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::lseek(fd, off, libc::SEEK_SET) };
    ensure!(r == off, "lseek({off}) returned {r}: {}", ename(errno()));
    Ok(())
}

pub fn file_size(fd: i32) -> TResult<u64> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat buffer.
    let r = unsafe { libc::fstat(fd, &mut st) };
    ensure!(r == 0, "fstat: {}", ename(errno()));
    Ok(st.st_size as u64)
}

pub fn ftruncate(fd: i32, len: usize) -> TResult {
    // SAFETY: plain syscall.
    let r = unsafe { libc::ftruncate(fd, len as libc::off_t) };
    ensure!(r == 0, "ftruncate({len}): {}", ename(errno()));
    Ok(())
}

/// File scratch data: byte at absolute offset `o` depends on `o`, its page and
/// `seed`; two different seeds differ in every byte, so a single stale or
/// misplaced byte is detected.
pub fn pattern(seed: u8, off: usize, len: usize) -> Vec<u8> {
    (off..off + len)
        .map(|o| (o as u32).wrapping_mul(31).wrapping_add((o / PAGE) as u32 * 7).wrapping_add(seed as u32) as u8)
        .collect()
}

/// Exact comparison with a diagnostic: first mismatch, mismatch count and,
/// if `alt` is given, how many bytes equal the alternative (e.g. new data).
pub fn expect_bytes(what: &str, got: &[u8], want: &[u8], alt: Option<(&str, &[u8])>) -> TResult {
    if got == want {
        return Ok(());
    }
    let common = got.len().min(want.len());
    let first = (0..common).find(|&i| got[i] != want[i]);
    let bad = (0..common).filter(|&i| got[i] != want[i]).count();
    let mut msg = format!("{what}: got {} bytes, expected {}", got.len(), want.len());
    if let Some(i) = first {
        msg += &format!(
            "; {bad} bytes differ, first at offset {i} (got {:#04x}, want {:#04x})",
            got[i], want[i]
        );
    }
    if let Some((name, a)) = alt {
        let n = (0..common.min(a.len())).filter(|&i| got[i] == a[i] && got[i] != want[i]).count();
        if n > 0 {
            let the = if name.starts_with("the ") { "" } else { "the " };
            msg += &format!("; {n} bytes equal {the}{name}");
        }
    }
    Err(TestErr::Fail(msg))
}

pub fn pipe() -> TResult<Pipe> {
    let p = stable_splice_sys::pipe().map_err(os_errno);
    ck(p, "pipe2")
}

pub fn set_nonblock(fd: i32, on: bool) -> TResult {
    // SAFETY: fcntl on an fd we own.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    ensure!(fl >= 0, "F_GETFL: {}", ename(errno()));
    let nfl = if on { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK };
    // SAFETY: as above.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, nfl) };
    ensure!(r == 0, "F_SETFL: {}", ename(errno()));
    Ok(())
}

/// Bytes currently queued in a pipe.
pub fn pipe_queued(fd: i32) -> TResult<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to n.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    ensure!(r == 0, "FIONREAD: {}", ename(errno()));
    Ok(n as usize)
}

/// Read up to `n` bytes already queued in a pipe without blocking forever:
/// a short pipe yields a short result (caller compares), not a hang.
pub fn read_pipe(fd: &Fd, n: usize) -> TResult<Vec<u8>> {
    set_nonblock(fd.raw(), true)?;
    let mut v = vec![0u8; n];
    let mut done = 0;
    let mut idle_polls = 0;
    while done < n {
        // SAFETY: pointer/len describe the unfilled tail of v.
        let r = unsafe { libc::read(fd.raw(), v[done..].as_mut_ptr().cast(), n - done) };
        match cvt(r) {
            Ok(0) => break,
            Ok(k) => {
                done += k;
                idle_polls = 0;
            }
            Err(libc::EINTR) => {}
            Err(libc::EAGAIN) => {
                idle_polls += 1;
                if idle_polls > 2 {
                    break;
                }
                poll_in(fd.raw(), 500);
            }
            Err(e) => fail!("read(pipe): {}", ename(e)),
        }
    }
    set_nonblock(fd.raw(), false)?;
    v.truncate(done);
    Ok(v)
}

/// Wait up to `ms` for fd to become readable; true if readable/hung up.
pub fn poll_in(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: p is a single valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0
}

pub fn splice_raw(
    fd_in: i32,
    off_in: Option<&mut i64>,
    fd_out: i32,
    off_out: Option<&mut i64>,
    len: usize,
    flags: u32,
) -> Result<usize, i32> {
    stable_splice_sys::splice(fd_in, off_in, fd_out, off_out, len, flags).map_err(os_errno)
}

/// Splice `len` bytes file->pipe in ONE call and require the full count.
pub fn splice_exact(fd_in: i32, off: usize, fd_out: i32, len: usize, flags: u32) -> TResult {
    let mut o = off as i64;
    let n = ck(
        splice_raw(fd_in, Some(&mut o), fd_out, None, len, flags),
        &format!("splice({len} @{off}, flags={flags:#x})"),
    )?;
    ensure!(n == len, "splice({len} @{off}, flags={flags:#x}) returned {n}");
    ensure!(o == (off + len) as i64, "splice left off_in at {o}, expected {}", off + len);
    Ok(())
}

/// Splice `len` bytes from a pipe into `fd` at `off` (`flags`: for
/// instance `SPLICE_F_MOVE`), as many calls as it takes.
pub fn splice_pipe_into(pipe_r: i32, fd: i32, off: usize, len: usize, flags: u32) -> TResult {
    let mut o = off as i64;
    while (o as usize) < off + len {
        let left = off + len - o as usize;
        let n = ck(splice_raw(pipe_r, None, fd, Some(&mut o), left, flags), &format!("splice pipe -> file at {o}"))?;
        ensure!(n > 0, "splice pipe -> file returned 0 at {o}, {left} bytes left");
    }
    Ok(())
}

pub fn tee_raw(fd_in: i32, fd_out: i32, len: usize, flags: u32) -> Result<usize, i32> {
    // SAFETY: plain syscall on fds we own.
    cvt(unsafe { libc::tee(fd_in, fd_out, len, flags) })
}

/// Memory mapping (anonymous, page aligned, or of a file), unmapped on drop.
pub struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    pub fn anon(len: usize) -> TResult<Map> {
        Self::new(-1, len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }
    pub fn shared_file(fd: i32, len: usize) -> TResult<Map> {
        Self::new(fd, len, libc::MAP_SHARED)
    }
    fn new(fd: i32, len: usize, flags: i32) -> TResult<Map> {
        // SAFETY: asking the kernel for a fresh mapping; result checked.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0)
        };
        ensure!(p != libc::MAP_FAILED, "mmap({len}): {}", ename(errno()));
        Ok(Map { ptr: p.cast(), len })
    }
    /// Store `data` at `off` through the mapping.
    pub fn store(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len, "store out of mapping");
        // SAFETY: range checked above; the mapping is live and writable.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) };
    }
    pub fn load(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len, "load out of mapping");
        let mut v = vec![0u8; len];
        // SAFETY: range checked above; the mapping is live and readable.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), v.as_mut_ptr(), len) };
        v
    }
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}


/// One module counter from debugfs; None if missing or unparsable.
pub fn counter(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("{COUNTER_DIR}/{name}")).ok()?.trim().parse().ok()
}

/// The bytes stable splices have put into pipes so far: (zero copy,
/// copied at splice time); zeros without the module.
pub fn stable_bytes() -> (u64, u64) {
    (counter("bytes_zero_copy").unwrap_or(0), counter("bytes_copied_at_splice").unwrap_or(0))
}

/// Both of [`stable_bytes`] together: every byte a stable splice made
/// stable, by either way.
pub fn stable_bytes_total() -> u64 {
    let (zero_copy, copied) = stable_bytes();
    zero_copy + copied
}

pub fn counters_present() -> bool {
    std::path::Path::new(COUNTER_DIR).is_dir()
}

/// A process's /proc/PID/stat: its command and the fields after it
/// (`fields[0]` the state, `fields[3]` the session id, as proc(5) numbers
/// them from 3 on). The command may hold spaces and parentheses: it ends
/// at the last ") ".
pub struct ProcStat {
    pub comm: String,
    pub fields: Vec<String>,
}

impl ProcStat {
    pub fn read(pid: impl std::fmt::Display) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        Some(Self {
            comm: head.split_once(" (").map_or("?", |(_, c)| c).to_string(),
            fields: rest.split_whitespace().map(str::to_string).collect(),
        })
    }

    pub fn state(&self) -> &str {
        self.fields.first().map_or("?", String::as_str)
    }

    pub fn session(&self) -> Option<u32> {
        self.fields.get(3)?.parse().ok()
    }
}

/// Poll until `f` holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Read one status line from a child with a timeout.
pub fn read_line(fd: &Fd, limit: Duration) -> Option<String> {
    let end = Instant::now() + limit;
    let mut line = Vec::new();
    while Instant::now() < end {
        if !poll_in(fd.raw(), 100) {
            continue;
        }
        let mut c = [0u8; 1];
        // SAFETY: one-byte read into c.
        match unsafe { libc::read(fd.raw(), c.as_mut_ptr().cast(), 1) } {
            1 if c[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            1 => line.push(c[0]),
            _ => return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()),
        }
    }
    None
}

/// Writes one status line for a parent's [`read_line`].
pub fn say(fd: i32, msg: &str) {
    let m = format!("{}\n", msg.replace('\n', " "));
    // SAFETY: write from a valid buffer to our pipe.
    unsafe { libc::write(fd, m.as_ptr().cast(), m.len()) };
}

/// fork(); the child runs `f` and _exits with its return value.
pub fn fork_child(f: impl FnOnce() -> i32) -> TResult<i32> {
    // SAFETY: cases run single-threaded in their own process when they fork;
    // the child only runs `f` and then _exit()s.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork: {}", ename(errno()));
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: leave without running the parent's destructors/atexit.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Wait for a child for at most `limit`; None on timeout (child left running).
pub fn wait_child(pid: i32, limit: Duration) -> Option<i32> {
    let mut status = 0;
    let done = wait_until(limit, || {
        // SAFETY: status is a valid out-parameter; pid is our child.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
    });
    done.then_some(status)
}

pub fn kill_child(pid: i32) {
    // SAFETY: pid is a child we forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
    }
}

pub fn describe_status(st: i32) -> String {
    if libc::WIFEXITED(st) {
        format!("exit {}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        format!("killed by signal {}", libc::WTERMSIG(st))
    } else {
        format!("status {st:#x}")
    }
}

/// Drains every CPU's LRU batches (and drops clean, unreferenced page
/// cache): `echo 1 > /proc/sys/vm/drop_caches`. A folio in a batch has a
/// reference the module cannot tell from a reader's, so it is neither held
/// (it is copied) nor released until the batch drains.
pub fn drain_lru_batches() -> TResult {
    std::fs::write("/proc/sys/vm/drop_caches", "1").map_err(|e| TestErr::Fail(format!("drop_caches: {e}")))
}

/// This thread pinned to the CPU it runs on, until dropped (its affinity
/// comes back): the per-CPU LRU batches it fills meanwhile are the ones
/// [`drain_local_lru_batches`] drains.
pub struct OnOneCpu {
    saved: libc::cpu_set_t,
}

pub fn on_one_cpu() -> TResult<OnOneCpu> {
    // SAFETY: a zeroed cpu_set_t is an empty set; the calls fill or read
    // sets of the size given, for this thread.
    unsafe {
        let mut saved: libc::cpu_set_t = std::mem::zeroed();
        ensure!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) == 0, "sched_getaffinity: {}", ename(errno()));
        let cpu = libc::sched_getcpu();
        ensure!(cpu >= 0, "sched_getcpu: {}", ename(errno()));
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut one);
        ensure!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0, "sched_setaffinity: {}", ename(errno()));
        Ok(OnOneCpu { saved })
    }
}

impl Drop for OnOneCpu {
    fn drop(&mut self) {
        // SAFETY: the set read at creation, for this thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.saved) };
    }
}

/// Drains this CPU's LRU batches (folios added, activated, deactivated a
/// moment ago) and nothing else: `lru_add_drain()`, which
/// `POSIX_FADV_DONTNEED` of a scratch file in `dir` runs before it finds
/// nothing cached to drop. Unlike [`drain_lru_batches`] it leaves every
/// other page as it is (`drop_caches` deactivates the pages it cannot
/// drop, and puts clean ones at the end of the inactive list).
pub fn drain_local_lru_batches(dir: &str) -> TResult {
    let f = tmpfile(dir)?;
    ftruncate(f.fd.raw(), PAGE)?;
    // SAFETY: fadvise on our own descriptor.
    let r = unsafe { libc::posix_fadvise(f.fd.raw(), 0, PAGE as i64, libc::POSIX_FADV_DONTNEED) };
    ensure!(r == 0, "posix_fadvise(DONTNEED): {}", ename(r));
    Ok(())
}

/// Frees the skbs every CPU deferred ([`stable_splice_sys::flush_deferred_skb_frees`]):
/// their page fragments may be held folios.
pub fn flush_deferred_skb_frees() -> TResult {
    stable_splice_sys::flush_deferred_skb_frees().map_err(|e| TestErr::Fail(format!("flushing deferred skb frees: {e}")))
}

/// Makes the first `len` bytes of `fd`'s page cache uncontended before a
/// zero-copy splice: a plain splice keeps them cached while the LRU
/// batches are drained, then lets go.
pub fn settle_page_cache(fd: i32, len: usize) -> TResult {
    let p = pipe()?;
    // SAFETY: fcntl on our own pipe descriptor.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, len.max(PAGE) as i32) };
    splice_exact(fd, 0, p.w.raw(), len, 0)?;
    drain_lru_batches()
}

/// `fsync(fd)`, its error as a failure.
pub fn fsync(fd: i32) -> TResult {
    // SAFETY: fsync takes any descriptor; a bad one is an error.
    ensure!(unsafe { libc::fsync(fd) } == 0, "fsync: {}", ename(errno()));
    Ok(())
}

/// `fd`'s file opened again (through /proc/self/fd) with `flags` and
/// `O_DIRECT`; None where its file system has no O_DIRECT (`EINVAL`).
pub fn reopen_direct(fd: i32, flags: i32) -> TResult<Option<Fd>> {
    match open(&format!("/proc/self/fd/{fd}"), flags | libc::O_DIRECT, 0) {
        Ok(d) => Ok(Some(d)),
        Err(libc::EINVAL) => Ok(None),
        Err(e) => fail!("open(O_DIRECT): {}", ename(e)),
    }
}

/// `data` (whole pages) written at `off` (page-aligned) through `direct`,
/// an O_DIRECT descriptor, by way of `buf`, a mapping at least as long.
pub fn pwrite_direct(direct: &Fd, buf: &Map, data: &[u8], off: usize) -> TResult {
    buf.store(0, data);
    // SAFETY: `buf` is a live, page-aligned mapping of at least data.len() bytes.
    let r = cvt(unsafe { libc::pwrite(direct.raw(), buf.ptr().cast(), data.len(), off as i64) });
    ensure!(r == Ok(data.len()), "O_DIRECT pwrite({}@{off}) returned {r:?}", data.len());
    Ok(())
}

/// The first `len` bytes (page-aligned) of `fd`'s file as the disk has them
/// after an fsync: read with `O_DIRECT` through a new descriptor, past the
/// page cache.
pub fn fsync_and_read_disk(fd: i32, len: usize) -> TResult<Vec<u8>> {
    fsync(fd)?;
    let direct = ck(open(&format!("/proc/self/fd/{fd}"), libc::O_RDONLY | libc::O_DIRECT, 0), "reopen with O_DIRECT")?;
    let buf = Map::anon(len)?;
    // SAFETY: a live, page-aligned, writable mapping of len bytes.
    let r = cvt(unsafe { libc::pread(direct.raw(), buf.ptr().cast(), len, 0) });
    ensure!(r == Ok(len), "O_DIRECT pread returned {r:?}");
    Ok(buf.load(0, len))
}

/// The page of `fd`'s file at `off` (page-aligned) as its block device has
/// it, read past both page caches and without writing anything back: its
/// blocks from `FS_IOC_FIEMAP` (without `FIEMAP_FLAG_SYNC`, which would
/// write the file back first), the device from the file's `st_dev`, read
/// with `O_DIRECT`, extent by extent: with blocks smaller than a page
/// (ext4 `nodelalloc` here, 1 KiB) a page may lie in two extents, 3 KiB
/// in one and 1 KiB in the next. `Err` with what FIEMAP said where a part
/// of the page has no block on the device yet (delayed allocation, a hole,
/// inline or encoded data) or the file system is on no block device.
pub fn page_on_device(fd: i32, off: usize) -> TResult<Result<Vec<u8>, String>> {
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    /// A page has at most this many blocks (512-byte blocks).
    const MAX: usize = PAGE / 512;
    #[repr(C)]
    #[derive(Default)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; MAX],
    }
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    // Delayed allocation, unknown location, inline, encoded, unwritten.
    const NOT_ON_DEVICE: u32 = 0x4 | 0x2 | 0x200 | 0x8 | 0x800;
    let mut fm = Fiemap { start: off as u64, length: PAGE as u64, extent_count: MAX as u32, ..Default::default() };
    // SAFETY: our descriptor; `fm` has room for the MAX extents it asks for.
    ensure!(unsafe { libc::ioctl(fd, FS_IOC_FIEMAP, &mut fm) } == 0, "FS_IOC_FIEMAP: {}", ename(errno()));
    let extents = &fm.extents[..(fm.mapped_extents as usize).min(MAX)];
    let said = || {
        let list: Vec<String> = extents.iter().map(|e| format!("bytes {}+{} flags {:#x}", e.logical, e.length, e.flags)).collect();
        format!("FIEMAP's extents for bytes {off}+{PAGE}: [{}]", list.join(", "))
    };
    // The pieces of the page in file order: (offset in the page, length,
    // byte on the device). Each must follow the last, on the device.
    let (mut pieces, mut at) = (Vec::new(), off as u64);
    for e in extents {
        let end = (e.logical + e.length).min((off + PAGE) as u64);
        if e.flags & NOT_ON_DEVICE != 0 || e.logical > at || end <= at {
            break;
        }
        pieces.push(((at - off as u64) as usize, (end - at) as usize, e.physical + (at - e.logical)));
        at = end;
    }
    if at < (off + PAGE) as u64 {
        return Ok(Err(if extents.is_empty() { format!("FIEMAP maps no extent at byte {off}") } else { said() }));
    }
    // SAFETY: a zeroed stat is a valid out-parameter for our descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    ensure!(unsafe { libc::fstat(fd, &mut st) } == 0, "fstat: {}", ename(errno()));
    let (major, minor) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    let Ok(uevent) = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")) else {
        return Ok(Err(format!("no block device {major}:{minor}")));
    };
    let Some(name) = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")) else {
        return Ok(Err(format!("no name for block device {major}:{minor}")));
    };
    let dev = ck(open(&format!("/dev/{name}"), libc::O_RDONLY | libc::O_DIRECT, 0), &format!("open /dev/{name}"))?;
    let buf = Map::anon(PAGE)?;
    for (into, len, from) in pieces {
        // SAFETY: `into + len` lies within the live, page-aligned, writable
        // mapping of a page; pieces are whole blocks, aligned for O_DIRECT.
        let r = cvt(unsafe { libc::pread(dev.raw(), buf.ptr().add(into).cast(), len, from as i64) });
        ensure!(r == Ok(len), "O_DIRECT pread of /dev/{name}: {len} bytes at {from}: {r:?} ({})", said());
    }
    Ok(Ok(buf.load(0, PAGE)))
}

/// Ends at once the holds whose folios nobody reads (debugfs `reap`: the
/// periodic reaper's walk, without waiting out its idle second).
pub fn reap_idle_holds() -> TResult {
    stable_splice_sys::Reaper::open(COUNTER_DIR)
        .and_then(|r| r.reap())
        .map_err(|e| TestErr::Fail(format!("debugfs reap: {e}")))
}

/// Waits until the module holds nothing: holds of folios that nobody reads
/// are reaped once idle for a second (checked every 100 ms), or at once
/// when asked (debugfs `reap`, asked here), and once no LRU batch
/// references their folios. A per-CPU batch can take a reference after a
/// drain (a folio marked accessed, deactivated, rotated) and keep it until
/// that CPU drains again, which an idle CPU may not do for a long time;
/// skbs a TCP receiver freed on another CPU keep their folio references on
/// the allocating CPU's defer list the same way. So the batches are
/// drained, the deferred skbs freed and the holds reaped every 1.5 s while
/// any is left. A reader's reference (a leak) survives every round.
pub fn wait_holds_released(limit: Duration) -> bool {
    let idle = || counter("holds_active") == Some(0);
    let reap = || {
        let _ = reap_idle_holds();
        idle()
    };
    if idle() || reap() {
        return true;
    }
    let deadline = Instant::now() + Duration::from_millis(1500) + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if wait_until(left.min(Duration::from_millis(1500)), idle) {
            return true;
        }
        if left.is_zero() || drain_lru_batches().is_err() || flush_deferred_skb_frees().is_err() {
            return false;
        }
        if reap() {
            return true;
        }
    }
}

/// What the module holds and what references each held folio (debugfs
/// `holds`), for a failure message: the first `lines` lines.
pub fn holds_report(lines: usize) -> String {
    let r = std::fs::read_to_string(format!("{COUNTER_DIR}/holds")).unwrap_or_else(|e| format!("({COUNTER_DIR}/holds: {e})"));
    let mut out: Vec<&str> = r.lines().take(lines).collect();
    if r.lines().count() > lines {
        out.push("...");
    }
    out.join(" | ")
}

/// Whether the page cache may hold large folios (a kernel with
/// transparent hugepages, as distributions build them; ext4 and xfs then
/// cache files in folios of several pages, each held as one).
pub fn large_folios_possible() -> bool {
    std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists()
}

/// `/sys/module/stable_splice/refcnt`.
pub fn module_refcnt() -> Option<u64> {
    std::fs::read_to_string("/sys/module/stable_splice/refcnt").ok()?.trim().parse().ok()
}

/// The mount options of the file system `dir` is on (the longest mount
/// point in /proc/self/mounts that contains it).
pub fn mount_options(dir: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let within = |m: &str| dir == m || m == "/" || dir.strip_prefix(m).is_some_and(|r| r.starts_with('/'));
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 3 && within(f[1])).then(|| (f[1].len(), f[3].to_string()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, o)| o)
        .unwrap_or_default()
}

/// Whether stable splices of files in `dir` copy at splice time instead of
/// holding: tmpfs, and ext4 with `data=journal` (journalled data cannot
/// move to a copy of its folio).
pub fn copies_at_splice(dir: &str) -> bool {
    match crate::detect_fs(dir).as_str() {
        "tmpfs" => true,
        "ext4" => mount_options(dir).split(',').any(|o| o == "data=journal"),
        _ => false,
    }
}

/// Whether the break of a dirty held large folio of a file in `dir` puts
/// its small copies in the page cache at once, locked and with their
/// buffer heads (`ss_folio_break_small` in rust/folio.c), where a
/// page of the copy could otherwise be reached dirty without buffers:
/// ext4. Nothing reaches a page of such a split before the break is done.
pub fn dirty_large_splits_in_one_step(dir: &str) -> bool {
    crate::detect_fs(dir) == "ext4"
}

/// /proc/kpageflags bits of a large folio's first page and of its others.
const KPF_COMPOUND_HEAD: u64 = 1 << 15;
const KPF_COMPOUND_TAIL: u64 = 1 << 16;

/// How many of the first `len` bytes' pages of `fd` sit in large folios
/// (compound pages, /proc/kpageflags; root only), and how many pages were
/// looked at. The file is mapped read-only and unmapped again: a read
/// fault maps a cached folio and does not change it. None without
/// /proc/kpageflags (CONFIG_PROC_PAGE_MONITOR).
pub fn pages_in_large_folios(fd: i32, len: usize) -> TResult<Option<(usize, usize)>> {
    let Some(flags) = page_flags(fd, len)? else {
        return Ok(None);
    };
    let large = flags.iter().filter(|&&f| f & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) != 0).count();
    Ok(Some((large, flags.len())))
}

/// [`pages_in_large_folios`]'s count alone: 0 without /proc/kpageflags.
pub fn large_pages(fd: i32, len: usize) -> TResult<usize> {
    Ok(pages_in_large_folios(fd, len)?.map_or(0, |(large, _)| large))
}

/// The large folios among the first `len` bytes' pages of `fd`, as
/// /proc/kpageflags shows them (a compound head and the tails after it):
/// (first page, pages) each. None without /proc/kpageflags.
pub fn large_folios(fd: i32, len: usize) -> TResult<Option<Vec<(usize, usize)>>> {
    let Some(flags) = page_flags(fd, len)? else {
        return Ok(None);
    };
    let mut folios: Vec<(usize, usize)> = Vec::new();
    for (i, f) in flags.iter().enumerate() {
        if f & KPF_COMPOUND_HEAD != 0 {
            folios.push((i, 1));
        } else if f & KPF_COMPOUND_TAIL != 0 {
            match folios.last_mut() {
                Some((first, n)) if *first + *n == i => *n += 1,
                // A tail whose head lies before `len`'s start cannot be: index 0 heads.
                _ => folios.push((i, 1)),
            }
        }
    }
    Ok(Some(folios))
}

/// The pages among the first `len` bytes of `fd` whose folio is dirty
/// (`KPF_DIRTY`), as [`pages_in_large_folios`] sees them. None without
/// /proc/kpageflags.
pub fn dirty_pages(fd: i32, len: usize) -> TResult<Option<Vec<usize>>> {
    const KPF_DIRTY: u64 = 1 << 4;
    Ok(page_flags(fd, len)?.map(|flags| (0..flags.len()).filter(|&i| flags[i] & KPF_DIRTY != 0).collect()))
}

/// How many of the first `len` bytes' pages of `fd` are cached off the
/// LRU (`KPF_LRU` clear: in a per-CPU LRU add batch, or isolated), as
/// [`pages_in_large_folios`] sees them. None without /proc/kpageflags.
pub fn pages_off_lru(fd: i32, len: usize) -> TResult<Option<usize>> {
    const KPF_LRU: u64 = 1 << 5;
    Ok(page_flags(fd, len)?.map(|flags| flags.iter().filter(|&&f| f != 0 && f & KPF_LRU == 0).count()))
}

/// /proc/kpageflags of each cached page of the first `len` bytes of `fd`
/// (0 for a page that is not cached), found through a read-only shared
/// mapping that faults each page in; a fault maps a cached folio and does
/// not change it. None without /proc/kpageflags (CONFIG_PROC_PAGE_MONITOR).
fn page_flags(fd: i32, len: usize) -> TResult<Option<Vec<u64>>> {
    use std::os::unix::fs::FileExt;
    if !std::path::Path::new("/proc/kpageflags").exists() {
        return Ok(None);
    }
    // SAFETY: a fresh read-only shared mapping of our own file; checked.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
    ensure!(p != libc::MAP_FAILED, "mmap({len}): {}", ename(errno()));
    let pages = len / PAGE;
    for i in 0..pages {
        // SAFETY: inside the mapping; a volatile read faults the page in.
        unsafe { std::ptr::read_volatile(p.cast::<u8>().add(i * PAGE)) };
    }
    let census = (|| -> std::io::Result<Vec<u64>> {
        let pagemap = std::fs::File::open("/proc/self/pagemap")?;
        let kpageflags = std::fs::File::open("/proc/kpageflags")?;
        let mut flags = Vec::with_capacity(pages);
        for i in 0..pages {
            let mut e = [0u8; 8];
            pagemap.read_exact_at(&mut e, (p as u64 / PAGE as u64 + i as u64) * 8)?;
            let pfn = u64::from_ne_bytes(e) & ((1 << 55) - 1);
            let mut f = [0u8; 8];
            let ok = pfn != 0 && kpageflags.read_exact_at(&mut f, pfn * 8).is_ok();
            flags.push(if ok { u64::from_ne_bytes(f) } else { 0 });
        }
        Ok(flags)
    })();
    // SAFETY: unmapping what was mapped above, once.
    unsafe { libc::munmap(p, len) };
    census.map(Some).map_err(|e| TestErr::Fail(format!("page census: {e}")))
}

/// How many of the first `len` bytes' pages of `fd`'s file are in the page
/// cache (`mincore()` through a read-only shared mapping, which faults
/// nothing in and marks nothing accessed).
pub fn resident_pages(fd: i32, len: usize) -> TResult<usize> {
    // SAFETY: a fresh read-only shared mapping of our own file; checked.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
    ensure!(p != libc::MAP_FAILED, "mmap({len}): {}", ename(errno()));
    let mut vec = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: the mapping above, and a vector of a byte per page of it.
    let r = unsafe { libc::mincore(p, len, vec.as_mut_ptr()) };
    let e = errno();
    // SAFETY: unmapping what was mapped above, once.
    unsafe { libc::munmap(p, len) };
    ensure!(r == 0, "mincore: {}", ename(e));
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
}

/// A memory cgroup of its own under the cgroup2 root (the memory
/// controller enabled for the root's children if it was not), with
/// `memory.max` set if `max`; removed, and the controller left as it was,
/// when dropped. Its tasks must be gone by then (a process that
/// [`MemCgroup::enter`]ed is back where it was).
pub struct MemCgroup {
    path: String,
    root: String,
    enabled: bool,
}

impl MemCgroup {
    pub fn new(name: &str, max: Option<usize>) -> TResult<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| TestErr::Fail(format!("/proc/self/mounts: {e}")))?;
        let Some(root) = mounts.lines().map(|l| l.split(' ').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[2] == "cgroup2").map(|f| f[1].to_string()) else {
            skip!("no cgroup2 file system mounted (scripts/lib/guest.sh mounts one where the kernel has cgroups)");
        };
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| TestErr::Fail(format!("{p}: {e}")));
        if !read(&format!("{root}/cgroup.controllers"))?.split_whitespace().any(|c| c == "memory") {
            skip!("no memory controller in {root}: this kernel has no CONFIG_MEMCG");
        }
        let control = format!("{root}/cgroup.subtree_control");
        let enabled = !read(&control)?.split_whitespace().any(|c| c == "memory");
        if enabled {
            std::fs::write(&control, "+memory").map_err(|e| TestErr::Fail(format!("{control} <- +memory: {e}")))?;
        }
        let path = format!("{root}/{name}");
        let cg = MemCgroup { path, root, enabled };
        std::fs::create_dir(&cg.path).map_err(|e| TestErr::Fail(format!("mkdir {}: {e}", cg.path)))?;
        if let Some(max) = max {
            std::fs::write(cg.file("memory.max"), max.to_string()).map_err(|e| TestErr::Fail(format!("memory.max <- {max}: {e}")))?;
            // No swap to escape to either, where the kernel has it.
            let _ = std::fs::write(cg.file("memory.swap.max"), "0");
        }
        Ok(cg)
    }

    pub fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    /// A count of memory.events.
    pub fn event(&self, name: &str) -> TResult<u64> {
        let p = self.file("memory.events");
        let text = std::fs::read_to_string(&p).map_err(|e| TestErr::Fail(format!("{p}: {e}")))?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .ok_or_else(|| TestErr::Fail(format!("no '{name}' in {p}")))
    }

    /// Moves this process (all its threads) into the cgroup until the
    /// returned guard drops, then back into the cgroup it was in: what it
    /// allocates meanwhile, page cache included, is charged here, and stays
    /// charged here after.
    pub fn enter(&self) -> TResult<Entered> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| TestErr::Fail(format!("/proc/self/cgroup: {e}")))?;
        let Some(from) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            fail!("no cgroup2 line in /proc/self/cgroup: {own:?}");
        };
        let back = format!("{}{}/cgroup.procs", self.root, from.trim_end_matches('/'));
        // SAFETY: getpid() has no preconditions.
        let me = unsafe { libc::getpid() }.to_string();
        std::fs::write(self.file("cgroup.procs"), &me).map_err(|e| TestErr::Fail(format!("{} <- {me}: {e}", self.file("cgroup.procs"))))?;
        Ok(Entered { back, me })
    }

    /// Its `cgroup.procs`, open for writing: a forked child joins with
    /// [`join_cgroup`], which allocates nothing.
    pub fn procs(&self) -> TResult<std::fs::File> {
        let p = self.file("cgroup.procs");
        std::fs::OpenOptions::new().write(true).open(&p).map_err(|e| TestErr::Fail(format!("{p}: {e}")))
    }

    /// Proactive reclaim of `bytes` of the cgroup's memory (`memory.reclaim`,
    /// which fails with `EAGAIN` when it reclaimed less).
    pub fn reclaim(&self, bytes: usize) -> Result<(), i32> {
        std::fs::write(self.file("memory.reclaim"), bytes.to_string()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
        if self.enabled {
            let _ = std::fs::write(format!("{}/cgroup.subtree_control", self.root), "-memory");
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is
/// `procs` ([`MemCgroup::procs`]): one write(2) of "0", which cgroup v2
/// reads as the writer itself, so it is fit for a forked child of a
/// threaded process (no allocation). Whether it worked.
pub fn join_cgroup(procs: &std::fs::File) -> bool {
    // SAFETY: a write of our one-byte buffer to the caller's descriptor.
    unsafe { libc::write(std::os::fd::AsRawFd::as_raw_fd(procs), b"0".as_ptr().cast(), 1) == 1 }
}

/// This process inside a [`MemCgroup`] ([`MemCgroup::enter`]) until dropped.
pub struct Entered {
    /// `cgroup.procs` of the cgroup it came from.
    back: String,
    me: String,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.back, &self.me) {
            eprintln!("moving the test process back to {}: {e}", self.back);
        }
    }
}

/// A file system a test mounted on `target`, unmounted on drop, and then
/// `scratch`, the directory made for it, removed.
pub struct TestMount {
    pub target: String,
    scratch: String,
}

impl TestMount {
    /// Mounts `fstype` from `source` with `data` on `target`, a directory
    /// under `scratch` (made here); the errno if the mount fails, which
    /// leaves the directories for the caller to retry in or remove.
    pub fn mount(source: &str, fstype: &str, data: &str, target: String, scratch: String) -> TResult<Result<Self, i32>> {
        std::fs::create_dir_all(&target).map_err(|e| TestErr::Fail(format!("mkdir {target}: {e}")))?;
        let c = |v: &str| std::ffi::CString::new(v).map_err(|_| TestErr::Fail(format!("NUL in {v:?}")));
        let (csource, cfstype, cdata, ctarget) = (c(source)?, c(fstype)?, c(data)?, c(&target)?);
        // SAFETY: NUL-terminated strings that live across the call.
        let r = unsafe { libc::mount(csource.as_ptr(), ctarget.as_ptr(), cfstype.as_ptr(), 0, cdata.as_ptr().cast()) };
        Ok(if r == 0 { Ok(Self { target, scratch }) } else { Err(errno()) })
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.target.as_str()) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), 0) };
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}
