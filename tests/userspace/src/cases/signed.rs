//! Signed reads as a server builds them with zero copy (a Samba fork does
//! this for SMB reads): splice file -> pipe, `tee()` the pipe into a second
//! pipe that is spliced into an AF_ALG `hmac(sha256)` socket, send the MAC,
//! then splice the first pipe into the TCP socket. A write that lands
//! between the hashing and the receiver's read makes the MAC disagree with
//! the bytes on the wire, unless the spliced data is a snapshot.

use super::e2e::version_page;
use super::socket_sink::{recv_exact, tcp_pair_rcvbuf};
use super::Ctx;
use crate::uring::{self, Sqe};
use stable_splice_uapi::io_uring::IORING_OP_TEE;
use crate::util::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AF_ALG: i32 = 38;
const SOL_ALG: i32 = 279;
const ALG_SET_KEY: i32 = 1;
const KEY: &[u8] = b"stable-splice signing key 0123456789";
const MAC: usize = 32;
/// One READ response: what the server hashes and sends in one go.
const CHUNK: usize = 64 << 10;
/// Responses queued in the receiver before it reads them.
const BATCH: usize = 16;
const FILE: usize = 4 << 20;

/// An `hmac(sha256)` operation socket of AF_ALG.
fn hmac_socket() -> TResult<Fd> {
    // SAFETY: socket/bind/setsockopt/accept on descriptors we own, with a
    // zeroed sockaddr_alg whose type and name are NUL-terminated.
    unsafe {
        let t = libc::socket(AF_ALG, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if t < 0 {
            fail!("socket(AF_ALG): {} (the kernel needs CONFIG_CRYPTO_USER_API_HASH)", ename(errno()));
        }
        let t = Fd(t);
        let mut a: libc::sockaddr_alg = std::mem::zeroed();
        a.salg_family = AF_ALG as u16;
        a.salg_type[..4].copy_from_slice(b"hash");
        a.salg_name[..12].copy_from_slice(b"hmac(sha256)");
        let r = libc::bind(t.raw(), (&a as *const libc::sockaddr_alg).cast(), std::mem::size_of::<libc::sockaddr_alg>() as u32);
        ensure!(r == 0, "bind AF_ALG hmac(sha256): {} (CONFIG_CRYPTO_HMAC, CONFIG_CRYPTO_SHA256)", ename(errno()));
        let r = libc::setsockopt(t.raw(), SOL_ALG, ALG_SET_KEY, KEY.as_ptr().cast(), KEY.len() as u32);
        ensure!(r == 0, "ALG_SET_KEY: {}", ename(errno()));
        let op = libc::accept4(t.raw(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC);
        ensure!(op >= 0, "accept AF_ALG: {}", ename(errno()));
        Ok(Fd(op))
    }
}

/// Reads the MAC of what was sent to `op` since the last one.
fn read_mac(op: &Fd) -> TResult<[u8; MAC]> {
    let mut mac = [0u8; MAC];
    // SAFETY: reading MAC bytes into our array.
    let r = unsafe { libc::read(op.raw(), mac.as_mut_ptr().cast(), MAC) };
    ensure!(r == MAC as isize, "read of the MAC returned {r}: {}", ename(errno()));
    Ok(mac)
}

/// The receiver's MAC of `data`: written (copied) to its own AF_ALG socket.
fn mac_of(op: &Fd, data: &[u8]) -> TResult<[u8; MAC]> {
    write_all(op.raw(), data)?;
    read_mac(op)
}

/// How the server moves one chunk: file -> p1, tee p1 -> p2, p2 -> AF_ALG.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Syscalls,
    IoUring,
}

struct Server {
    p1: Pipe,
    p2: Pipe,
    alg: Fd,
    ring: Option<uring::Uring>,
    flags: u32,
}

impl Server {
    fn new(via: Via, flags: u32) -> TResult<Self> {
        let (p1, p2) = (pipe()?, pipe()?);
        for p in [&p1, &p2] {
            // SAFETY: sizing our own pipes.
            let r = unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, (2 * CHUNK) as i32) };
            ensure!(r >= CHUNK as i32, "F_SETPIPE_SZ: {}", ename(errno()));
        }
        let ring = if via == Via::IoUring { Some(uring::setup_or_skip(8)?) } else { None };
        Ok(Self { p1, p2, alg: hmac_socket()?, ring, flags })
    }

    /// Splices `CHUNK` bytes at `off` into p1 and a tee of them into the
    /// MAC; returns the MAC. p1 keeps the bytes for the socket.
    fn hash_chunk(&mut self, file: i32, off: usize) -> TResult<[u8; MAC]> {
        let (p1w, p1r, p2w, p2r, alg) = (self.p1.w.raw(), self.p1.r.raw(), self.p2.w.raw(), self.p2.r.raw(), self.alg.raw());
        match &mut self.ring {
            None => {
                splice_exact(file, off, p1w, CHUNK, self.flags)?;
                let t = tee_raw(p1r, p2w, CHUNK, 0);
                ensure!(t == Ok(CHUNK), "tee returned {t:?}");
                let mut left = CHUNK;
                while left > 0 {
                    // SAFETY: pipe to socket, no offsets.
                    let r = unsafe { libc::splice(p2r, std::ptr::null_mut(), alg, std::ptr::null_mut(), left, 0) };
                    ensure!(r > 0, "splice to AF_ALG: {}", if r == 0 { "0".into() } else { ename(errno()) });
                    left -= r as usize;
                }
            }
            Some(ring) => {
                // Linked as a server submits them: splice with the flag, tee,
                // splice into the hash.
                let sqes = [
                    Sqe {
                        opcode: uring::IORING_OP_SPLICE,
                        flags: uring::IOSQE_IO_LINK,
                        fd: p1w,
                        off: u64::MAX,
                        addr: off as u64,
                        len: CHUNK as u32,
                        rw_flags: self.flags,
                        splice_fd_in: file,
                        user_data: 1,
                        ..Default::default()
                    },
                    Sqe {
                        opcode: IORING_OP_TEE,
                        flags: uring::IOSQE_IO_LINK,
                        fd: p2w,
                        len: CHUNK as u32,
                        splice_fd_in: p1r,
                        user_data: 2,
                        ..Default::default()
                    },
                    Sqe {
                        opcode: uring::IORING_OP_SPLICE,
                        fd: alg,
                        off: u64::MAX,
                        addr: u64::MAX,
                        len: CHUNK as u32,
                        splice_fd_in: p2r,
                        user_data: 3,
                        ..Default::default()
                    },
                ];
                ring.submit(&sqes)?;
                let mut done = ring.wait(3)?;
                done.sort();
                ensure!(
                    done.iter().all(|&(_, r)| r == CHUNK as i32),
                    "io_uring splice/tee/splice completed with {done:?}, expected {CHUNK} each"
                );
            }
        }
        read_mac(&self.alg)
    }
}

