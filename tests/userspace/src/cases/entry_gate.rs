//! The redirects of `do_splice` and `do_splice_read` leave while no stable
//! splice needs them (debugfs `idle`, `splice_entries_idle`) and are back
//! before the next stable splice reaches them: each way a stable splice
//! starts, right after they left, still gets its snapshot, and so does a
//! splicer racing a task that takes them out again and again. Each case has
//! a plain control that must show the hazard (or skip when it did not).

use super::holds::file_ab;
use super::mode::set_mode;
use super::Ctx;
use crate::uring;
use crate::util::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEN: usize = 4 * PAGE;

/// Taking the redirects out and putting them back patches kernel text; in
/// a TCG guest with more than one vCPU that kills the guest now and then
/// where another vCPU runs the patched function (QEMU's: the harness loads
/// the module with `entries_idle_secs=0` there, and `make check` runs
/// these cases in its one-vCPU guests). Without the module (a control)
/// nothing is patched.
fn patching_allowed() -> TResult {
    // SAFETY: no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if counters_present() && std::env::var("SS_ACCEL").as_deref() == Ok("tcg") && cpus > 1 {
        return Err(TestErr::Skip(format!(
            "a TCG guest with {cpus} vCPUs, where patching a function another vCPU runs kills the guest now \
             and then (QEMU); make check runs this in a one-vCPU guest"
        )));
    }
    Ok(())
}

/// Takes the gated redirects out now (debugfs `idle`); whether they went
/// (not with `direct_calls=1`, whose trampolines stay). Without the module
/// (a control) there is nothing to take out.
fn idle_now() -> TResult<bool> {
    if !counters_present() {
        return Ok(false);
    }
    std::fs::write(format!("{COUNTER_DIR}/idle"), "1").map_err(|e| TestErr::Fail(format!("debugfs idle: {e}")))?;
    let idle = counter("splice_entries_idle") == Some(1);
    if counter("splice_redirects_by_callback") == Some(0) {
        ensure!(!idle, "splice_entries_idle is 1 with direct calls, which have nothing to take out");
        return Ok(false);
    }
    ensure!(
        idle,
        "debugfs idle left the redirects in place (calls_in_flight {:?}, mode_processes {:?})",
        counter("calls_in_flight"),
        counter("mode_processes")
    );
    Ok(true)
}

/// After a stable splice that started with the redirects out: they are back.
fn ensure_back(went: bool, rearmed_before: u64, how: &str) -> TResult {
    if went {
        ensure!(counter("splice_entries_idle") == Some(0), "{how}: the redirects are still out after it");
        ensure!(
            counter("splice_entries_rearmed").unwrap_or(0) > rearmed_before,
            "{how}: splice_entries_rearmed did not grow"
        );
    }
    Ok(())
}

/// file -> pipe right after the redirects left, then a write of the range,
/// then the pipe drained: by `splice(2)`, by `IORING_OP_SPLICE`, and by a
/// process in the stable mode splicing without the flag; with `stable`
/// false the same without the flag and outside the mode.
fn back_after_idle(ctx: &Ctx, stable: bool) -> TResult {
    patching_allowed()?;
    let flag = stable_if(stable);
    let mut hazard_shown = false;
    for how in ["splice(2)", "IORING_OP_SPLICE", "the stable mode"] {
        let (f, a, b) = file_ab(ctx, LEN)?;
        let p = pipe()?;
        let rearmed = counter("splice_entries_rearmed").unwrap_or(0);
        let went = idle_now()?;
        match how {
            "splice(2)" => splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flag)?,
            "IORING_OP_SPLICE" => {
                let mut ring = uring::setup_or_skip(4)?;
                let r = ring.submit_and_wait(uring::splice_from_file(f.fd.raw(), p.w.raw(), LEN, flag, 1))?;
                ensure!(r == LEN as i32, "IORING_OP_SPLICE returned {r}");
            }
            _ => {
                if stable {
                    set_mode(true)?;
                }
                splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, 0)?;
                if stable {
                    set_mode(false)?;
                }
            }
        }
        if stable {
            ensure_back(went, rearmed, how)?;
        }
        pwrite_all(f.fd.raw(), &b, 0)?;
        let got = read_pipe(&p.r, LEN)?;
        if stable {
            expect_bytes(how, &got, &a, Some(("the file's new content (the write showed through)", &b)))?;
            ctx.note(format!("{how}: snapshot kept{}", if went { " after the redirects had left" } else { "" }));
        } else {
            hazard_shown |= got != a;
        }
    }
    if stable {
        // A stable splice from a pipe is refused by do_splice's redirect.
        let src = pipe()?;
        write_all(src.w.raw(), &[7u8; PAGE])?;
        let dst = pipe()?;
        let went = idle_now()?;
        match splice_raw(src.r.raw(), None, dst.w.raw(), None, PAGE, crate::util::stable()) {
            Err(libc::EINVAL) => ctx.note(format!("pipe source: EINVAL{}", if went { " after the redirects had left" } else { "" })),
            Err(e) => fail!("stable splice from a pipe after the redirects left: {}, expected EINVAL", ename(e)),
            Ok(n) => fail!("stable splice from a pipe after the redirects left moved {n} bytes, expected EINVAL"),
        }
        return Ok(());
    }
    if !hazard_shown {
        skip!("plain splices kept the old bytes every time (the hazard did not show)");
    }
    Ok(())
}

