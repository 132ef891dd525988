//! Samba's read pipeline on io_uring, as smbd would run it for large SMB2
//! reads: per request a file -> pipe `IORING_OP_SPLICE` linked to a pipe ->
//! socket one (with and without `SPLICE_F_STABLE`), against
//! `IORING_OP_READ_FIXED` into a registered buffer linked to
//! `IORING_OP_SEND_ZC` from it (what a server does when it cannot trust
//! splice: one copy), and against `IORING_OP_READ` + `IORING_OP_SEND` (two
//! copies). Several requests in flight, each with its own pipe or buffer.
//!
//! A raw-syscall ring of the bench's own (setup, registered buffers,
//! batched submission, completions) on the ABI of `tools/uapi`.

use crate::sys::{last_err, Fd, Res};
use std::sync::atomic::{AtomicU32, Ordering};

use stable_splice_uapi::io_uring::*;

struct Map(*mut u8, usize);

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: a mapping of ours, unmapped once.
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

fn map(fd: i32, len: usize, off: i64) -> Res<Map> {
    // SAFETY: maps a region the kernel advertised for this ring.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_POPULATE, fd, off)
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap io_uring ring: {}", last_err()));
    }
    Ok(Map(p.cast(), len))
}

struct Ring {
    // Unmapped before the ring is closed.
    sq: Map,
    cq: Map,
    sqes: Map,
    p: Params,
    fd: Fd,
    /// SQEs queued since the last enter.
    queued: u32,
}

impl Ring {
    fn new(entries: u32) -> Res<Ring> {
        let mut p = Params::default();
        // SAFETY: io_uring_setup fills `p`.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, &mut p as *mut Params) };
        if fd < 0 {
            return Err(format!("io_uring_setup: {}", last_err()));
        }
        let fd = Fd(fd as i32);
        let sq = map(fd.raw(), p.sq_off.array as usize + p.sq_entries as usize * 4, IORING_OFF_SQ_RING)?;
        let cq = map(fd.raw(), p.cq_off.cqes as usize + p.cq_entries as usize * size_of::<Cqe>(), IORING_OFF_CQ_RING)?;
        let sqes = map(fd.raw(), p.sq_entries as usize * size_of::<Sqe>(), IORING_OFF_SQES)?;
        Ok(Ring { sq, cq, sqes, p, fd, queued: 0 })
    }

    fn word(m: &Map, off: u32) -> &AtomicU32 {
        // SAFETY: a kernel-given offset of an aligned u32 in a live ring
        // mapping, shared with the kernel.
        unsafe { &*(m.0.add(off as usize) as *const AtomicU32) }
    }

    /// Registers `bufs` as fixed buffers 0.., for READ_FIXED and SEND_ZC.
    fn register_buffers(&self, bufs: &mut [Vec<u8>]) -> Res {
        let iov: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
        // SAFETY: `iov` describes buffers that outlive the ring (the caller's).
        let r = unsafe {
            libc::syscall(libc::SYS_io_uring_register, self.fd.raw(), IORING_REGISTER_BUFFERS, iov.as_ptr(), iov.len() as u32)
        };
        if r < 0 {
            return Err(format!("IORING_REGISTER_BUFFERS: {}", last_err()));
        }
        Ok(())
    }

    /// Queues `sqe`; the ring has room (callers keep fewer in flight).
    fn queue(&mut self, sqe: Sqe) {
        let mask = Self::word(&self.sq, self.p.sq_off.ring_mask).load(Ordering::Relaxed);
        let tail = Self::word(&self.sq, self.p.sq_off.tail).load(Ordering::Relaxed);
        let i = tail & mask;
        // SAFETY: `i` <= mask < sq_entries indexes the SQE and index arrays;
        // the kernel reads them only after the tail store publishes them.
        unsafe {
            (self.sqes.0 as *mut Sqe).add(i as usize).write(sqe);
            (self.sq.0.add(self.p.sq_off.array as usize) as *mut u32).add(i as usize).write(i);
        }
        Self::word(&self.sq, self.p.sq_off.tail).store(tail.wrapping_add(1), Ordering::Release);
        self.queued += 1;
    }

