//! IORING_OP_SPLICE with SPLICE_F_STABLE: Samba's asynchronous read path.
//! The request is prepared in the submitter and run in an io-wq worker.

use super::Ctx;
use crate::uring;
use crate::util::*;

const LEN: usize = 4 * PAGE;

/// Submits a file -> pipe IORING_OP_SPLICE of `len` bytes from offset 0;
/// returns the CQE result (bytes or -errno).
fn uring_splice(file: i32, pipe_w: i32, len: usize, flags: u32) -> TResult<i32> {
    let mut ring = uring::setup_or_skip(4)?;
    let sqe = uring::Sqe {
        opcode: uring::IORING_OP_SPLICE,
        fd: pipe_w,
        off: u64::MAX, // off_out = -1: the pipe has no offset
        addr: 0,       // splice_off_in
        len: len as u32,
        rw_flags: flags, // splice_flags
        splice_fd_in: file,
        user_data: 0x5711ce,
        ..Default::default()
    };
    ring.submit_and_wait(sqe)
}

/// Stable IORING_OP_SPLICE, then pwrite over the range: the pipe keeps A.
pub fn io_uring_splice_stable(ctx: &Ctx) -> TResult {
    let f = tmpfile(&ctx.dir)?;
    let a = pattern(0x21, 0, LEN);
    let b = pattern(0x65, 0, LEN);
    pwrite_all(f.fd.raw(), &a, 0)?;
    let p = pipe()?;
    let calls_before = counter("stable_calls");
    let res = uring_splice(f.fd.raw(), p.w.raw(), LEN, stable())?;
    ensure!(res == LEN as i32, "IORING_OP_SPLICE with SPLICE_F_STABLE completed with {res}");
    if let (Some(before), Some(after)) = (calls_before, counter("stable_calls")) {
        ensure!(after > before, "stable_calls did not count the io_uring splice");
    }
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = read_pipe(&p.r, LEN)?;
    expect_bytes("pipe", &got, &a, Some(("file's new content (the change showed through)", &b)))
}

/// Without the module io_uring rejects the flag like the syscall does.
pub fn io_uring_splice_einval_without_module(ctx: &Ctx) -> TResult {
    let f = tmpfile(&ctx.dir)?;
    pwrite_all(f.fd.raw(), &pattern(0x21, 0, LEN), 0)?;
    let p = pipe()?;
    let res = uring_splice(f.fd.raw(), p.w.raw(), LEN, 0x10)?;
    ensure!(res == -libc::EINVAL, "IORING_OP_SPLICE with 0x10 completed with {res}, expected -EINVAL");
    let res = uring_splice(f.fd.raw(), p.w.raw(), LEN, 0)?;
    ensure!(res == LEN as i32, "plain IORING_OP_SPLICE completed with {res}");
    Ok(())
}

/// Unknown bits stay rejected with the module loaded too.
pub fn io_uring_splice_unknown_flag(ctx: &Ctx) -> TResult {
    let f = tmpfile(&ctx.dir)?;
    pwrite_all(f.fd.raw(), &pattern(0x21, 0, LEN), 0)?;
    let p = pipe()?;
    for flags in [0x20u32, 0x10 | 0x20] {
        let res = uring_splice(f.fd.raw(), p.w.raw(), LEN, flags)?;
        ensure!(res == -libc::EINVAL, "IORING_OP_SPLICE with {flags:#x} completed with {res}, expected -EINVAL");
    }
    Ok(())
}

/// A pipe source is refused through io_uring too (buffers moved from a pipe
/// may be page-cache references from a plain splice).
pub fn io_uring_splice_pipe_source_einval(_ctx: &Ctx) -> TResult {
    let p1 = pipe()?;
    let p2 = pipe()?;
    write_all(p1.w.raw(), &pattern(0x21, 0, PAGE))?;
    let mut ring = uring::setup_or_skip(4)?;
    let sqe = uring::Sqe {
        opcode: uring::IORING_OP_SPLICE,
        fd: p2.w.raw(),
        off: u64::MAX,
        addr: u64::MAX, // splice_off_in = -1: a pipe has no offset
        len: PAGE as u32,
        rw_flags: stable(),
        splice_fd_in: p1.r.raw(),
        user_data: 0x5711ce,
        ..Default::default()
    };
    let res = ring.submit_and_wait(sqe)?;
    if stable_override().is_none() {
        ensure!(res == -libc::EINVAL, "IORING_OP_SPLICE pipe -> pipe with the flag completed with {res}, expected -EINVAL");
    }
    Ok(())
}
