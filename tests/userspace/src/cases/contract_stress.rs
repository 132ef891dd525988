//! The contract under load (contract point 1 and 3 together): several
//! writers stamp versioned blocks, several splicers stable-splice random
//! ranges and hand the pipes (some tee'd into a second pipe) to reader
//! threads that drain them later, while the writers keep going.
//!
//! Every block a reader gets must be one whole version (the 8-byte header
//! and the fill agree), no older than the last write to that block that
//! completed before the splice began, and no newer than the last write
//! that had started when splice returned. Writers must never stall while
//! pipes sit undrained.
//!
//! `contract_stress_reaping` runs the same with a thread that asks the
//! module to reap all the while (debugfs `reap`: the reaper's walk without
//! its idle second, which a busy file never reaches otherwise), so that the
//! reaper's decisions race with splices joining holds, writers breaking or
//! ending them, and readers letting go.

use super::Ctx;
use crate::util::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BLOCKS: usize = 64;
const WRITERS: usize = 3;
const SPLICERS: usize = 2;
const MAX_RUN: usize = 16;
const WRITER_BOUND: Duration = Duration::from_secs(5);

struct Shared {
    /// Per block: highest version whose write started / completed. Block
    /// `b` belongs to writer `b % WRITERS`, so its versions only grow.
    started: Vec<AtomicU64>,
    completed: Vec<AtomicU64>,
    next_version: AtomicU64,
    stop: AtomicBool,
    max_pwrite_ns: AtomicU64,
    checked_blocks: AtomicU64,
    spliced_bytes: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, msg: String) {
        let mut e = self.error.lock().unwrap();
        if e.is_none() {
            *e = Some(msg);
        }
        self.stop.store(true, SeqCst);
    }
}

/// Block content of version `v`: the version, then a fill derived from it.
fn block(v: u64) -> Vec<u8> {
    let mut b = vec![0u8; PAGE];
    b[..8].copy_from_slice(&v.to_le_bytes());
    for (i, x) in b[8..].iter_mut().enumerate() {
        *x = (v.wrapping_mul(131).wrapping_add(i as u64 / 8)) as u8;
    }
    b
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn writer(fd: i32, id: usize, sh: &Shared) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ id as u64);
    let mine: Vec<usize> = (0..BLOCKS).filter(|b| b % WRITERS == id).collect();
    while !sh.stop.load(SeqCst) {
        let b = mine[rng.next(mine.len())];
        let v = sh.next_version.fetch_add(1, SeqCst) + 1;
        sh.started[b].store(v, SeqCst);
        let t = Instant::now();
        if let Err(e) = pwrite_all(fd, &block(v), b * PAGE) {
            sh.fail(format!("writer {id}: {e}"));
            return;
        }
        sh.max_pwrite_ns.fetch_max(t.elapsed().as_nanos() as u64, SeqCst);
        sh.completed[b].store(v, SeqCst);
    }
}

/// A spliced range waiting for its reader.
struct Job {
    pipes: Vec<Pipe>,
    first: usize,
    lo: Vec<u64>,
    hi: Vec<u64>,
}

fn splicer(fd: i32, id: usize, sh: &Shared, tx: std::sync::mpsc::SyncSender<Job>, end: Instant) {
    let mut rng = Rng(0xdead_beef_cafe_f00d ^ (id as u64 + 1));
    let mut n = 0u64;
    while !sh.stop.load(SeqCst) && Instant::now() < end {
        let count = 1 + rng.next(MAX_RUN);
        let first = rng.next(BLOCKS - count + 1);
        let range = first..first + count;
        let lo: Vec<u64> = range.clone().map(|b| sh.completed[b].load(SeqCst)).collect();
        let p = match pipe() {
            Ok(p) => p,
            Err(e) => return sh.fail(format!("splicer {id}: {e}")),
        };
        if let Err(e) = splice_exact(fd, first * PAGE, p.w.raw(), count * PAGE, stable()) {
            return sh.fail(format!("splicer {id}: {e}"));
        }
        let hi: Vec<u64> = range.map(|b| sh.started[b].load(SeqCst)).collect();
        sh.spliced_bytes.fetch_add((count * PAGE) as u64, SeqCst);
        let mut pipes = vec![p];
        n += 1;
        if n % 3 == 0 {
            let p2 = match pipe() {
                Ok(p) => p,
                Err(e) => return sh.fail(format!("splicer {id}: {e}")),
            };
            if tee_raw(pipes[0].r.raw(), p2.w.raw(), count * PAGE, 0) != Ok(count * PAGE) {
                return sh.fail(format!("splicer {id}: tee of {} bytes failed", count * PAGE));
            }
            pipes.push(p2);
        }
        if tx.send(Job { pipes, first, lo, hi }).is_err() {
            return;
        }
    }
}

