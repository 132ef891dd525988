//! Samba's path: file -> pipe -> TCP socket. Splicing the pipe into a TCP
//! socket hands the socket references to the pipe's pages
//! (MSG_SPLICE_PAGES); over loopback the receiver copies them out only when
//! it reads. With plain splice those are page-cache pages, so a write after
//! both splices returned still reaches the receiver: the hazard a zero-copy
//! snapshot must also cover, beyond the pipe.

use super::Ctx;
use crate::util::*;

const LEN: usize = 4 * PAGE;

/// A connected loopback TCP pair: (sender, receiver).
pub(super) fn tcp_pair() -> TResult<(Fd, Fd)> {
    tcp_pair_rcvbuf(None)
}

/// Sets a receive buffer of `bytes` on a socket before it connects (past
/// rmem_max: the tests run as root), so that MBs can queue in a receiver
/// that does not read.
pub(super) fn force_rcvbuf(fd: i32, bytes: i32) -> TResult {
    // SAFETY: setsockopt with an int option value.
    let r = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&bytes as *const i32).cast(), 4)
    };
    ensure!(r == 0, "SO_RCVBUFFORCE: {}", ename(errno()));
    Ok(())
}

/// A connected loopback TCP pair whose receiver has `rcvbuf` bytes of
/// receive buffer if given.
pub(super) fn tcp_pair_rcvbuf(rcvbuf: Option<i32>) -> TResult<(Fd, Fd)> {
    // SAFETY: plain socket calls on descriptors we own; sockaddr_in is
    // zero-initialised and filled in before use.
    unsafe {
        let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        ensure!(l >= 0, "socket: {}", ename(errno()));
        let l = Fd(l);
        if let Some(bytes) = rcvbuf {
            force_rcvbuf(l.raw(), bytes)?; // the accepted receiver inherits it
        }
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as u16;
        a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
        ensure!(libc::bind(l.raw(), (&a as *const libc::sockaddr_in).cast(), sl) == 0, "bind: {}", ename(errno()));
        ensure!(libc::listen(l.raw(), 1) == 0, "listen: {}", ename(errno()));
        let mut len = sl;
        libc::getsockname(l.raw(), (&mut a as *mut libc::sockaddr_in).cast(), &mut len);
        let c = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        ensure!(c >= 0, "socket: {}", ename(errno()));
        let c = Fd(c);
        ensure!(libc::connect(c.raw(), (&a as *const libc::sockaddr_in).cast(), sl) == 0, "connect: {}", ename(errno()));
        let s = libc::accept4(l.raw(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC);
        ensure!(s >= 0, "accept: {}", ename(errno()));
        Ok((c, Fd(s)))
    }
}

pub(super) fn recv_exact(fd: &Fd, n: usize) -> TResult<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        // SAFETY: writing into the unfilled tail of `buf`.
        let r = unsafe { libc::recv(fd.raw(), buf[got..].as_mut_ptr().cast(), n - got, 0) };
        ensure!(r > 0, "recv: {}", if r == 0 { "EOF".into() } else { ename(errno()) });
        got += r as usize;
    }
    Ok(buf)
}

/// file -> pipe (flags) -> socket, then overwrite, then receive.
fn through_socket(ctx: &Ctx, flags: u32) -> TResult<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let f = tmpfile(&ctx.dir)?;
    let a = pattern(0x13, 0, LEN);
    let b = pattern(0x79, 0, LEN);
    pwrite_all(f.fd.raw(), &a, 0)?;
    let (tx, rx) = tcp_pair()?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flags)?;
    let n = splice_raw(p.r.raw(), None, tx.raw(), None, LEN, 0);
    ensure!(n == Ok(LEN), "splice pipe -> socket returned {n:?}");
    pwrite_all(f.fd.raw(), &b, 0)?;
    Ok((recv_exact(&rx, LEN)?, a, b))
}

/// Upstream: the receiver gets the later write (documents the hazard).
pub fn socket_sink_plain_shows_overwrite(ctx: &Ctx) -> TResult {
    let (got, a, b) = through_socket(ctx, 0)?;
    if got == a {
        skip!("this kernel copied into the socket: the hazard does not show here");
    }
    expect_bytes("received (plain splice)", &got, &b, Some(("the old content", &a)))
}

/// With the flag the receiver gets the snapshot.
pub fn socket_sink_snapshot(ctx: &Ctx) -> TResult {
    let (got, a, b) = through_socket(ctx, stable())?;
    expect_bytes("received", &got, &a, Some(("file's new content (the change showed through)", &b)))
}
