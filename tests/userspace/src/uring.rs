//! Minimal io_uring on raw syscalls: one ring, submit one SQE, wait for its
//! CQE. Enough to issue IORING_OP_WRITE against a held folio.

use crate::util::{ename, errno, Fd, TResult};
use std::sync::atomic::{AtomicU32, Ordering};

pub use stable_splice_uapi::io_uring::{Sqe, IORING_OP_READ, IORING_OP_SPLICE, IORING_OP_WRITE, IOSQE_IO_LINK};

/// An `IORING_OP_SPLICE` of `len` bytes from `file` (at its position) into
/// the pipe's write end `pipe_w`.
pub fn splice_from_file(file: i32, pipe_w: i32, len: usize, flags: u32, user_data: u64) -> Sqe {
    Sqe {
        opcode: IORING_OP_SPLICE,
        fd: pipe_w,
        off: u64::MAX,
        addr: 0,
        len: len as u32,
        rw_flags: flags,
        splice_fd_in: file,
        user_data,
        ..Default::default()
    }
}
use stable_splice_uapi::io_uring::{Cqe, Params, IORING_ENTER_GETEVENTS, IORING_OFF_CQ_RING, IORING_OFF_SQES, IORING_OFF_SQ_RING};

struct RingMap {
    ptr: *mut u8,
    len: usize,
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn map_ring(fd: i32, len: usize, off: i64) -> Result<RingMap, i32> {
    // SAFETY: mapping the ring region the kernel advertised for this fd.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno());
    }
    Ok(RingMap { ptr: p.cast(), len })
}

pub struct Uring {
    // Field order: unmap before closing the ring fd.
    sq: RingMap,
    cq: RingMap,
    sqes: RingMap,
    p: Params,
    fd: Fd,
}

/// Why io_uring could not be set up: Err(errno) so callers can SKIP on
/// ENOSYS/EPERM (io_uring disabled) and fail on anything else.
/// A ring, or a skip where the kernel has no io_uring for us.
pub fn setup_or_skip(entries: u32) -> TResult<Uring> {
    match setup(entries) {
        Ok(r) => Ok(r),
        Err(e @ (libc::ENOSYS | libc::EPERM)) => skip!("io_uring unavailable: io_uring_setup: {}", ename(e)),
        Err(e) => fail!("io_uring_setup: {}", ename(e)),
    }
}

pub fn setup(entries: u32) -> Result<Uring, i32> {
    let mut p = Params::default();
    // SAFETY: io_uring_setup writes into p, a valid io_uring_params.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, &mut p as *mut Params) };
    if fd < 0 {
        return Err(errno());
    }
    let fd = Fd(fd as i32);
    let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
    let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
    let sqes_len = p.sq_entries as usize * std::mem::size_of::<Sqe>();
    let sq = map_ring(fd.raw(), sq_len, IORING_OFF_SQ_RING)?;
    let cq = map_ring(fd.raw(), cq_len, IORING_OFF_CQ_RING)?;
    let sqes = map_ring(fd.raw(), sqes_len, IORING_OFF_SQES)?;
    Ok(Uring { sq, cq, sqes, p, fd })
}

impl Uring {
    fn sq_u32(&self, off: u32) -> &AtomicU32 {
        // SAFETY: off is a kernel-provided offset of an aligned u32 inside
        // the live SQ ring mapping, shared with the kernel (hence atomic).
        unsafe { &*(self.sq.ptr.add(off as usize) as *const AtomicU32) }
    }
    fn cq_u32(&self, off: u32) -> &AtomicU32 {
        // SAFETY: as sq_u32, for the CQ ring mapping.
        unsafe { &*(self.cq.ptr.add(off as usize) as *const AtomicU32) }
    }

