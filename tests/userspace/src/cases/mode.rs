//! The stable mode for unmodified programs (`/dev/stable_splice`,
//! `stable-splice exec`): sendfile(), splice() without the flag and
//! IORING_OP_SPLICE by a process in the mode are snapshots; the mode is
//! inherited by children and threads, survives exec, reaches nobody else.
//! Each `mode_*` case has a control without the mode that must show the
//! hazard (or skip when it did not), so a pass proves something.

use super::holds::file_ab;
use super::socket_sink::{recv_exact, tcp_pair, tcp_pair_rcvbuf};
use super::Ctx;
use crate::uring;
use crate::util::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stable_splice_uapi::{FILE_INFO, GET_MODE, IOC_MAGIC, LARGE_FOLIOS, SET_MODE};
const LEN: usize = 16 * PAGE;

fn device() -> TResult<Fd> {
    ck(open(stable_splice_uapi::DEVICE, libc::O_RDONLY, 0), "open /dev/stable_splice")
}

fn ioctl(fd: &Fd, cmd: libc::c_ulong, arg: libc::c_ulong) -> Result<i32, i32> {
    // SAFETY: the module's ioctls take their argument by value.
    let r = unsafe { libc::ioctl(fd.raw(), cmd, arg) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// Puts the calling process (the case's own) into the mode or out of it.
pub fn set_mode(on: bool) -> TResult {
    let d = device()?;
    ck(ioctl(&d, SET_MODE, on as libc::c_ulong), "STABLE_SPLICE_SET_MODE")?;
    Ok(())
}

pub fn in_mode() -> TResult<bool> {
    let d = device()?;
    Ok(ck(ioctl(&d, GET_MODE, 0), "STABLE_SPLICE_GET_MODE")? == 1)
}

/// The `stable-splice` tool built by `make`.
pub fn tool() -> String {
    std::env::var("SS_TOOL").unwrap_or_else(|_| {
        format!("{}/tools/stable-splice/target/release/stable-splice", std::env::var("SS_ROOT").unwrap_or(".".into()))
    })
}

fn verdict(in_mode: bool, what: &str, got: &[u8], a: &[u8], b: &[u8]) -> TResult {
    if in_mode {
        expect_bytes(what, got, a, Some(("the file's new content (the write showed through)", b)))
    } else if got == a {
        skip!("{what}: without the mode the old bytes stayed this time (the hazard did not show)")
    } else {
        Ok(())
    }
}

pub fn mode_inherited(_ctx: &Ctx) -> TResult {
    ensure!(!in_mode()?, "a fresh process is in the mode");
    // A child that exists before the mode is switched on stays out of it.
    let gate = pipe()?;
    let gr = gate.r.raw();
    let before = fork_child(move || {
        let mut b = [0u8; 1];
        // SAFETY: reading one byte from the inherited pipe.
        unsafe { libc::read(gr, b.as_mut_ptr().cast(), 1) };
        if in_mode().unwrap_or(true) { 1 } else { 0 }
    })?;
    let procs0 = counter("mode_processes").unwrap_or(0);
    set_mode(true)?;
    ensure!(in_mode()?, "STABLE_SPLICE_GET_MODE says 0 right after SET_MODE 1");
    ensure!(counter("mode_processes").unwrap_or(0) > procs0, "mode_processes did not count this process");
    write_all(gate.w.raw(), b"g")?;
    let st = wait_child(before, Duration::from_secs(10));
    ensure!(st == Some(0), "a process forked before SET_MODE is in the mode: {}", st.map_or("hung".into(), describe_status));
    // Threads share the mode; children and grandchildren inherit it.
    let t = std::thread::spawn(|| in_mode().ok()).join().ok().flatten();
    ensure!(t == Some(true), "a thread of the process is not in the mode ({t:?})");
    let child = fork_child(|| match fork_child(|| if in_mode().unwrap_or(false) { 0 } else { 1 }) {
        Ok(gc) if in_mode().unwrap_or(false) => wait_child(gc, Duration::from_secs(10)).map_or(3, |s| if s == 0 { 0 } else { 2 }),
        _ => 1,
    })?;
    let st = wait_child(child, Duration::from_secs(10));
    ensure!(st == Some(0), "child (1) or grandchild (2) not in the mode: {}", st.map_or("hung".into(), describe_status));
    // exec keeps it: the tool reports on its own process.
    let out = Command::new(tool()).arg("status").output().map_err(|e| TestErr::Fail(format!("{}: {e}", tool())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("this process is in it"), "after exec the child is not in the mode: {text}");
    set_mode(false)?;
    ensure!(!in_mode()?, "SET_MODE 0 did not take the process out");
    let child = fork_child(|| if in_mode().unwrap_or(true) { 1 } else { 0 })?;
    ensure!(wait_child(child, Duration::from_secs(10)) == Some(0), "a child forked after leaving the mode is in it");
    Ok(())
}

/// The device is usable by any user, acts only on the caller, and refuses
/// what it does not know.
pub fn mode_self_only(_ctx: &Ctx) -> TResult {
    let d = device()?;
    ensure!(ioctl(&d, SET_MODE, 2) == Err(libc::EINVAL), "SET_MODE 2 not refused with EINVAL");
    ensure!(ioctl(&d, IOC_MAGIC << 8 | 9, 0) == Err(libc::ENOTTY), "an unknown ioctl not refused with ENOTTY");
    let child = fork_child(|| {
        // SAFETY: dropping privileges in the forked child.
        if unsafe { libc::setgid(65534) } != 0 || unsafe { libc::setuid(65534) } != 0 {
            return 10;
        }
        match set_mode(true).and_then(|()| in_mode()) {
            Ok(true) => 0,
            Ok(false) => 11,
            Err(_) => 12,
        }
    })?;
    let st = wait_child(child, Duration::from_secs(10));
    ensure!(st == Some(0), "user nobody could not put itself in the mode: {}", st.map_or("hung".into(), describe_status));
    ensure!(!in_mode()?, "the child's SET_MODE put its parent in the mode");
    Ok(())
}

/// The mode reaches its own process and nobody else, also not a process
/// whose thread-group id shares the member's slot of the mode's filter
/// (the id's low eight bits, src/mode.rs; with `direct_calls=1` read by
/// `do_splice_read`'s trampoline): while a member runs, other processes'
/// splices without the flag are plain ones. No plain twin: this case is
/// itself the check that nothing changes outside the mode.
pub fn mode_reaches_only_members(ctx: &Ctx) -> TResult {
    let (f, _, _) = file_ab(ctx, LEN)?;
    let (ready, stop) = (pipe()?, pipe()?);
    let member = fork_child(|| {
        let mut b = [0u8; 1];
        // SAFETY: plain reads and closes of this child's own fds.
        unsafe { libc::close(stop.w.raw()) }; // so that the parent's close ends the read below
        if set_mode(true).is_err() {
            return 10;
        }
        say(ready.w.raw(), "in");
        // SAFETY: as above.
        unsafe { libc::read(stop.r.raw(), b.as_mut_ptr().cast(), 1) };
        0
    })?;
    let Pipe { r: ready_r, w: ready_w } = ready;
    drop(ready_w); // a member that failed closes the last writer: EOF below
    let entered = read_line(&ready_r, Duration::from_secs(10)).as_deref() == Some("in");
    let result = if !entered {
        let st = wait_child(member, Duration::from_secs(10));
        if st.is_none() {
            kill_child(member);
        }
        Err(TestErr::Fail(format!("the member never entered the mode: {}", st.map_or("hung".into(), describe_status))))
    } else {
        outsiders_stay_plain(&f, member)
    };
    drop(stop); // the member's read returns, it exits and leaves the mode
    if entered {
        let st = wait_child(member, Duration::from_secs(10));
        ensure!(st == Some(0), "the member: {}", st.map_or("hung".into(), describe_status));
    }
    result
}

/// Forks processes until one shares `member`'s filter slot: that one, and
/// the first one in another slot, splice without the flag, and both must
/// stay plain.
fn outsiders_stay_plain(f: &TestFile, member: i32) -> TResult {
    let slot = member & 0xff;
    let (mut shared, mut other) = (false, false);
    for _ in 0..4096 {
        let check_other = !other;
        let child = fork_child(|| {
            // SAFETY: no preconditions.
            let mine = unsafe { libc::getpid() } & 0xff == slot;
            if !mine && !check_other {
                return 1; // neither kind is wanted from this one
            }
            let c0 = counter("mode_splices").unwrap_or(0);
            let Ok(p) = pipe() else { return 20 };
            // SAFETY: raising our own pipe's size.
            unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
            if splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, 0).is_err() {
                return 21;
            }
            if !matches!(in_mode(), Ok(false)) {
                return 22;
            }
            if counter("mode_splices").unwrap_or(0) != c0 {
                return 23;
            }
            if mine { 2 } else { 3 }
        })?;
        // Blocking: most of these exit at once, and polling would cost each
        // one a sleep; none blocks (a splice into an empty pipe of LEN).
        let mut status = 0;
        // SAFETY: `child` is ours; `status` a valid out-parameter.
        let st = (unsafe { libc::waitpid(child, &mut status, 0) } == child).then_some(status);
        match st.filter(|s| libc::WIFEXITED(*s)).map(|s| libc::WEXITSTATUS(s)) {
            Some(1) => {}
            Some(2) => shared = true,
            Some(3) => other = true,
            Some(22) => fail!("process {child} (slot {}) is in the mode, the member {member} is in slot {slot}", child & 0xff),
            Some(23) => fail!("a splice without the flag by process {child} (slot {}) was made stable; the member {member} is in slot {slot}", child & 0xff),
            _ => fail!("process {child}: {}", st.map_or("hung".into(), describe_status)),
        }
        if shared && other {
            return Ok(());
        }
    }
    skip!("no process of 4096 forked shared the member's filter slot {slot} (pids taken elsewhere)")
}

/// splice() without the flag from a process in the mode.
fn splice_without_flag(ctx: &Ctx, mode: bool) -> TResult {
    let (f, a, b) = file_ab(ctx, LEN)?;
    if mode {
        set_mode(true)?; // a control runs as it is: a fresh process is not in the mode
    }
    let c0 = counter("mode_splices").unwrap_or(0);
    let p = pipe()?;
    // SAFETY: raising our own pipe's size.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, 0)?;
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = read_pipe(&p.r, LEN)?;
    let counted = counter("mode_splices").unwrap_or(0) > c0;
    ensure!(counted == mode, "mode_splices {} for a splice {} the mode", if counted { "grew" } else { "did not grow" }, if mode { "in" } else { "outside" });
    verdict(mode, "pipe after a write (splice without the flag)", &got, &a, &b)
}

pub fn mode_splice_without_flag(ctx: &Ctx) -> TResult {
    splice_without_flag(ctx, true)
}
pub fn plain_mode_splice_without_flag(ctx: &Ctx) -> TResult {
    splice_without_flag(ctx, false)
}

/// sendfile() to a TCP socket whose reader has stopped: what is queued in
/// the receiver when the file is overwritten must stay the old content.
fn sendfile_stalled(ctx: &Ctx, mode: bool) -> TResult {
    const BIG: usize = 16 << 20;
    let (f, a, b) = file_ab(ctx, BIG)?;
    if mode {
        set_mode(true)?; // a control runs as it is: a fresh process is not in the mode
    }
    // The receiver of a server that has stopped reading: 8 MiB of buffer
    // (autotuning only grows it while the application reads).
    let (tx, rx) = tcp_pair_rcvbuf(Some(8 << 20))?;
    let (txr, fr) = (tx.raw(), f.fd.raw());
    let sender = std::thread::spawn(move || {
        let mut off: libc::off_t = 0;
        while (off as usize) < BIG {
            // SAFETY: our descriptors; `off` is advanced by the kernel.
            let n = unsafe { libc::sendfile(txr, fr, &mut off, BIG - off as usize) };
            if n <= 0 {
                return Err(format!("sendfile at {off}: {}", if n == 0 { "0".into() } else { ename(errno()) }));
            }
        }
        Ok(())
    });
    let queued = wait_queued(rx.raw())?;
    ctx.note(format!("receiver socket holds {queued} bytes before the overwrite"));
    ensure!(queued >= 1 << 20, "only {queued} bytes queued in the receiver: the test needs MBs in flight");
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = recv_exact(&rx, BIG)?;
    sender.join().map_err(|_| TestErr::Fail("sender panicked".into()))?.map_err(TestErr::Fail)?;
    verdict(mode, "bytes queued in the receiver before the write", &got[..queued], &a[..queued], &b[..queued])
}

/// Waits until a socket's receive queue stops growing; returns its size.
pub fn wait_queued(fd: i32) -> TResult<usize> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut last, mut since) = (0usize, Instant::now());
    loop {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        ensure!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } == 0, "FIONREAD: {}", ename(errno()));
        let n = n as usize;
        if n != last {
            (last, since) = (n, Instant::now());
        } else if n > 0 && since.elapsed() > Duration::from_millis(700) {
            return Ok(n);
        }
        ensure!(Instant::now() < deadline, "the receive queue never settled ({n} bytes)");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn mode_sendfile_socket(ctx: &Ctx) -> TResult {
    sendfile_stalled(ctx, true)
}
pub fn plain_mode_sendfile_socket(ctx: &Ctx) -> TResult {
    sendfile_stalled(ctx, false)
}

