//! Data integrity under holds: a file exerciser (in the spirit of fsx)
//! keeps a model of the file and checks every read against it while stable
//! splices hold and release random ranges of the same file, into pipes,
//! tee copies and a TCP socket, between writes, stores through a mapping,
//! truncates, hole punching, zeroing, collapsing and inserting ranges,
//! copy_file_range and reflinks, O_DIRECT writes, fadvise(DONTNEED) and
//! sync_file_range. Each snapshot is checked against the model
//! as of its splice when it is drained; the file is checked against the
//! model all along. Breaks put copies into the page cache: a lost or stale
//! byte in the file shows here, as does a snapshot that changed.

use super::socket_sink::{recv_exact, tcp_pair};
use super::Ctx;
use crate::util::*;
use std::time::{Duration, Instant};

/// Largest file size the exerciser grows to.
const MAX: usize = 48 * PAGE;

/// xorshift64*: reproducible from the seed the case prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let b = self.next() as u8 | 1;
        (0..n).map(|i| b.wrapping_add((i / 97) as u8)).collect()
    }
}

/// Where a held snapshot went.
enum Sink {
    Pipe(Pipe),
    /// The pipe and its tee copy.
    Tee(Pipe, Pipe),
    /// Moved on to the socket (the receiver end is shared).
    Socket,
}

struct Snapshot {
    sink: Sink,
    want: Vec<u8>,
    at: usize,
}

struct State {
    f: TestFile,
    model: Vec<u8>,
    other: TestFile,
    other_model: Vec<u8>,
    held: Vec<Snapshot>,
    /// Snapshots in the socket, in order.
    in_socket: Vec<Vec<u8>>,
    tx: Fd,
    rx: Fd,
    log: Vec<String>,
    /// An O_DIRECT descriptor of the file (None where the file system has
    /// no O_DIRECT), and a page-aligned buffer for it.
    direct: Option<Fd>,
    buf: Map,
    /// Printed with every failure: STABLE_SPLICE_EXERCISER_SEED replays it.
    seed: u64,
}

impl State {
    fn fd(&self) -> i32 {
        self.f.fd.raw()
    }

    fn note(&mut self, s: String) {
        if self.log.len() == 40 {
            self.log.remove(0);
        }
        self.log.push(s);
    }

    fn check_range(&self, off: usize, len: usize, what: &str) -> TResult {
        let len = len.min(self.model.len().saturating_sub(off));
        let got = pread_vec(self.fd(), len, off)?;
        if got != self.model[off..off + len] {
            let at = got.iter().zip(&self.model[off..]).position(|(a, b)| a != b).unwrap_or(got.len());
            fail!(
                "file differs from the model at byte {} after {what} (read {len} at {off}; got {:?}, want {:?}); seed {:#x}; last ops: {}",
                off + at,
                got.get(at),
                self.model.get(off + at),
                self.seed,
                self.log.join("; ")
            );
        }
        Ok(())
    }

    fn set_len(&mut self, len: usize) {
        self.model.resize(len, 0);
    }

    fn release(&mut self, i: usize) -> TResult {
        let s = self.held.swap_remove(i);
        let got = match &s.sink {
            Sink::Pipe(p) => read_pipe(&p.r, s.want.len())?,
            Sink::Tee(p, t) => {
                let a = read_pipe(&p.r, s.want.len())?;
                let b = read_pipe(&t.r, s.want.len())?;
                if a != b {
                    fail!("tee copy differs from its original ({} bytes at {})", s.want.len(), s.at);
                }
                a
            }
            Sink::Socket => return Ok(()),
        };
        if got != s.want {
            let at = got.iter().zip(&s.want).position(|(a, b)| a != b).unwrap_or(0);
            fail!(
                "a snapshot of {} bytes at {} changed at byte {} after splice() returned; seed {:#x}; last ops: {}",
                s.want.len(),
                s.at,
                s.at + at,
                self.seed,
                self.log.join("; ")
            );
        }
        Ok(())
    }

    fn drain_socket(&mut self) -> TResult {
        for want in std::mem::take(&mut self.in_socket) {
            let got = recv_exact(&self.rx, want.len())?;
            ensure!(got == want, "bytes received through the socket changed after splice() returned");
        }
        Ok(())
    }
}

