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