/// IORING_OP_SPLICE without the flag, run by an io-wq worker of the
/// process in the mode.
fn uring_without_flag(ctx: &Ctx, mode: bool) -> TResult {
    let (f, a, b) = file_ab(ctx, LEN)?;
    if mode {
        set_mode(true)?; // a control runs as it is: a fresh process is not in the mode
    }
    let p = pipe()?;
    // SAFETY: raising our own pipe's size.
    unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, LEN as i32) };
    let mut ring = uring::setup_or_skip(4)?;
    let r = ring.submit_and_wait(uring::splice_from_file(f.fd.raw(), p.w.raw(), LEN, 0, 1))?;
    ensure!(r == LEN as i32, "IORING_OP_SPLICE returned {r}");
    pwrite_all(f.fd.raw(), &b, 0)?;
    let got = read_pipe(&p.r, LEN)?;
    verdict(mode, "pipe after a write (IORING_OP_SPLICE without the flag)", &got, &a, &b)
}

pub fn mode_io_uring_splice(ctx: &Ctx) -> TResult {
    uring_without_flag(ctx, true)
}
pub fn plain_mode_io_uring_splice(ctx: &Ctx) -> TResult {
    uring_without_flag(ctx, false)
}

/// In the mode a splice from a pipe is what it always was (a program like
/// Samba splices file -> pipe -> socket; the second step must keep working).
pub fn mode_pipe_source_unchanged(ctx: &Ctx) -> TResult {
    let (f, a, _) = file_ab(ctx, LEN)?;
    set_mode(true)?;
    let (p1, p2) = (pipe()?, pipe()?);
    // SAFETY: raising our own pipes' size.
    unsafe {
        libc::fcntl(p1.w.raw(), libc::F_SETPIPE_SZ, LEN as i32);
        libc::fcntl(p2.w.raw(), libc::F_SETPIPE_SZ, LEN as i32);
    }
    splice_exact(f.fd.raw(), 0, p1.w.raw(), LEN, 0)?;
    let n = splice_raw(p1.r.raw(), None, p2.w.raw(), None, LEN, 0);
    ensure!(n == Ok(LEN), "splice pipe -> pipe in the mode returned {n:?}");
    let (tx, rx) = tcp_pair()?;
    let n = splice_raw(p2.r.raw(), None, tx.raw(), None, LEN, 0);
    ensure!(n == Ok(LEN), "splice pipe -> socket in the mode returned {n:?}");
    expect_bytes("received", &recv_exact(&rx, LEN)?, &a, None)
}

