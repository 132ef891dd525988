//! Contract points 3 and 5: writers are bounded while the pipe stays unread,
//! and the flag opens no write path and no way to block a privileged writer.

use super::basic::file_with;
use super::Ctx;
use crate::util::*;
use std::time::{Duration, Instant};

/// A writer waits for at most one snapshot copy; this is a generous bound
/// that still separates "bounded" from "waits for the pipe to drain".
const WRITER_BOUND: Duration = Duration::from_secs(5);

pub fn bounded_writer_same_process(ctx: &Ctx) -> TResult {
    let len = 4 * PAGE;
    let (f, a) = file_with(ctx, 0x31, len)?;
    let b = pattern(0x32, 0, len);
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), len, stable())?;
    // Nobody reads the pipe while this thread writes.
    let t = Instant::now();
    pwrite_all(f.fd.raw(), &b, 0)?;
    let took = t.elapsed();
    ctx.note(format!("pwrite over held range took {took:?}"));
    ensure!(took < WRITER_BOUND, "pwrite took {took:?} while the pipe was unread");
    expect_bytes("file after pwrite", &pread_vec(f.fd.raw(), len, 0)?, &b, None)?;
    expect_bytes("pipe", &read_pipe(&p.r, len)?, &a, Some(("new data", &b)))
}

pub fn bounded_writer_other_process(ctx: &Ctx) -> TResult {
    let len = 4 * PAGE;
    let (f, a) = file_with(ctx, 0x33, len)?;
    let b = pattern(0x34, 0, len);
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), len, stable())?;
    let fd = f.fd.raw();
    let t = Instant::now();
    let pid = fork_child(|| if pwrite_all(fd, &b, 0).is_ok() { 0 } else { 1 })?;
    // The parent holds the pipe unread the whole time.
    let st = match wait_child(pid, WRITER_BOUND) {
        Some(st) => st,
        None => {
            kill_child(pid);
            fail!("writer process still blocked after {WRITER_BOUND:?} while the pipe was unread");
        }
    };
    ctx.note(format!("writer process finished after {:?}", t.elapsed()));
    ensure!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "writer process: {}",
        describe_status(st)
    );
    expect_bytes("file after pwrite", &pread_vec(fd, len, 0)?, &b, None)?;
    expect_bytes("pipe", &read_pipe(&p.r, len)?, &a, Some(("new data", &b)))
}

/// Root-owned 0644 named file with `data`, plus a fresh O_RDONLY descriptor.
fn readonly_file(ctx: &Ctx, data: &[u8]) -> TResult<(TestFile, Fd)> {
    let f = named_file(&ctx.dir, 0o644)?;
    pwrite_all(f.fd.raw(), data, 0)?;
    let ro = ck(open(f.path.as_deref().unwrap_or_default(), libc::O_RDONLY, 0), "open O_RDONLY")?;
    Ok((f, ro))
}

fn check_unchanged(f: &TestFile, a: &[u8], what: &str) -> TResult {
    let fresh = ck(open(f.path.as_deref().unwrap_or_default(), libc::O_RDONLY, 0), "reopen O_RDONLY")?;
    let got = pread_vec(fresh.raw(), a.len(), 0)?;
    expect_bytes(&format!("read-only file after {what}"), &got, a, None)
}

pub fn dirty_pipe_no_write_path(ctx: &Ctx) -> TResult {
    let len = 3 * PAGE;
    let a = pattern(0x41, 0, len);
    let (f, ro) = readonly_file(ctx, &a)?;
    let evil = [b'E'; 64];

    // 1. Fresh pipe: partial-page splice, then a write that would merge.
    {
        let p = pipe()?;
        splice_exact(ro.raw(), 1, p.w.raw(), 100, stable())?;
        write_all(p.w.raw(), &evil)?;
        check_unchanged(&f, &a, "pipe write after a partial-page splice")?;
        let mut want = a[1..101].to_vec();
        want.extend_from_slice(&evil);
        expect_bytes("pipe contents", &read_pipe(&p.r, want.len())?, &want, None)?;
    }
    // 2. CVE-2022-0847 shape: every slot once carried CAN_MERGE (filled by
    //    write, drained), then a 1-byte splice lands in such a slot.
    {
        let p = pipe()?;
        // SAFETY: F_GETPIPE_SZ takes no argument.
        let cap = unsafe { libc::fcntl(p.w.raw(), libc::F_GETPIPE_SZ) } as usize;
        let fill = vec![b'F'; cap];
        write_all(p.w.raw(), &fill)?;
        ensure!(read_pipe(&p.r, cap)?.len() == cap, "could not drain the primed pipe");
        splice_exact(ro.raw(), PAGE + 1, p.w.raw(), 1, stable())?;
        write_all(p.w.raw(), &evil)?;
        check_unchanged(&f, &a, "Dirty Pipe sequence (primed pipe, 1-byte splice, write)")?;
        let mut want = vec![a[PAGE + 1]];
        want.extend_from_slice(&evil);
        expect_bytes("pipe contents", &read_pipe(&p.r, want.len())?, &want, None)?;
    }
    // 3. Move the buffers into another file (try_steal/gift path), then
    //    overwrite that destination: the source page cache must not change.
    {
        let p = pipe()?;
        splice_exact(ro.raw(), 0, p.w.raw(), 2 * PAGE, stable())?;
        let dst = tmpfile(&ctx.dir)?;
        splice_pipe_into(p.r.raw(), dst.fd.raw(), 0, 2 * PAGE, SPLICE_F_MOVE)?;
        expect_bytes("destination after move", &pread_vec(dst.fd.raw(), 2 * PAGE, 0)?, &a[..2 * PAGE], None)?;
        let b = pattern(0x42, 0, 2 * PAGE);
        pwrite_all(dst.fd.raw(), &b, 0)?;
        expect_bytes("destination after overwrite", &pread_vec(dst.fd.raw(), 2 * PAGE, 0)?, &b, None)?;
        check_unchanged(&f, &a, "overwriting the SPLICE_F_MOVE destination")?;
    }
    // 4. The read-only descriptor itself must still refuse writes.
    // SAFETY: write from a valid buffer; failure is the expected outcome.
    let r = cvt(unsafe { libc::pwrite(ro.raw(), evil.as_ptr().cast(), evil.len(), 0) });
    ensure!(r == Err(libc::EBADF), "pwrite on the O_RDONLY fd returned {r:?}");
    check_unchanged(&f, &a, "all sequences")
}

