//! Flag handling, Metzmacher's program, register preservation, bad input
//! and counters.

use super::Ctx;
use crate::util::*;
use std::time::Duration;

/// A scratch file holding `pattern(seed, 0, len)`.
pub(super) fn file_with(ctx: &Ctx, seed: u8, len: usize) -> TResult<(TestFile, Vec<u8>)> {
    let f = tmpfile(&ctx.dir)?;
    let data = pattern(seed, 0, len);
    pwrite_all(f.fd.raw(), &data, 0)?;
    Ok((f, data))
}

pub fn flag_einval_without_module(ctx: &Ctx) -> TResult {
    if counters_present() {
        ctx.note(format!("{COUNTER_DIR} exists: is the module loaded after all?"));
    }
    let (f, data) = file_with(ctx, 1, 2 * PAGE)?;
    let p = pipe()?;
    let mut off = 0i64;
    match splice_raw(f.fd.raw(), Some(&mut off), p.w.raw(), None, 2 * PAGE, SPLICE_F_STABLE) {
        Err(libc::EINVAL) => {}
        Err(e) => fail!("splice(SPLICE_F_STABLE) failed with {}, expected EINVAL", ename(e)),
        Ok(n) => fail!("splice(SPLICE_F_STABLE) accepted ({n} bytes) without the module"),
    }
    ensure!(off == 0, "rejected splice moved off_in to {off}");
    ensure!(pipe_queued(p.r.raw())? == 0, "rejected splice queued data in the pipe");
    splice_exact(f.fd.raw(), 0, p.w.raw(), 2 * PAGE, 0)?;
    expect_bytes("pipe after plain splice", &read_pipe(&p.r, 2 * PAGE)?, &data, None)
}

pub fn unknown_flag_einval(ctx: &Ctx) -> TResult {
    let (f, _) = file_with(ctx, 2, 2 * PAGE)?;
    let p = pipe()?;
    for flags in [0x20u32, SPLICE_F_STABLE | 0x20, 0x40, SPLICE_F_STABLE | 0x8000_0000] {
        let mut off = 0i64;
        match splice_raw(f.fd.raw(), Some(&mut off), p.w.raw(), None, 2 * PAGE, flags) {
            Err(libc::EINVAL) => {}
            Err(e) => fail!("flags {flags:#x}: {}, expected EINVAL", ename(e)),
            Ok(n) => fail!("flags {flags:#x}: accepted, returned {n}"),
        }
        ensure!(pipe_queued(p.r.raw())? == 0, "flags {flags:#x}: rejected splice queued data");
    }
    Ok(())
}

pub fn stable_flag_accepted(ctx: &Ctx) -> TResult {
    let len = 3 * PAGE + 100;
    let (f, data) = file_with(ctx, 3, len)?;
    let fd = f.fd.raw();
    let p = pipe()?;
    // Whole file, explicit offset.
    splice_exact(fd, 0, p.w.raw(), len, stable())?;
    expect_bytes("pipe (whole file)", &read_pipe(&p.r, len)?, &data, None)?;
    ensure!(pipe_queued(p.r.raw())? == 0, "pipe holds more than was spliced");
    // Unaligned start and length.
    splice_exact(fd, 100, p.w.raw(), 5000, stable())?;
    expect_bytes("pipe (5000 @100)", &read_pipe(&p.r, 5000)?, &data[100..5100], None)?;
    // NULL off_in: uses and advances the file position.
    lseek(fd, PAGE as i64)?;
    let n = ck(splice_raw(fd, None, p.w.raw(), None, PAGE, stable()), "splice(NULL off_in)")?;
    ensure!(n == PAGE, "splice(NULL off_in) returned {n}");
    // SAFETY: plain lseek query.
    let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    ensure!(pos == 2 * PAGE as i64, "file position after splice is {pos}, expected {}", 2 * PAGE);
    expect_bytes("pipe (NULL off_in)", &read_pipe(&p.r, PAGE)?, &data[PAGE..2 * PAGE], None)?;
    // Zero length is a no-op.
    let mut off = 0i64;
    let n = ck(splice_raw(fd, Some(&mut off), p.w.raw(), None, 0, stable()), "splice(len 0)")?;
    ensure!(n == 0 && off == 0, "splice(len 0) returned {n}, off {off}");
    Ok(())
}

