//! The README's Rust example of SPLICE_F_STABLE, built by `make check`
//! (`cargo build --examples`) and run in the VM on each file system:
//!
//!     splice_stable DIR
//!
//! Exit status 0: the pipe held the snapshot; 1: a later write showed
//! through; 2: setup failed or the flag is not supported.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

const SPLICE_F_STABLE: libc::c_uint = 0x10; // include/uapi/linux/stable_splice.h

/// Moves up to `len` bytes at `off` from `file` into the pipe `pipe_w` as a
/// snapshot: later writes to the file do not change what the pipe yields.
fn splice_stable(file: &std::fs::File, off: i64, pipe_w: RawFd, len: usize) -> std::io::Result<usize> {
    let mut off = off;
    // SAFETY: valid descriptors, `off` outlives the call.
    let n = unsafe {
        libc::splice(file.as_raw_fd(), &mut off, pipe_w, std::ptr::null_mut(), len, SPLICE_F_STABLE)
    };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp".into());
    let path = std::path::Path::new(&dir).join(format!("splice_stable_rs.{}", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).expect("create");
    std::fs::remove_file(&path).expect("unlink");
    file.write_all_at(&[b'A'; 4096], 0).expect("write A");

    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid int[2].
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: fresh descriptors from pipe(), owned from here on.
    let (mut rd, wr) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };

    match splice_stable(&file, 0, wr.as_raw_fd(), 4096) {
        Ok(4096) => {}
        Ok(n) => { eprintln!("short splice: {n}"); std::process::exit(2) }
        Err(e) => { eprintln!("splice with SPLICE_F_STABLE: {e} (is stable_splice loaded?)"); std::process::exit(2) }
    }
    // A write after splice() returned must not reach the pipe's reader.
    file.write_all_at(&[b'B'; 4096], 0).expect("write B");
    drop(wr);
    let mut got = Vec::new();
    rd.read_to_end(&mut got).expect("read pipe");
    if got == [b'A'; 4096] {
        println!("pipe holds the snapshot taken at splice()");
        std::io::stdout().flush().ok();
    } else {
        println!("pipe shows the later write: not stable");
        std::process::exit(1);
    }
}