/// Child side: drop to nobody, stable-splice, report, wait, read back.
fn unprivileged_child(path: &str, len: usize, a: &[u8], to_parent: i32, from_parent: &Fd) -> i32 {
    const NOBODY: u32 = 65534;
    // SAFETY: credential syscalls in the forked child; results checked.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0
    };
    // SAFETY: getuid/geteuid have no preconditions.
    if !ok || unsafe { libc::geteuid() } != NOBODY {
        say(to_parent, &format!("E cannot drop to uid {NOBODY}: {}", ename(errno())));
        return 1;
    }
    let ro = match open(path, libc::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            say(to_parent, &format!("S nobody cannot open the test file ({}): directory not accessible", ename(e)));
            return 1;
        }
    };
    // A write path for nobody would be a privilege bug of its own.
    if open(path, libc::O_RDWR, 0).is_ok() {
        say(to_parent, "E nobody could open the 0644 root file O_RDWR");
        return 1;
    }
    let p = match pipe() {
        Ok(p) => p,
        Err(e) => {
            say(to_parent, &format!("E {e}"));
            return 1;
        }
    };
    if let Err(e) = splice_exact(ro.raw(), 0, p.w.raw(), len, stable()) {
        say(to_parent, &format!("E as nobody: {e}"));
        return 1;
    }
    say(to_parent, "R");
    // Keep the pipe unread until the parent has written.
    if read_line(from_parent, Duration::from_secs(15)).as_deref() != Some("G") {
        say(to_parent, "E no go signal from parent");
        return 1;
    }
    match read_pipe(&p.r, len).and_then(|got| expect_bytes("nobody's pipe", &got, a, None)) {
        Ok(()) => {
            say(to_parent, "OK");
            0
        }
        Err(e) => {
            say(to_parent, &format!("E {e}"));
            1
        }
    }
}

pub fn unprivileged_reader(ctx: &Ctx) -> TResult {
    let len = 4 * PAGE;
    let a = pattern(0x51, 0, len);
    let b = pattern(0x52, 0, len);
    let f = named_file(&ctx.dir, 0o644)?;
    pwrite_all(f.fd.raw(), &a, 0)?;
    let path = f.path.clone().unwrap_or_default();
    let up = pipe()?; // child -> parent
    let down = pipe()?; // parent -> child
    let (up_w, down_r) = (up.w.raw(), &down.r);
    let pid = fork_child(|| unprivileged_child(&path, len, &a, up_w, down_r))?;
    // Close our copy of the child's write end so EOF shows if it dies.
    drop(up.w);
    let first = read_line(&up.r, Duration::from_secs(10));
    match first.as_deref() {
        Some("R") => {}
        Some(m) if m.starts_with("S ") => {
            kill_child(pid);
            skip!("{}", &m[2..]);
        }
        other => {
            kill_child(pid);
            fail!("child (uid 65534) did not get ready: {other:?}");
        }
    }
    // Root writes over the range that nobody holds in an unread pipe.
    let t = Instant::now();
    pwrite_all(f.fd.raw(), &b, 0)?;
    let took = t.elapsed();
    ctx.note(format!("root pwrite over nobody's held range took {took:?}"));
    ensure!(took < WRITER_BOUND, "privileged writer blocked {took:?} by an unprivileged reader");
    expect_bytes("file after root's pwrite", &pread_vec(f.fd.raw(), len, 0)?, &b, None)?;
    say(down.w.raw(), "G");
    let res = read_line(&up.r, Duration::from_secs(10));
    let st = wait_child(pid, Duration::from_secs(5));
    if st.is_none() {
        kill_child(pid);
    }
    match res.as_deref() {
        Some("OK") => Ok(()),
        Some(m) => fail!("child: {}", m.strip_prefix("E ").unwrap_or(m)),
        None => fail!("child gave no result (status {:?})", st.map(describe_status)),
    }
}