    /// Submits what is queued and waits for at least one completion; then
    /// takes every completion there is: (user_data, res, flags).
    fn enter(&mut self, out: &mut Vec<(u64, i32, u32)>) -> Res {
        loop {
            // SAFETY: a plain syscall on our ring; no signal mask.
            let r = unsafe {
                libc::syscall(libc::SYS_io_uring_enter, self.fd.raw(), self.queued, 1u32, IORING_ENTER_GETEVENTS, 0usize, 0usize)
            };
            if r >= 0 {
                self.queued -= r as u32;
                break;
            }
            let e = last_err();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(format!("io_uring_enter: {e}"));
            }
        }
        let mask = Self::word(&self.cq, self.p.cq_off.ring_mask).load(Ordering::Relaxed);
        loop {
            let head = Self::word(&self.cq, self.p.cq_off.head).load(Ordering::Relaxed);
            if head == Self::word(&self.cq, self.p.cq_off.tail).load(Ordering::Acquire) {
                return Ok(());
            }
            // SAFETY: (head & mask) indexes the live CQE array; the acquire
            // load of the tail made the entry visible.
            let c = unsafe { &*(self.cq.0.add(self.p.cq_off.cqes as usize) as *const Cqe).add((head & mask) as usize) };
            out.push((c.user_data, c.res, c.flags));
            Self::word(&self.cq, self.p.cq_off.head).store(head.wrapping_add(1), Ordering::Release);
        }
    }
}

/// How the pipeline moves a request's bytes from the file to the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// file -> pipe with SPLICE_F_STABLE, linked to pipe -> socket.
    StableSplice,
    /// The same without the flag (what the file's writers can change).
    PlainSplice,
    /// READ_FIXED into a registered buffer, linked to SEND_ZC from it.
    ReadFixedSendZc,
    /// READ into a buffer, linked to SEND from it.
    ReadSend,
}

pub const PIPELINES: [Pipeline; 4] = [Pipeline::StableSplice, Pipeline::PlainSplice, Pipeline::ReadFixedSendZc, Pipeline::ReadSend];

impl Pipeline {
    pub fn label(self) -> &'static str {
        match self {
            Pipeline::StableSplice => "splice+splice, stable",
            Pipeline::PlainSplice => "splice+splice, plain",
            Pipeline::ReadFixedSendZc => "read_fixed+send_zc",
            Pipeline::ReadSend => "read+send",
        }
    }
    /// The method's name in `pipeline.tsv`.
    pub fn key(self) -> &'static str {
        match self {
            Pipeline::StableSplice => "stable_splice",
            Pipeline::PlainSplice => "plain_splice",
            Pipeline::ReadFixedSendZc => "read_fixed_send_zc",
            Pipeline::ReadSend => "read_send",
        }
    }
    pub fn copies(self) -> bool {
        matches!(self, Pipeline::ReadFixedSendZc | Pipeline::ReadSend)
    }
}

