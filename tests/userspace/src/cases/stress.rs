//! Torn-read stress: a writer thread rewrites the file page by page with an
//! increasing generation byte while this thread stable-splices and drains the
//! pipe, racing consumer reads against snapshot breaks. Each page read back
//! must be uniform (not torn) and carry a generation that was in the file
//! while the splice call ran, never a later one.

use super::Ctx;
use crate::util::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NPAGES: usize = 8;
const WRITER_BOUND: Duration = Duration::from_secs(5);

struct Shared {
    /// Generation whose page writes have begun / all finished.
    started: AtomicU64,
    completed: AtomicU64,
    stop: AtomicBool,
    max_pwrite_ns: AtomicU64,
    error: Mutex<Option<String>>,
}

fn writer(fd: i32, sh: &Shared) {
    let mut page = [0u8; PAGE];
    let mut g = 0u64;
    while !sh.stop.load(SeqCst) {
        g += 1;
        sh.started.store(g, SeqCst);
        page.fill(g as u8);
        for p in 0..NPAGES {
            let t = Instant::now();
            if let Err(e) = pwrite_all(fd, &page, p * PAGE) {
                *sh.error.lock().unwrap() = Some(format!("writer gen {g}: {e}"));
                sh.stop.store(true, SeqCst);
                return;
            }
            sh.max_pwrite_ns.fetch_max(t.elapsed().as_nanos() as u64, SeqCst);
        }
        sh.completed.store(g, SeqCst);
    }
}

/// Generation byte `v` must be one of the generations in [lo, hi].
fn gen_in_range(v: u8, lo: u64, hi: u64) -> bool {
    (lo..=hi).any(|g| g as u8 == v)
}

pub fn torn_read_stress(ctx: &Ctx) -> TResult {
    let len = NPAGES * PAGE;
    let f = tmpfile(&ctx.dir)?;
    pwrite_all(f.fd.raw(), &vec![0u8; len], 0)?; // generation 0
    let fd = f.fd.raw();
    let sh = Arc::new(Shared {
        started: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        max_pwrite_ns: AtomicU64::new(0),
        error: Mutex::new(None),
    });
    let wsh = Arc::clone(&sh);
    let th = std::thread::spawn(move || writer(fd, &wsh));
    let res = reader_loop(ctx, fd, &sh);
    sh.stop.store(true, SeqCst);
    let _ = th.join();
    if let Some(e) = sh.error.lock().unwrap().take() {
        fail!("{e}");
    }
    let max = Duration::from_nanos(sh.max_pwrite_ns.load(SeqCst));
    ctx.note(format!("longest single pwrite: {max:?}"));
    ensure!(max < WRITER_BOUND, "a pwrite took {max:?}");
    res
}

fn reader_loop(ctx: &Ctx, fd: i32, sh: &Shared) -> TResult {
    let len = NPAGES * PAGE;
    let p = pipe()?;
    let end = Instant::now() + Duration::from_secs(ctx.stress_secs.max(1));
    let (mut iters, mut inconclusive) = (0u64, 0u64);
    while Instant::now() < end {
        if sh.stop.load(SeqCst) {
            break; // writer failed; reported by the caller
        }
        let lo = sh.completed.load(SeqCst);
        splice_exact(fd, 0, p.w.raw(), len, stable())?;
        let hi = sh.started.load(SeqCst);
        // Every other round, let one full generation land while the data
        // sits in the pipe; otherwise read at once, racing the writer.
        if iters % 2 == 0 {
            let t = Instant::now();
            while sh.completed.load(SeqCst) < hi + 1 {
                ensure!(!sh.stop.load(SeqCst), "writer stopped");
                ensure!(
                    t.elapsed() < WRITER_BOUND,
                    "writer made no progress for {WRITER_BOUND:?} while the pipe held data"
                );
                std::thread::yield_now();
            }
        }
        let got = read_pipe(&p.r, len)?;
        ensure!(got.len() == len, "pipe yielded {} of {len} bytes", got.len());
        iters += 1;
        if hi - lo >= 255 {
            inconclusive += 1; // generation bytes would wrap
            continue;
        }
        for (i, page) in got.chunks(PAGE).enumerate() {
            let v = page[0];
            if let Some(j) = page.iter().position(|&x| x != v) {
                fail!(
                    "iteration {iters}: page {i} torn: byte 0 = {v:#04x}, byte {j} = {:#04x} (gens {lo}..={hi})",
                    page[j]
                );
            }
            ensure!(
                gen_in_range(v, lo, hi),
                "iteration {iters}: page {i} has generation byte {v:#04x}, but only gens {lo}..={hi} \
                 were in the file during the splice (a later write showed through)"
            );
        }
    }
    ctx.note(format!(
        "{iters} iterations, {inconclusive} inconclusive, writer reached gen {}",
        sh.completed.load(SeqCst)
    ));
    ensure!(iters > inconclusive, "no conclusive iteration");
    Ok(())
}