/// Serves the file as signed chunks over TCP while a writer rewrites it;
/// the receiver reads each batch after the server has queued it and checks
/// every chunk against its MAC.
fn signed_reads(ctx: &Ctx, via: Via, flags: u32) -> TResult {
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    for i in 0..FILE / PAGE {
        pwrite_all(fd, &version_page(0, i), i * PAGE)?;
    }
    settle_page_cache(fd, FILE)?;
    let mut server = Server::new(via, flags)?;
    let (tx, rx) = tcp_pair_rcvbuf(Some((2 * BATCH * (CHUNK + 4096)) as i32))?;
    let check = hmac_socket()?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut gen = 1u32;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..FILE / PAGE {
                    let p = version_page(gen, i);
                    // SAFETY: our buffer, our descriptor.
                    unsafe { libc::pwrite(fd, p.as_ptr().cast(), PAGE, (i * PAGE) as i64) };
                }
                gen = (gen + 1) & 0xffff;
            }
        })
    };
    let (mut chunks, mut bad, mut first_bad) = (0usize, 0usize, String::new());
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(3, 10));
    let result = (|| {
        let mut off = 0;
        while chunks < 4 * BATCH || Instant::now() < deadline {
            for _ in 0..BATCH {
                let mac = server.hash_chunk(fd, off)?;
                let mut hdr = (off as u64).to_le_bytes().to_vec();
                hdr.extend_from_slice(&mac);
                write_all(tx.raw(), &hdr)?;
                let mut left = CHUNK;
                while left > 0 {
                    // SAFETY: pipe to socket, no offsets.
                    let r = unsafe {
                        libc::splice(server.p1.r.raw(), std::ptr::null_mut(), tx.raw(), std::ptr::null_mut(), left, 0)
                    };
                    ensure!(r > 0, "splice to TCP: {}", if r == 0 { "0".into() } else { ename(errno()) });
                    left -= r as usize;
                }
                off = (off + CHUNK) % FILE;
            }
            for _ in 0..BATCH {
                let hdr = recv_exact(&rx, 8 + MAC)?;
                let data = recv_exact(&rx, CHUNK)?;
                if mac_of(&check, &data)?[..] != hdr[8..] {
                    bad += 1;
                    if first_bad.is_empty() {
                        first_bad = format!("chunk {chunks} at offset {}", u64::from_le_bytes(hdr[..8].try_into().unwrap_or_default()));
                    }
                }
                chunks += 1;
            }
            // A control has done its job once the hazard showed.
            if chunks >= 4000 || (flags & SPLICE_F_STABLE == 0 && bad > 0) {
                break;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    result?;
    ctx.note(format!("{chunks} signed chunks of {CHUNK} bytes, {bad} whose MAC does not match the bytes received"));
    if flags & SPLICE_F_STABLE != 0 {
        ensure!(bad == 0, "{bad} chunks arrived with a MAC that does not match them (first: {first_bad})");
    } else if bad == 0 {
        skip!("with plain splice every MAC matched this time (the hazard did not show)");
    }
    Ok(())
}

pub fn signed_reads_af_alg(ctx: &Ctx) -> TResult {
    signed_reads(ctx, Via::Syscalls, stable())
}
pub fn plain_signed_reads_af_alg(ctx: &Ctx) -> TResult {
    signed_reads(ctx, Via::Syscalls, 0)
}
pub fn signed_reads_io_uring(ctx: &Ctx) -> TResult {
    signed_reads(ctx, Via::IoUring, stable())
}
pub fn plain_signed_reads_io_uring(ctx: &Ctx) -> TResult {
    signed_reads(ctx, Via::IoUring, 0)
}