/// Sends carry MSG_WAITALL: io_uring then retries a partial send itself,
/// as a server needs a whole response on the wire.
///
/// Requests of `size` bytes from `file` (`file_bytes` long, walked
/// through) to the socket `sock`, `depth` in flight, until `secs` passed;
/// returns the bytes sent. What goes on the socket is the receiver's.
pub fn run(kind: Pipeline, file: i32, file_bytes: u64, sock: i32, size: usize, depth: usize, secs: f64) -> Res<u64> {
    let mut ring = Ring::new((depth * 4).next_power_of_two() as u32)?;
    let pipes = match kind {
        Pipeline::StableSplice | Pipeline::PlainSplice => (0..depth).map(|_| crate::sys::pipe(size)).collect::<Res<Vec<_>>>()?,
        _ => Vec::new(),
    };
    let mut bufs: Vec<Vec<u8>> = match kind {
        Pipeline::ReadFixedSendZc | Pipeline::ReadSend => (0..depth).map(|_| vec![0u8; size]).collect(),
        _ => Vec::new(),
    };
    if kind == Pipeline::ReadFixedSendZc {
        ring.register_buffers(&mut bufs)?;
    }
    let mut next_off = 0u64;
    // Per slot: the second op's completion and (SEND_ZC) its buffer
    // notification still to come.
    let mut pending = vec![(false, false); depth];
    let issue = |ring: &mut Ring, slot: usize, off: u64, bufs: &mut [Vec<u8>]| {
        let ud = |stage: u64| (slot as u64) << 8 | stage;
        let (first, second) = match kind {
            Pipeline::StableSplice | Pipeline::PlainSplice => {
                let p = &pipes[slot];
                let flags = if kind == Pipeline::StableSplice { crate::sys::SPLICE_F_STABLE } else { 0 };
                (
                    Sqe { opcode: IORING_OP_SPLICE, fd: p.w.raw(), off: u64::MAX, addr: off, len: size as u32, rw_flags: flags, splice_fd_in: file, ..Default::default() },
                    Sqe { opcode: IORING_OP_SPLICE, fd: sock, off: u64::MAX, addr: u64::MAX, len: size as u32, splice_fd_in: p.r.raw(), ..Default::default() },
                )
            }
            Pipeline::ReadFixedSendZc => {
                let addr = bufs[slot].as_mut_ptr() as u64;
                (
                    Sqe { opcode: IORING_OP_READ_FIXED, fd: file, off, addr, len: size as u32, buf_index: slot as u16, ..Default::default() },
                    Sqe {
                        opcode: IORING_OP_SEND_ZC,
                        fd: sock,
                        addr,
                        len: size as u32,
                        rw_flags: libc::MSG_WAITALL as u32,
                        ioprio: IORING_RECVSEND_FIXED_BUF,
                        buf_index: slot as u16,
                        ..Default::default()
                    },
                )
            }
            Pipeline::ReadSend => {
                let addr = bufs[slot].as_mut_ptr() as u64;
                (
                    Sqe { opcode: IORING_OP_READ, fd: file, off, addr, len: size as u32, ..Default::default() },
                    Sqe { opcode: IORING_OP_SEND, fd: sock, addr, len: size as u32, rw_flags: libc::MSG_WAITALL as u32, ..Default::default() },
                )
            }
        };
        ring.queue(Sqe { flags: IOSQE_IO_LINK, user_data: ud(1), ..first });
        ring.queue(Sqe { user_data: ud(2), ..second });
    };
    for slot in 0..depth {
        issue(&mut ring, slot, next_off, &mut bufs);
        next_off = (next_off + size as u64) % file_bytes;
        pending[slot] = (true, false);
    }
    let t0 = std::time::Instant::now();
    let (mut sent, mut done) = (0u64, false);
    let mut cqes = Vec::new();
    while pending.iter().any(|&(a, b)| a || b) {
        cqes.clear();
        ring.enter(&mut cqes)?;
        for &(ud, res, flags) in &cqes {
            let (slot, stage) = ((ud >> 8) as usize, ud & 0xff);
            if flags & IORING_CQE_F_NOTIF != 0 {
                pending[slot].1 = false;
            } else if res < 0 {
                return Err(format!("{}: stage {stage}: {}", kind.label(), std::io::Error::from_raw_os_error(-res)));
            } else if res as usize != size {
                return Err(format!("{}: stage {stage}: {res} of {size} bytes", kind.label()));
            } else if stage == 2 {
                sent += size as u64;
                pending[slot] = (false, flags & IORING_CQE_F_MORE != 0);
            }
        }
        if !done && t0.elapsed().as_secs_f64() >= secs {
            done = true;
        }
        if !done {
            for slot in 0..depth {
                if pending[slot] == (false, false) {
                    issue(&mut ring, slot, next_off, &mut bufs);
                    next_off = (next_off + size as u64) % file_bytes;
                    pending[slot] = (true, false);
                }
            }
        }
    }
    Ok(sent)
}