    /// Submit one SQE and wait for its completion; returns cqe.res.
    pub fn submit_and_wait(&mut self, sqe: Sqe) -> TResult<i32> {
        let mask = self.sq_u32(self.p.sq_off.ring_mask).load(Ordering::Relaxed);
        let tail = self.sq_u32(self.p.sq_off.tail).load(Ordering::Relaxed);
        let idx = tail & mask;
        // SAFETY: idx <= mask < sq_entries, so both writes stay inside the
        // SQE array and the index array; the kernel does not read them until
        // the tail store below publishes the entry.
        unsafe {
            (self.sqes.ptr as *mut Sqe).add(idx as usize).write(sqe);
            (self.sq.ptr.add(self.p.sq_off.array as usize) as *mut u32).add(idx as usize).write(idx);
        }
        self.sq_u32(self.p.sq_off.tail).store(tail.wrapping_add(1), Ordering::Release);
        loop {
            // SAFETY: plain syscall on our ring fd; no sigset passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    self.fd.raw(),
                    1u32,
                    1u32,
                    IORING_ENTER_GETEVENTS,
                    std::ptr::null::<u8>(),
                    0usize,
                )
            };
            if r >= 0 {
                break;
            }
            let e = errno();
            if e != libc::EINTR {
                fail!("io_uring_enter: {}", ename(e));
            }
        }
        let head = self.cq_u32(self.p.cq_off.head).load(Ordering::Relaxed);
        let ctail = self.cq_u32(self.p.cq_off.tail).load(Ordering::Acquire);
        ensure!(head != ctail, "io_uring_enter returned without a completion");
        let cmask = self.cq_u32(self.p.cq_off.ring_mask).load(Ordering::Relaxed);
        // SAFETY: (head & cmask) < cq_entries indexes the live CQE array; the
        // Acquire load of the tail made the entry visible.
        let res = unsafe {
            let cqes = self.cq.ptr.add(self.p.cq_off.cqes as usize) as *const Cqe;
            (*cqes.add((head & cmask) as usize)).res
        };
        self.cq_u32(self.p.cq_off.head).store(head.wrapping_add(1), Ordering::Release);
        Ok(res)
    }

    /// Queues `sqes` (in order) and submits them without waiting.
    pub fn submit(&mut self, sqes: &[Sqe]) -> TResult {
        let mask = self.sq_u32(self.p.sq_off.ring_mask).load(Ordering::Relaxed);
        let mut tail = self.sq_u32(self.p.sq_off.tail).load(Ordering::Relaxed);
        for sqe in sqes {
            let idx = tail & mask;
            // SAFETY: as in submit_and_wait; the ring has room for `sqes`
            // (callers submit fewer than the ring's entries).
            unsafe {
                (self.sqes.ptr as *mut Sqe).add(idx as usize).write(*sqe);
                (self.sq.ptr.add(self.p.sq_off.array as usize) as *mut u32).add(idx as usize).write(idx);
            }
            tail = tail.wrapping_add(1);
        }
        self.sq_u32(self.p.sq_off.tail).store(tail, Ordering::Release);
        // SAFETY: plain syscall on our ring fd; no sigset passed.
        let r = unsafe {
            libc::syscall(libc::SYS_io_uring_enter, self.fd.raw(), sqes.len() as u32, 0u32, 0u32, std::ptr::null::<u8>(), 0usize)
        };
        ensure!(r == sqes.len() as i64, "io_uring_enter submitted {r} of {}: {}", sqes.len(), ename(errno()));
        Ok(())
    }

    /// Waits for `n` completions; returns (user_data, res) of each.
    pub fn wait(&mut self, n: usize) -> TResult<Vec<(u64, i32)>> {
        let mut out = Vec::new();
        while out.len() < n {
            // SAFETY: plain syscall on our ring fd; no sigset passed.
            let r = unsafe {
                libc::syscall(libc::SYS_io_uring_enter, self.fd.raw(), 0u32, 1u32, IORING_ENTER_GETEVENTS, std::ptr::null::<u8>(), 0usize)
            };
            if r < 0 && errno() != libc::EINTR {
                fail!("io_uring_enter: {}", ename(errno()));
            }
            let cmask = self.cq_u32(self.p.cq_off.ring_mask).load(Ordering::Relaxed);
            loop {
                let head = self.cq_u32(self.p.cq_off.head).load(Ordering::Relaxed);
                let ctail = self.cq_u32(self.p.cq_off.tail).load(Ordering::Acquire);
                if head == ctail {
                    break;
                }
                // SAFETY: as in submit_and_wait.
                let (ud, res) = unsafe {
                    let cqe = &*(self.cq.ptr.add(self.p.cq_off.cqes as usize) as *const Cqe).add((head & cmask) as usize);
                    (cqe.user_data, cqe.res)
                };
                out.push((ud, res));
                self.cq_u32(self.p.cq_off.head).store(head.wrapping_add(1), Ordering::Release);
            }
        }
        Ok(out)
    }
}
