//! A stable splice that sleeps for pipe space and gets a signal: without
//! SA_RESTART it fails with EINTR and leaves nothing behind; with
//! SA_RESTART the kernel restarts it, and the restarted call must still be
//! a stable splice (the module restores the flags register the restart
//! reuses).

use super::basic::file_with;
use super::Ctx;
use crate::util::*;
use std::time::Duration;

extern "C" fn on_usr1(_: i32) {}

fn set_handler(restart: bool) {
    // SAFETY: installs a handler that does nothing; sigaction is a valid
    // zeroed struct apart from the fields set.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
}

/// A pipe with no free slot, and how many filler bytes it holds.
fn full_pipe() -> TResult<(Pipe, usize)> {
    let p = pipe()?;
    set_nonblock(p.w.raw(), true)?;
    let chunk = [b'x'; PAGE];
    let mut n = 0;
    // SAFETY: writes from a valid buffer into our pipe until it is full.
    while let Ok(k) = cvt(unsafe { libc::write(p.w.raw(), chunk.as_ptr().cast(), PAGE) }) {
        n += k;
    }
    set_nonblock(p.w.raw(), false)?;
    Ok((p, n))
}

/// Waits until `pid` sleeps (state S in /proc/PID/stat): blocked on the
/// full pipe, so a signal now interrupts the splice rather than racing it.
fn wait_sleeping(pid: i32) -> TResult {
    let asleep = wait_until(Duration::from_secs(10), || {
        ProcStat::read(pid).is_some_and(|s| s.state() == "S")
    });
    ensure!(asleep, "child {pid} never went to sleep in splice");
    // Sleeping at once could be the fork return path; give it a moment
    // and check again.
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

fn in_flight_zero() -> TResult {
    if counters_present() {
        let ok = wait_until(Duration::from_secs(2), || counter("calls_in_flight") == Some(0));
        ensure!(ok, "calls_in_flight = {:?} after the call ended", counter("calls_in_flight"));
    }
    Ok(())
}

/// Forks a child that stable-splices a page of `fd` into the full pipe
/// `w`, waits until it sleeps there, and sends it SIGUSR1. The child exits
/// with `exit_code(splice result)`.
fn interrupted_splicer(
    fd: i32,
    w: i32,
    restart: bool,
    exit_code: fn(Result<usize, i32>) -> i32,
) -> TResult<i32> {
    let child = fork_child(move || {
        set_handler(restart);
        let mut off = 0i64;
        exit_code(splice_raw(fd, Some(&mut off), w, None, PAGE, stable()))
    })?;
    wait_sleeping(child)?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child, libc::SIGUSR1) };
    Ok(child)
}

pub fn signal_eintr(ctx: &Ctx) -> TResult {
    let (f, _) = file_with(ctx, 0x31, PAGE)?;
    let (p, _) = full_pipe()?;
    let child = interrupted_splicer(f.fd.raw(), p.w.raw(), false, |r| match r {
        Err(libc::EINTR) => 0,
        Ok(_) => 1,
        Err(_) => 2,
    })?;
    let Some(st) = wait_child(child, Duration::from_secs(10)) else {
        kill_child(child);
        fail!("the splice did not return after SIGUSR1");
    };
    ensure!(st == 0, "child: {} (0 = EINTR, 1 = completed, 2 = other error)", describe_status(st));
    in_flight_zero()
}

pub fn signal_restart_keeps_flag(ctx: &Ctx) -> TResult {
    let (f, a) = file_with(ctx, 0x41, PAGE)?;
    let (p, filled) = full_pipe()?;
    let fd = f.fd.raw();
    let child = interrupted_splicer(fd, p.w.raw(), true, |r| match r {
        Ok(n) if n == PAGE => 0,
        Ok(_) => 1,
        Err(_) => 2,
    })?;
    // The restarted splice goes back to sleep on the still-full pipe.
    wait_sleeping(child)?;
    // Make room: the restarted splice completes.
    let filler = read_pipe(&p.r, filled)?;
    ensure!(filler.iter().all(|&b| b == b'x'), "filler bytes changed");
    let Some(st) = wait_child(child, Duration::from_secs(10)) else {
        kill_child(child);
        fail!("the restarted splice did not complete after the pipe was drained");
    };
    ensure!(st == 0, "child: {} (0 = spliced a page)", describe_status(st));
    pwrite_all(fd, &pattern(0x42, 0, PAGE), 0)?;
    let got = read_pipe(&p.r, PAGE)?;
    expect_bytes("pipe after a restarted splice", &got, &a, None)?;
    in_flight_zero()
}