fn reader(rx: Receiver<Job>, sh: &Shared) {
    let mut rng = Rng(0x1234_5678);
    for job in rx {
        // Let the writers run over the range while the data waits.
        if rng.next(2) == 0 {
            std::thread::sleep(Duration::from_millis(rng.next(5) as u64));
        }
        for (k, p) in job.pipes.iter().enumerate() {
            let got = match read_pipe(&p.r, job.lo.len() * PAGE) {
                Ok(g) => g,
                Err(e) => return sh.fail(format!("reader: {e}")),
            };
            for (i, blk) in got.chunks(PAGE).enumerate() {
                let b = job.first + i;
                let v = u64::from_le_bytes(blk[..8].try_into().unwrap());
                let what = if k == 0 { "pipe" } else { "tee'd pipe" };
                if blk != block(v).as_slice() {
                    return sh.fail(format!("{what}: block {b} is torn (header says version {v})"));
                }
                if v < job.lo[i] || v > job.hi[i] {
                    return sh.fail(format!(
                        "{what}: block {b} has version {v}, allowed {}..={} (completed before the \
                         splice began .. started before it returned)",
                        job.lo[i], job.hi[i]
                    ));
                }
                sh.checked_blocks.fetch_add(1, SeqCst);
            }
        }
    }
}

pub fn contract_stress(ctx: &Ctx) -> TResult {
    run(ctx, false)
}

pub fn contract_stress_reaping(ctx: &Ctx) -> TResult {
    if !counters_present() {
        skip!("no module counters: nothing reaps");
    }
    run(ctx, true)
}

/// Asks for a reap every 200 us until `sh.stop` or `end`; returns how many.
fn reaper(sh: &Shared, end: Instant) -> u64 {
    let mut n = 0;
    while !sh.stop.load(SeqCst) && Instant::now() < end {
        if let Err(e) = reap_idle_holds() {
            sh.fail(format!("reaper: {e}"));
            break;
        }
        n += 1;
        std::thread::sleep(Duration::from_micros(200));
    }
    n
}

fn run(ctx: &Ctx, reaping: bool) -> TResult {
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    for b in 0..BLOCKS {
        pwrite_all(fd, &block(0), b * PAGE)?;
    }
    let sh = Arc::new(Shared {
        started: (0..BLOCKS).map(|_| AtomicU64::new(0)).collect(),
        completed: (0..BLOCKS).map(|_| AtomicU64::new(0)).collect(),
        next_version: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        max_pwrite_ns: AtomicU64::new(0),
        checked_blocks: AtomicU64::new(0),
        spliced_bytes: AtomicU64::new(0),
        error: Mutex::new(None),
    });
    let copied0 = stable_bytes_total();
    let end = Instant::now() + Duration::from_secs(ctx.stress_secs.max(1));
    let reap = reaping.then(|| {
        let sh = Arc::clone(&sh);
        std::thread::spawn(move || reaper(&sh, end))
    });
    let mut threads = Vec::new();
    for id in 0..WRITERS {
        let sh = Arc::clone(&sh);
        threads.push(std::thread::spawn(move || writer(fd, id, &sh)));
    }
    let mut pipeline = Vec::new();
    for id in 0..SPLICERS {
        // Up to 8 undrained pipes per splicer at any time.
        let (tx, rx) = sync_channel::<Job>(8);
        let (s1, s2) = (Arc::clone(&sh), Arc::clone(&sh));
        pipeline.push(std::thread::spawn(move || splicer(fd, id, &s1, tx, end)));
        pipeline.push(std::thread::spawn(move || reader(rx, &s2)));
    }
    for t in pipeline {
        let _ = t.join();
    }
    sh.stop.store(true, SeqCst);
    for t in threads {
        let _ = t.join();
    }
    if let Some(t) = reap {
        let reaps = t.join().unwrap_or(0);
        ctx.note(format!("{reaps} reaps asked for while splicing"));
        ensure!(reaps > 0, "the reaper thread never reaped");
    }
    let handled = stable_bytes_total() - copied0;
    let spliced = sh.spliced_bytes.load(SeqCst);
    ctx.note(format!("spliced {spliced} bytes; the module made {handled} bytes stable"));
    if let Some(e) = sh.error.lock().unwrap().take() {
        fail!("{e}");
    }
    // Every spliced byte must have gone through the module, not only the
    // ones a reader happened to catch changing.
    if counters_present() {
        ensure!(handled >= spliced, "only {handled} of {spliced} spliced bytes were made stable");
    }
    let max = Duration::from_nanos(sh.max_pwrite_ns.load(SeqCst));
    let checked = sh.checked_blocks.load(SeqCst);
    ctx.note(format!(
        "{checked} blocks checked, {} writes, longest pwrite {max:?}",
        sh.next_version.load(SeqCst)
    ));
    ensure!(checked > 0, "no block was checked");
    ensure!(max < WRITER_BOUND, "a pwrite took {max:?} while pipes sat undrained");
    Ok(())
}