fn run(cmd: &mut Command) -> TResult<(Option<i32>, String, String)> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| TestErr::Fail(format!("{cmd:?}: {e}")))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `stable-splice exec/status/probe` with the module loaded.
pub fn mode_tool(ctx: &Ctx) -> TResult {
    let t = tool();
    let (st, _, err) = run(Command::new(&t).args(["exec", "--", "sh", "-c", "exit 7"]))?;
    ensure!(st == Some(7), "exec: CMD's exit status 7 came back as {st:?} ({err})");
    let (st, _, err) = run(Command::new(&t).args(["exec", "/no/such/command"]))?;
    ensure!(st == Some(127) && err.contains("command not found"), "exec of a missing command: {st:?}, {err:?}");
    let (st, _, err) = run(Command::new(&t).arg("exec"))?;
    ensure!(st == Some(127) && err.contains("no command given"), "exec without a command: {st:?}, {err:?}");
    let (st, out, _) = run(Command::new(&t).args(["exec", &t, "status"]))?;
    ensure!(st == Some(0) && out.contains("this process is in it"), "status under exec: {st:?}: {out}");
    // Grandchildren through a shell, and a sendfile()-free check of the
    // counter the tool shows.
    let script = format!("sh -c '{t} status' | grep -q 'this process is in it'");
    let (st, _, _) = run(Command::new(&t).args(["exec", "sh", "-c", &script]))?;
    ensure!(st == Some(0), "a grandchild through sh -c is not in the mode ({st:?})");
    let (st, out, _) = run(Command::new(&t).arg("status"))?;
    ensure!(st == Some(0) && out.contains("this process is not") && out.contains("policy: cow"), "status: {st:?}: {out}");
    for word in ["zero copy", "holds:", "writers:", "failures: 0 break(s)"] {
        ensure!(out.contains(word), "status lacks {word:?}: {out}");
    }
    let (st, out, _) = run(Command::new(&t).arg("probe"))?;
    ensure!(st == Some(0), "probe with the module loaded: {st:?} {out}");
    ctx.note(out.trim());
    Ok(())
}