pub fn holds_exerciser(ctx: &Ctx) -> TResult {
    // A new seed each run (printed, so a failure can be replayed through
    // STABLE_SPLICE_EXERCISER_SEED).
    let seed = std::env::var("STABLE_SPLICE_EXERCISER_SEED")
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            t.as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64
        });
    let mut rng = Rng(seed | 1);
    let (tx, rx) = tcp_pair()?;
    let f = tmpfile(&ctx.dir)?;
    let direct = reopen_direct(f.fd.raw(), libc::O_WRONLY)?;
    let mut st = State {
        f,
        model: Vec::new(),
        other: tmpfile(&ctx.dir)?,
        other_model: rng.bytes(16 * PAGE),
        held: Vec::new(),
        in_socket: Vec::new(),
        tx,
        rx,
        log: Vec::new(),
        direct,
        buf: Map::anon(2 * PAGE)?,
        seed,
    };
    pwrite_all(st.other.fd.raw(), &st.other_model, 0)?;
    let init = rng.bytes(16 * PAGE);
    pwrite_all(st.fd(), &init, 0)?;
    st.model = init;
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(5, 30));
    let (mut ops, mut counts) = (0u64, [0u32; 12]);
    while Instant::now() < deadline {
        let size = st.model.len();
        let op = rng.below(12);
        counts[op] += 1;
        match op {
            // write
            0 | 1 => {
                let off = rng.below(size + PAGE).min(MAX - 3 * PAGE);
                let n = 1 + rng.below(3 * PAGE);
                let data = rng.bytes(n);
                pwrite_all(st.fd(), &data, off)?;
                if off + data.len() > st.model.len() {
                    st.set_len(off + data.len());
                }
                st.model[off..off + data.len()].copy_from_slice(&data);
                st.note(format!("pwrite {}@{off}", data.len()));
            }
            // stores through a shared mapping
            2 if size > 0 => {
                let off = rng.below(size);
                let len = (1 + rng.below(2 * PAGE)).min(size - off);
                let data = rng.bytes(len);
                // SAFETY: a shared mapping of our file, within its size.
                unsafe {
                    let m = libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, st.fd(), 0);
                    ensure!(m != libc::MAP_FAILED, "mmap: {}", ename(errno()));
                    std::ptr::copy_nonoverlapping(data.as_ptr(), m.cast::<u8>().add(off), len);
                    libc::munmap(m, size);
                }
                st.model[off..off + len].copy_from_slice(&data);
                st.note(format!("mmap store {len}@{off}"));
            }
            // truncate (shrink or grow)
            3 => {
                let len = rng.below(MAX);
                ftruncate(st.fd(), len)?;
                st.set_len(len);
                st.note(format!("truncate {len}"));
            }
            // punch hole / zero range
            4 if size > 0 && rng.below(3) > 0 => {
                let off = rng.below(size);
                let len = (1 + rng.below(3 * PAGE)).min(size - off);
                let mode = if rng.below(2) == 0 { libc::FALLOC_FL_PUNCH_HOLE } else { libc::FALLOC_FL_ZERO_RANGE };
                // SAFETY: fallocate on our own descriptor.
                if unsafe { libc::fallocate(st.fd(), mode | libc::FALLOC_FL_KEEP_SIZE, off as i64, len as i64) } == 0 {
                    st.model[off..off + len].fill(0);
                    st.note(format!("fallocate {mode:#x} {len}@{off}"));
                } else {
                    ensure!(errno() == libc::EOPNOTSUPP, "fallocate({mode:#x}): {}", ename(errno()));
                }
            }
            // collapse / insert range: everything behind the offset moves
            // (whole pages: the file systems want whole blocks)
            4 if size > 2 * PAGE => {
                let off = PAGE * rng.below(size / PAGE - 1);
                let len = PAGE * (1 + rng.below(2));
                let collapse = rng.below(2) == 0;
                let (mode, fits) = match collapse {
                    true => (libc::FALLOC_FL_COLLAPSE_RANGE, off + len < size),
                    false => (libc::FALLOC_FL_INSERT_RANGE, size + len <= MAX),
                };
                // SAFETY: fallocate on our own descriptor.
                if fits && unsafe { libc::fallocate(st.fd(), mode, off as i64, len as i64) } == 0 {
                    match collapse {
                        true => drop(st.model.drain(off..off + len)),
                        false => drop(st.model.splice(off..off, std::iter::repeat_n(0, len))),
                    }
                    st.note(format!("fallocate {mode:#x} {len}@{off}"));
                } else {
                    ensure!(!fits || errno() == libc::EOPNOTSUPP, "fallocate({mode:#x}, {len}@{off}): {}", ename(errno()));
                }
            }
            // copy_file_range from the other file, or a reflink on xfs
            5 => {
                let src = PAGE * rng.below(12);
                let dst = PAGE * rng.below(MAX / PAGE - 4);
                let len = PAGE * (1 + rng.below(3));
                let done = if rng.below(2) == 0 {
                    let (mut so, mut dof) = (src as i64, dst as i64);
                    // SAFETY: copy_file_range between our own descriptors.
                    let r = unsafe { libc::copy_file_range(st.other.fd.raw(), &mut so, st.fd(), &mut dof, len, 0) };
                    ensure!(r >= 0, "copy_file_range: {}", ename(errno()));
                    r as usize
                } else {
                    #[repr(C)]
                    struct CloneRange {
                        src_fd: i64,
                        src_offset: u64,
                        src_length: u64,
                        dest_offset: u64,
                    }
                    const FICLONERANGE: libc::c_ulong = 0x4020_940d;
                    let arg = CloneRange { src_fd: st.other.fd.raw() as i64, src_offset: src as u64, src_length: len as u64, dest_offset: dst as u64 };
                    // SAFETY: the ioctl reads `arg`, a valid file_clone_range.
                    if unsafe { libc::ioctl(st.fd(), FICLONERANGE, &arg) } == 0 {
                        len
                    } else {
                        0 // EOPNOTSUPP / EXDEV / EINVAL (unaligned EOF) where it cannot
                    }
                };
                if done > 0 {
                    if dst + done > st.model.len() {
                        st.set_len(dst + done);
                    }
                    let data = st.other_model[src..src + done].to_vec();
                    st.model[dst..dst + done].copy_from_slice(&data);
                    st.note(format!("copy {done}@{src}->{dst}"));
                }
            }
            // hold: a stable splice of a random range
            6 | 7 if size > 0 && st.held.len() < 8 => {
                let at = rng.below(size);
                let len = (1 + rng.below(6 * PAGE)).min(size - at);
                let p = pipe()?;
                // SAFETY: fcntl on our own pipe.
                unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, 16 * PAGE as i32) };
                let mut off = at as i64;
                let n = ck(splice_raw(st.fd(), Some(&mut off), p.w.raw(), None, len, stable()), "stable splice")?;
                let want = st.model[at..at + n].to_vec();
                let sink = match rng.below(3) {
                    0 => Sink::Pipe(p),
                    1 => {
                        let t = pipe()?;
                        // SAFETY: as above.
                        unsafe { libc::fcntl(t.w.raw(), libc::F_SETPIPE_SZ, 16 * PAGE as i32) };
                        ensure!(tee_raw(p.r.raw(), t.w.raw(), n, 0) == Ok(n), "tee");
                        Sink::Tee(p, t)
                    }
                    _ => {
                        let mut moved = 0;
                        while moved < n {
                            moved += ck(splice_raw(p.r.raw(), None, st.tx.raw(), None, n - moved, 0), "splice to socket")?;
                        }
                        st.in_socket.push(want.clone());
                        Sink::Socket
                    }
                };
                st.note(format!("hold {n}@{at}"));
                st.held.push(Snapshot { sink, want, at });
            }
            // release a hold (check its snapshot), or drain the socket
            8 if !st.held.is_empty() => {
                let i = rng.below(st.held.len());
                st.release(i)?;
                if st.in_socket.len() > 4 {
                    st.drain_socket()?;
                }
            }
            // the page cache let go of (clean, unreferenced folios leave
            // it; dirty ones start writeback), or written back: the
            // entries of drained holds outlive their folios, and the next
            // folio at an index may be the old one's memory
            10 if size > 0 => {
                let off = rng.below(size);
                let len = 1 + rng.below(8 * PAGE);
                if rng.below(2) == 0 {
                    // SAFETY: fadvise on our own descriptor.
                    let r = unsafe { libc::posix_fadvise(st.fd(), off as i64, len as i64, libc::POSIX_FADV_DONTNEED) };
                    ensure!(r == 0, "posix_fadvise(DONTNEED): {}", ename(r));
                    st.note(format!("dontneed {len}@{off}"));
                } else {
                    // SAFETY: on our own descriptor.
                    let r = unsafe { libc::sync_file_range(st.fd(), off as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER) };
                    ensure!(r == 0, "sync_file_range: {}", ename(errno()));
                    st.note(format!("sync_file_range {len}@{off}"));
                }
            }
            // whole pages written past the page cache, which drops them
            11 if st.direct.is_some() => {
                let off = PAGE * rng.below(MAX / PAGE - 2);
                let n = PAGE * (1 + rng.below(2));
                let data = rng.bytes(n);
                if let Some(direct) = &st.direct {
                    pwrite_direct(direct, &st.buf, &data, off)?;
                }
                if off + n > st.model.len() {
                    st.set_len(off + n);
                }
                st.model[off..off + n].copy_from_slice(&data);
                st.note(format!("direct write {n}@{off}"));
            }
            // read and check against the model
            _ => {
                let off = rng.below(size + 1);
                let len = rng.below(4 * PAGE);
                st.check_range(off, len, "random read")?;
            }
        }
        ops += 1;
        if ops % 64 == 0 {
            ensure!(file_size(st.fd())? as usize == st.model.len(), "file size differs from the model");
            st.check_range(0, MAX, "periodic full check")?;
        }
    }
    while !st.held.is_empty() {
        st.release(0)?;
    }
    st.drain_socket()?;
    st.check_range(0, MAX, "the end")?;
    // The model must also survive an fsync.
    fsync(st.fd())?;
    st.check_range(0, MAX, "fsync")?;
    ctx.note(format!("seed {seed:#x}: {ops} operations ({counts:?} by kind), breaks so far {:?}", counter("breaks")));
    Ok(())
}