/// splice(2) issued directly; returns (rax, [rdi, rsi, rdx, r10, r8, r9] after).
#[cfg(target_arch = "x86_64")]
fn splice_asm(args: [u64; 6]) -> (i64, [u64; 6]) {
    let ret: i64;
    let mut out = [0u64; 6];
    // SAFETY: this is splice(2) (nr 275) with valid fds, a valid off_in
    // pointer (args[1]) and a NULL off_out; the syscall instruction clobbers
    // only rax, rcx and r11, which are declared. The kernel may write
    // through off_in, so memory is not declared untouched.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") 275i64 => ret,
            inlateout("rdi") args[0] => out[0],
            inlateout("rsi") args[1] => out[1],
            inlateout("rdx") args[2] => out[2],
            inlateout("r10") args[3] => out[3],
            inlateout("r8") args[4] => out[4],
            inlateout("r9") args[5] => out[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (ret, out)
}

#[cfg(target_arch = "x86_64")]
pub fn registers_preserved(ctx: &Ctx) -> TResult {
    let len = 2 * PAGE;
    let (f, data) = file_with(ctx, 4, len)?;
    let p = pipe()?;
    let names = ["rdi", "rsi", "rdx", "r10", "r8", "r9"];
    // The last variant has garbage in r9's upper half: flags is an `int`, so
    // the kernel ignores those bits, and the module must restore them too.
    let variants = [
        stable() as u64,
        (stable() | SPLICE_F_NONBLOCK) as u64,
        0xdead_beef_0000_0000 | stable() as u64,
    ];
    for flags in variants {
        let mut off: i64 = 0;
        let args = [
            f.fd.raw() as u64,
            &mut off as *mut i64 as u64,
            p.w.raw() as u64,
            0,
            len as u64,
            flags,
        ];
        let (ret, out) = splice_asm(args);
        for i in 0..6 {
            ensure!(
                out[i] == args[i],
                "flags {flags:#x}: {} changed across the syscall: {:#x} -> {:#x} (ret {ret})",
                names[i],
                args[i],
                out[i]
            );
        }
        ensure!(ret == len as i64, "flags {flags:#x}: raw splice returned {ret}, expected {len}");
        // SAFETY: read after the syscall; asm! declared memory may change.
        let off_now = unsafe { std::ptr::read_volatile(&off) };
        ensure!(off_now == len as i64, "flags {flags:#x}: off_in is {off_now}, expected {len}");
        expect_bytes(&format!("flags {flags:#x}: pipe"), &read_pipe(&p.r, len)?, &data, None)?;
    }
    Ok(())
}

/// The module marks a stable splice() in bit 63 of the saved r9; a user
/// who sets that bit without the flag gets a plain splice (the later write
/// shows through), its registers back unchanged, and no stable call.
#[cfg(target_arch = "x86_64")]
pub fn mark_bit_without_flag_is_plain(ctx: &Ctx) -> TResult {
    let len = 2 * PAGE;
    let (f, data) = file_with(ctx, 6, len)?;
    let p = pipe()?;
    let before = counter("stable_calls");
    let mut off: i64 = 0;
    let flags = 1u64 << 63;
    let args = [f.fd.raw() as u64, &mut off as *mut i64 as u64, p.w.raw() as u64, 0, len as u64, flags];
    let (ret, out) = splice_asm(args);
    ensure!(ret == len as i64, "raw splice with r9 = {flags:#x} returned {ret}, expected {len}");
    ensure!(out[5] == flags, "r9 changed across the syscall: {flags:#x} -> {:#x}", out[5]);
    ensure!(counter("stable_calls") == before, "a splice without the flag counted as stable ({before:?} -> {:?})", counter("stable_calls"));
    let new: Vec<u8> = data.iter().map(|b| !b).collect();
    pwrite_all(f.fd.raw(), &new, 0)?;
    expect_bytes("pipe after a write (plain splice)", &read_pipe(&p.r, len)?, &new, Some(("the old content (treated as stable)", &data)))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn mark_bit_without_flag_is_plain(_ctx: &Ctx) -> TResult {
    skip!("the mark is in x86_64's r9");
}

#[cfg(not(target_arch = "x86_64"))]
pub fn registers_preserved(_ctx: &Ctx) -> TResult {
    skip!("register check is written for x86_64 only");
}

/// Metzmacher's program (seed 002): returns (first read, second read, file).
fn metzmacher(ctx: &Ctx, flags: u32) -> TResult<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    const PB: usize = libc::PIPE_BUF;
    let f = tmpfile(&ctx.dir)?;
    let fd = f.fd.raw();
    pwrite_all(fd, &[0x1f; PB], PB)?;
    let p = pipe()?;
    splice_exact(fd, 0, p.w.raw(), PB * 2, flags)?;
    pwrite_all(fd, &[0xf0; PB], 0)?;
    pwrite_all(fd, &[0xf0; PB], PB)?;
    let r1 = read_pipe(&p.r, PB)?;
    let r2 = read_pipe(&p.r, PB)?;
    let file = pread_vec(fd, 2 * PB, 0)?;
    ensure!(file == vec![0xf0; 2 * PB], "file does not hold the 0xf0 overwrite");
    Ok((r1, r2, file))
}

fn uniform(v: &[u8], b: u8) -> bool {
    !v.is_empty() && v.iter().all(|&x| x == b)
}

pub fn metzmacher_plain(ctx: &Ctx) -> TResult {
    const PB: usize = libc::PIPE_BUF;
    let (r1, r2, _) = metzmacher(ctx, 0)?;
    ensure!(r1.len() == PB && r2.len() == PB, "short pipe reads: {} and {}", r1.len(), r2.len());
    // The data page is always shared with the page cache: the overwrite shows.
    ensure!(
        uniform(&r2, 0xf0),
        "second PIPE_BUF is not all 0xf0 (first byte {:#04x}): plain splice did not show the overwrite",
        r2[0]
    );
    // The first page is a hole: shared like the data page (ext4/xfs), or the
    // shared zero page (tmpfs splices ZERO_PAGE for holes).
    if uniform(&r1, 0xf0) {
        ctx.note("hole page: overwrite visible (page-cache folio shared)");
    } else if uniform(&r1, 0x00) {
        ctx.note("hole page: still 0x00 (filesystem spliced the zero page for the hole)");
    } else {
        fail!("first PIPE_BUF is neither all 0xf0 nor all 0x00 (torn), first byte {:#04x}", r1[0]);
    }
    Ok(())
}

pub fn metzmacher_stable(ctx: &Ctx) -> TResult {
    const PB: usize = libc::PIPE_BUF;
    let (r1, r2, _) = metzmacher(ctx, stable())?;
    expect_bytes("first PIPE_BUF from pipe", &r1, &[0x00; PB], Some(("overwrite 0xf0", &[0xf0; PB])))?;
    expect_bytes("second PIPE_BUF from pipe", &r2, &[0x1f; PB], Some(("overwrite 0xf0", &[0xf0; PB])))
}

/// Accept success with the expected data, or a clear EINVAL/EOPNOTSUPP.
/// The flag on a source that is not a page-cache file: with the module it
/// is accepted and has nothing to do (the kernel fills the pipe with
/// private copies or the source's own buffers), so nothing is held or
/// copied at splice time; without it, `EINVAL` from the kernel's check.
fn stable_on_other_source(
    ctx: &Ctx,
    what: &str,
    splice: impl FnOnce() -> Result<usize, i32>,
    p: &Pipe,
    want: &[u8],
) -> TResult {
    let module = counters_present();
    let before = stable_bytes();
    let r = splice();
    let after = stable_bytes();
    match r {
        Ok(n) => {
            ensure!(n > 0 && n <= want.len(), "{what}: returned {n}, expected 1..={}", want.len());
            ensure!(
                after == before,
                "{what}: the module made buffers stable that are not the page cache's (zero copy, copied at splice: {before:?} -> {after:?})"
            );
            expect_bytes(what, &read_pipe(&p.r, n)?, &want[..n], None)?;
            ctx.note(format!("{what}: accepted, {n} bytes, data correct, nothing held or copied"));
        }
        Err(e) if module => fail!("{what}: {} with the module loaded (the flag is documented as accepted)", ename(e)),
        Err(libc::EINVAL) => ctx.note(format!("{what}: rejected with EINVAL (no module)")),
        Err(e) => fail!("{what}: unexpected {}", ename(e)),
    }
    Ok(())
}

pub fn bad_input(ctx: &Ctx) -> TResult {
    let len = 32 * PAGE;
    let (f, data) = file_with(ctx, 5, len)?;
    let fd = f.fd.raw();
    let s = stable();

    // Closed fd_in.
    {
        let p = pipe()?;
        let closed = tmpfile(&ctx.dir)?.fd.raw(); // dropped: number now closed
        match splice_raw(closed, Some(&mut 0), p.w.raw(), None, PAGE, s) {
            Err(libc::EBADF) => {}
            r => fail!("closed fd_in: expected EBADF, got {r:?}"),
        }
    }
    // Offset past EOF.
    {
        let p = pipe()?;
        let mut off = (len + 10 * PAGE) as i64;
        let r = splice_raw(fd, Some(&mut off), p.w.raw(), None, PAGE, s);
        ensure!(r == Ok(0), "offset past EOF: expected 0, got {r:?}");
    }
    // Huge len: clamped to what the pipe can take (default 16 pages).
    {
        let p = pipe()?;
        // SAFETY: F_GETPIPE_SZ takes no argument.
        let cap = unsafe { libc::fcntl(p.w.raw(), libc::F_GETPIPE_SZ) } as usize;
        let mut off = 0i64;
        let n = match splice_raw(fd, Some(&mut off), p.w.raw(), None, usize::MAX / 2, s) {
            Ok(n) => n,
            Err(e) => fail!("len = usize::MAX/2: {}", ename(e)),
        };
        ensure!(n > 0 && n <= cap.min(len), "len = usize::MAX/2: returned {n}, pipe capacity {cap}");
        ensure!(off == n as i64, "len = usize::MAX/2: off_in {off} after {n} bytes");
        expect_bytes("len = usize::MAX/2: pipe", &read_pipe(&p.r, n)?, &data[..n], None)?;
        ctx.note(format!("len = usize::MAX/2 returned {n} (pipe capacity {cap})"));
    }
    // Bad off_in pointer: the kernel's answer is EFAULT.
    {
        let p = pipe()?;
        // SAFETY: the kernel validates the user pointer; we never touch it.
        let r = cvt(unsafe { libc::splice(fd, std::ptr::dangling_mut::<i64>(), p.w.raw(), std::ptr::null_mut(), PAGE, s) });
        ensure!(r == Err(libc::EFAULT), "off_in = bad pointer: expected EFAULT, got {r:?}");
    }
    // Neither end a pipe.
    {
        let g = tmpfile(&ctx.dir)?;
        let r = splice_raw(fd, Some(&mut 0), g.fd.raw(), Some(&mut 0), PAGE, s);
        ensure!(r == Err(libc::EINVAL), "file -> file: expected EINVAL, got {r:?}");
    }
    // off_in with a pipe as input.
    {
        let p1 = pipe()?;
        let p2 = pipe()?;
        write_all(p1.w.raw(), &data[..PAGE])?;
        match splice_raw(p1.r.raw(), Some(&mut 0), p2.w.raw(), None, PAGE, s) {
            Err(libc::ESPIPE) => {}
            Err(libc::EINVAL) => ctx.note("pipe input with off_in: EINVAL (flag rejected before the offset check)"),
            r => fail!("pipe input with off_in: expected ESPIPE, got {r:?}"),
        }
    }
    // The flag on sources that are not page-cache files.
    {
        let p1 = pipe()?;
        let p2 = pipe()?;
        write_all(p1.w.raw(), &data[..PAGE])?;
        // Buffers moved from a pipe may be page-cache references from a
        // plain splice: the flag is refused there.
        let r = splice_raw(p1.r.raw(), None, p2.w.raw(), None, PAGE, s);
        if stable_override().is_none() {
            ensure!(r == Err(libc::EINVAL), "pipe -> pipe with the flag: expected EINVAL, got {r:?}");
            ensure!(pipe_queued(p1.r.raw())? == PAGE, "refused pipe -> pipe still moved data");
        }
        // Any pipe source, also towards a file.
        let g = tmpfile(&ctx.dir)?;
        let r = splice_raw(p1.r.raw(), None, g.fd.raw(), Some(&mut 0), PAGE, s);
        if stable_override().is_none() {
            ensure!(r == Err(libc::EINVAL), "pipe -> file with the flag: expected EINVAL, got {r:?}");
            ensure!(file_size(g.fd.raw())? == 0, "refused pipe -> file still wrote the file");
        }
    }
    {
        let mut sv = [0i32; 2];
        // SAFETY: sv is a valid int[2].
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
        ensure!(r == 0, "socketpair: {}", ename(errno()));
        let (a, b) = (Fd(sv[0]), Fd(sv[1]));
        write_all(a.raw(), &data[..PAGE])?;
        let p = pipe()?;
        let splice = || splice_raw(b.raw(), None, p.w.raw(), None, PAGE, s | SPLICE_F_NONBLOCK);
        stable_on_other_source(ctx, "unix socket -> pipe", splice, &p, &data[..PAGE])?;
    }
    {
        // TCP's splice_read hands the pipe its skbs' own pages.
        let (tx, rx) = super::socket_sink::tcp_pair()?;
        write_all(tx.raw(), &data[..PAGE])?;
        let p = pipe()?;
        let splice = || splice_raw(rx.raw(), None, p.w.raw(), None, PAGE, s);
        stable_on_other_source(ctx, "TCP socket -> pipe", splice, &p, &data[..PAGE])?;
    }
    {
        let z = ck(open("/dev/zero", libc::O_RDONLY, 0), "open /dev/zero")?;
        let p = pipe()?;
        let splice = || splice_raw(z.raw(), None, p.w.raw(), None, PAGE, s);
        stable_on_other_source(ctx, "/dev/zero -> pipe", splice, &p, &[0u8; PAGE])?;
    }
    {
        // An O_DIRECT descriptor of a page-cache file: the kernel splices it
        // through copy_splice_read, into private pages.
        let g = named_file(&ctx.dir, 0o600)?;
        pwrite_all(g.fd.raw(), &data[..PAGE], 0)?;
        let path = g.path.clone().unwrap_or_default();
        match open(&path, libc::O_RDONLY | libc::O_DIRECT, 0) {
            Ok(d) => {
                let p = pipe()?;
                let mut off = 0i64;
                let splice = || splice_raw(d.raw(), Some(&mut off), p.w.raw(), None, PAGE, s);
                stable_on_other_source(ctx, "O_DIRECT file -> pipe", splice, &p, &data[..PAGE])?;
            }
            Err(libc::EINVAL) => ctx.note("O_DIRECT file -> pipe: no O_DIRECT on this file system"),
            Err(e) => fail!("open(O_DIRECT): {}", ename(e)),
        }
    }
    // All pipes are closed now: no hold may remain, and sync must not hang.
    if counters_present() {
        ensure!(
            wait_holds_released(Duration::from_secs(2)),
            "holds_active = {:?} after all pipes were closed",
            counter("holds_active")
        );
    } else if ctx.expect_module {
        fail!("{COUNTER_DIR} missing");
    }
    // SAFETY: sync has no preconditions; the case timeout guards a hang.
    unsafe { libc::sync() };
    Ok(())
}

pub fn counters_zero_after_close(ctx: &Ctx) -> TResult {
    ensure!(counters_present(), "{COUNTER_DIR} missing (module loaded? debugfs mounted?)");
    let names = [
        "calls_in_flight",
        "holds_active",
        "bytes_zero_copy",
        "bytes_copied_at_splice",
        "breaks",
        "snapshot_bytes",
        "max_writer_wait_ns",
    ];
    for n in names {
        ensure!(counter(n).is_some(), "counter {n} missing or not a decimal integer");
    }
    let before = stable_bytes_total();
    let len = 4 * PAGE;
    let (f, data) = file_with(ctx, 6, len)?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), len, stable())?;
    let delta = stable_bytes_total().saturating_sub(before);
    ctx.note(format!(
        "while held: holds_active={:?} zero_copy+copied delta={delta}",
        counter("holds_active"),
    ));
    ensure!(delta >= len as u64, "bytes_zero_copy + bytes_copied_at_splice grew by {delta}, spliced {len}");
    // Contend once so the close path also covers a broken hold.
    pwrite_all(f.fd.raw(), &pattern(7, 0, PAGE), 0)?;
    expect_bytes("pipe", &read_pipe(&p.r, PAGE)?, &data[..PAGE], None)?;
    drop(p);
    let ok = wait_until(Duration::from_secs(2), || counter("calls_in_flight") == Some(0))
        && wait_holds_released(Duration::from_secs(2));
    ensure!(
        ok,
        "after close: holds_active={:?} calls_in_flight={:?}",
        counter("holds_active"),
        counter("calls_in_flight")
    );
    Ok(())
}