pub fn entries_back_after_idle(ctx: &Ctx) -> TResult {
    back_after_idle(ctx, true)
}
pub fn plain_entries_back_after_idle(ctx: &Ctx) -> TResult {
    back_after_idle(ctx, false)
}

/// A splicer (file -> pipe, a write of the range, the pipe drained) while
/// another thread takes the redirects out as fast as it can: each stable
/// splice must find them back in place, whichever side wins.
fn idle_race(ctx: &Ctx, stable: bool) -> TResult {
    patching_allowed()?;
    let flag = stable_if(stable);
    let stop = Arc::new(AtomicBool::new(false));
    let idles = Arc::new(AtomicU64::new(0));
    let idler = counters_present().then(|| {
        let (stop, idles) = (stop.clone(), idles.clone());
        std::thread::spawn(move || {
            let path = format!("{COUNTER_DIR}/idle");
            while !stop.load(Ordering::Relaxed) {
                if std::fs::write(&path, "1").is_ok() {
                    idles.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    let rearmed = counter("splice_entries_rearmed").unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(3, 10));
    let (f, _, _) = file_ab(ctx, LEN)?;
    let p = pipe()?;
    let (mut rounds, mut shown) = (0u64, 0u64);
    let result = (|| -> TResult {
        while Instant::now() < deadline {
            let seed = (rounds % 200) as u8;
            let a = pattern(seed, 0, LEN);
            let b = pattern(seed.wrapping_add(101), 0, LEN);
            pwrite_all(f.fd.raw(), &a, 0)?;
            splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, flag)?;
            pwrite_all(f.fd.raw(), &b, 0)?;
            let got = read_pipe(&p.r, LEN)?;
            if stable {
                expect_bytes(&format!("round {rounds}"), &got, &a, Some(("the write of the round", &b)))?;
            } else if got != a {
                shown += 1;
            }
            rounds += 1;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = idler {
        t.join().map_err(|_| TestErr::Fail("idle thread panicked".into()))?;
    }
    result?;
    let rearmed = counter("splice_entries_rearmed").unwrap_or(0).saturating_sub(rearmed);
    ctx.note(format!(
        "{rounds} rounds, {} debugfs idle writes, redirects put back {rearmed} times{}",
        idles.load(Ordering::Relaxed),
        if stable { String::new() } else { format!(", the write showed through in {shown}") }
    ));
    if stable {
        if counter("splice_redirects_by_callback") != Some(0) {
            ensure!(rearmed > 0, "the redirects were never put back: the race did not happen");
        }
        Ok(())
    } else if shown == 0 {
        skip!("plain splices kept the old bytes every round (the hazard did not show)")
    } else {
        Ok(())
    }
}

pub fn entries_idle_race(ctx: &Ctx) -> TResult {
    idle_race(ctx, true)
}
pub fn plain_entries_idle_race(ctx: &Ctx) -> TResult {
    idle_race(ctx, false)
}

/// The module parameter, as sysfs shows and sets it.
const IDLE_SECS: &str = "/sys/module/stable_splice/parameters/entries_idle_secs";

/// Restores `entries_idle_secs` when dropped.
struct IdleSecs(String);

impl IdleSecs {
    fn set(secs: u32) -> TResult<IdleSecs> {
        let old = std::fs::read_to_string(IDLE_SECS).map_err(|e| TestErr::Fail(format!("read {IDLE_SECS}: {e}")))?;
        std::fs::write(IDLE_SECS, secs.to_string()).map_err(|e| TestErr::Fail(format!("write {IDLE_SECS}: {e}")))?;
        Ok(IdleSecs(old.trim().to_string()))
    }
}

impl Drop for IdleSecs {
    fn drop(&mut self) {
        let _ = std::fs::write(IDLE_SECS, &self.0);
    }
}

/// Without debugfs `idle`: with `entries_idle_secs=1` the redirects leave
/// on their own within a few seconds of the last stable splice (the delayed
/// work's look finds no new one), and the next stable splice brings them
/// back and keeps its snapshot.
pub fn entries_idle_on_their_own(ctx: &Ctx) -> TResult {
    patching_allowed()?;
    if counter("splice_redirects_by_callback") == Some(0) {
        skip!("direct calls (direct_calls=1): nothing to take out");
    }
    let _secs = IdleSecs::set(1)?;
    let (f, a, b) = file_ab(ctx, LEN)?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, stable())?;
    read_pipe(&p.r, LEN)?;
    // The work looks every 10 s while the parameter was 0, then every second.
    let t0 = Instant::now();
    ensure!(
        wait_until(Duration::from_secs(25), || counter("splice_entries_idle") == Some(1)),
        "the redirects were still in place {:.0} s after the last stable splice with entries_idle_secs=1",
        t0.elapsed().as_secs_f64()
    );
    ctx.note(format!("out {:.1} s after the last stable splice", t0.elapsed().as_secs_f64()));
    let rearmed = counter("splice_entries_rearmed").unwrap_or(0);
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, stable())?;
    ensure_back(true, rearmed, "splice(2) after they left on their own")?;
    pwrite_all(f.fd.raw(), &b, 0)?;
    expect_bytes("pipe after the write", &read_pipe(&p.r, LEN)?, &a, Some(("the write", &b)))
}
