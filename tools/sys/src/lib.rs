//! Descriptors and the few syscalls the user-space tests (`tests/userspace`)
//! and the benchmark (`tests/bench`) share, as `io::Result`; each wraps
//! them in its own error type. The module's interface itself (flag,
//! ioctls, counters) is `stable-splice-uapi`.

use std::ffi::CString;
use std::io;

/// Owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(pub i32);

impl Fd {
    pub fn raw(&self) -> i32 {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: we own the descriptor and close it exactly once, here.
            unsafe { libc::close(self.0) };
        }
    }
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).expect("path contains NUL")
}

/// `open(2)` with `O_CLOEXEC`.
pub fn open(path: &str, flags: i32, mode: u32) -> io::Result<Fd> {
    let p = cstr(path);
    // SAFETY: p is a valid NUL-terminated string.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(Fd(fd))
    }
}

/// `pwrite(2)` of all of `buf` at `off`: again after `EINTR` and a short
/// write; a write of nothing is `WriteZero`.
pub fn pwrite_all(fd: i32, buf: &[u8], off: u64) -> io::Result<()> {
    whole(buf.len(), io::ErrorKind::WriteZero, |done| {
        // SAFETY: pointer/len describe the live remainder of buf.
        unsafe { libc::pwrite(fd, buf[done..].as_ptr().cast(), buf.len() - done, (off + done as u64) as libc::off_t) }
    })
}

/// `write(2)` of all of `buf`, as [`pwrite_all`].
pub fn write_all(fd: i32, buf: &[u8]) -> io::Result<()> {
    whole(buf.len(), io::ErrorKind::WriteZero, |done| {
        // SAFETY: pointer/len describe the live remainder of buf.
        unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) }
    })
}

/// `pread(2)` of all of `buf` at `off`: again after `EINTR` and a short
/// read; end of file first is `UnexpectedEof`.
pub fn pread_exact(fd: i32, buf: &mut [u8], off: u64) -> io::Result<()> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    whole(len, io::ErrorKind::UnexpectedEof, |done| {
        // SAFETY: pointer/len describe the unfilled tail of buf, which
        // this call borrows mutably.
        unsafe { libc::pread(fd, ptr.add(done).cast(), len - done, (off + done as u64) as libc::off_t) }
    })
}

/// Runs `step(done)`, a read or write of the bytes from `done` on, until
/// `len` bytes are done; a step that does nothing ends it with `nothing`.
fn whole(len: usize, nothing: io::ErrorKind, mut step: impl FnMut(usize) -> isize) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        match step(done) {
            0 => return Err(io::Error::new(nothing, format!("0 bytes at byte {done} of {len}"))),
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// The module's debugfs `reap` file (in `counter_dir`), kept open: each
/// [`Reaper::reap`] ends at once every hold nobody reads, the work the
/// reaper's kworker does a second after a file's last splice. Open once,
/// a reap costs the reaper's walk and one `write()` (the bench times it),
/// not a path walk and an open of a debugfs file.
pub struct Reaper(Fd);

impl Reaper {
    pub fn open(counter_dir: &str) -> io::Result<Reaper> {
        open(&format!("{counter_dir}/reap"), libc::O_WRONLY, 0).map(Reaper)
    }

    pub fn reap(&self) -> io::Result<()> {
        // SAFETY: a write of one byte from a live buffer to our descriptor.
        match unsafe { libc::write(self.0.raw(), b"1".as_ptr().cast(), 1) } {
            1 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

/// Both ends of a pipe.
pub struct Pipe {
    pub r: Fd,
    pub w: Fd,
}

/// `pipe2(2)` with `O_CLOEXEC`.
pub fn pipe() -> io::Result<Pipe> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid int[2].
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Pipe { r: Fd(fds[0]), w: Fd(fds[1]) })
}

/// `splice(2)`; an offset of None uses (and moves) that descriptor's
/// position, as for a pipe.
pub fn splice(
    fd_in: i32,
    off_in: Option<&mut i64>,
    fd_out: i32,
    off_out: Option<&mut i64>,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let pin = off_in.map_or(std::ptr::null_mut(), |p| p as *mut i64);
    let pout = off_out.map_or(std::ptr::null_mut(), |p| p as *mut i64);
    // SAFETY: the offset pointers are null or point at i64s the caller
    // lends us; glibc passes the flags through unchanged.
    let n = unsafe { libc::splice(fd_in, pin, fd_out, pout, len, flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Frees the skbs every CPU was asked to free later. A TCP receiver on
/// another CPU than the one that allocated an skb hands it back to that
/// CPU's defer list (`skb_attempt_defer_free`), freed at that CPU's next
/// network softirq; until then the skb's page fragments (a spliced file's
/// folios) keep their references, on an idle CPU for good. A loopback
/// datagram sent from each CPU raises that softirq there (`net_rx_action`
/// flushes the list first).
pub fn flush_deferred_skb_frees() -> io::Result<()> {
    // SAFETY: sysconf has no memory effects.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
    for cpu in 0..cpus {
        std::thread::spawn(move || -> io::Result<()> {
            if pin_thread(cpu).is_err() {
                return Ok(()); // offline: nothing deferred to it
            }
            let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
            s.send_to(b"f", s.local_addr()?)?;
            s.recv(&mut [0u8; 1]).map(|_| ())
        })
        .join()
        .map_err(|_| io::Error::other(format!("the thread on CPU {cpu} panicked")))?
        .map_err(|e| io::Error::new(e.kind(), format!("a loopback datagram from CPU {cpu}: {e}")))?;
    }
    Ok(())
}

/// Pins the calling thread to `cpu`.
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity (of this thread) only read and write it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