/// STABLE_SPLICE_FILE_INFO and `stable-splice status FILE`: what a stable
/// splice from a file of this file system gets, and why; the counters of
/// a splice agree with the answer; bad descriptors get EBADF, others than
/// regular files EINVAL.
pub fn file_info(ctx: &Ctx) -> TResult {
    let d = device()?;
    let f = named_file(&ctx.dir, 0o644)?;
    let path = f.path.clone().unwrap_or_default();
    pwrite_all(f.fd.raw(), &pattern(0x5a, 0, LEN), 0)?;
    settle_page_cache(f.fd.raw(), LEN)?;
    let kind = ck(ioctl(&d, FILE_INFO, f.fd.raw() as libc::c_ulong), "STABLE_SPLICE_FILE_INFO")?;
    let fs = crate::detect_fs(&ctx.dir);
    let journalled = fs == "ext4" && mount_options(&ctx.dir).split(',').any(|o| o == "data=journal");
    let (want, phrase) = match fs.as_str() {
        "ext4" if journalled => (1, "ext4 journals this file's data"),
        "ext4" | "xfs" => (0, "zero copy"),
        _ => (2, "does not intercept this file system's writers"),
    };
    ensure!(kind & !LARGE_FOLIOS == want, "{fs}: FILE_INFO says {kind:#x}, want {want} (+ large folios)");
    if want == 0 {
        let large = kind & LARGE_FOLIOS != 0;
        ensure!(large == large_folios_possible(), "{fs}: large folios {large}, but THP in this kernel: {}", large_folios_possible());
    }
    // The counters agree: held means zero copy, the others copy.
    let before = stable_bytes();
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), LEN, stable())?;
    let after = stable_bytes();
    let (zero_copy, copied) = (after.0 - before.0, after.1 - before.1);
    if want == 0 {
        ensure!(zero_copy == LEN as u64, "{fs}: held says FILE_INFO, but {zero_copy} bytes zero copy, {copied} copied");
    } else {
        ensure!(copied == LEN as u64 && zero_copy == 0, "{fs}: a copy says FILE_INFO, but {copied} bytes copied, {zero_copy} zero copy");
    }
    let (st, out, err) = run(Command::new(tool()).args(["status", &path]))?;
    ensure!(st == Some(0) && out.contains(phrase), "status {path}: {st:?}: {out} {err}");
    let (st, out, _) = run(Command::new(tool()).arg("status"))?;
    let line = out.lines().find(|l| l.trim_start().starts_with(&format!("{} ", ctx.dir)));
    ensure!(st == Some(0) && line.is_some_and(|l| l.contains(phrase)), "status lists {} as {line:?}, want {phrase:?}: {out}", ctx.dir);
    // Bad input.
    ensure!(ioctl(&d, FILE_INFO, u32::MAX as libc::c_ulong) == Err(libc::EBADF), "FILE_INFO of fd -1: not EBADF");
    let dir = ck(open(&ctx.dir, libc::O_RDONLY | libc::O_DIRECTORY, 0), "open dir")?;
    ensure!(ioctl(&d, FILE_INFO, dir.raw() as libc::c_ulong) == Err(libc::EINVAL), "FILE_INFO of a directory: not EINVAL");
    ensure!(ioctl(&d, FILE_INFO, p.r.raw() as libc::c_ulong) == Err(libc::EINVAL), "FILE_INFO of a pipe: not EINVAL");
    ctx.note(format!("{fs}: FILE_INFO {kind:#x}"));
    Ok(())
}

/// Without the module: exec runs nothing and says what to do; probe fails.
pub fn mode_tool_without_module(ctx: &Ctx) -> TResult {
    let t = tool();
    let marker = format!("{}/ss-exec-ran.{}", ctx.dir, std::process::id());
    let (st, _, err) = run(Command::new(&t).args(["exec", "--", "touch", &marker]))?;
    let ran = std::path::Path::new(&marker).exists();
    let _ = std::fs::remove_file(&marker);
    ensure!(!ran, "exec ran the command although the mode could not be set");
    ensure!(st == Some(125) && err.contains("not loaded") && err.contains("modprobe"), "exec without the module: {st:?}, {err:?}");
    let (st, out, _) = run(Command::new(&t).arg("probe"))?;
    ensure!(st == Some(1) && out.contains("EINVAL"), "probe without the module: {st:?}: {out}");
    let (st, out, _) = run(Command::new(&t).arg("status"))?;
    ensure!(st == Some(1) && out.contains("not loaded"), "status without the module: {st:?}: {out}");
    Ok(())
}
