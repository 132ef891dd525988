//! Contract point 1: the pipe keeps the data as of splice() return against
//! every writer path. Each case splices pattern A with stable(),
//! writes pattern B (or truncates/punches), checks the file really changed,
//! then requires exactly A from the pipe.

use super::Ctx;
use crate::uring;
use crate::util::*;

/// More than two pages, with a partial last page.
const LEN: usize = 3 * PAGE + 512;
const SEED_A: u8 = 0x11;
const SEED_B: u8 = 0x77;

struct Snap {
    f: TestFile,
    p: Pipe,
    a: Vec<u8>,
    b: Vec<u8>,
    len: usize,
}

impl Snap {
    fn fd(&self) -> i32 {
        self.f.fd.raw()
    }
    /// The pipe must yield exactly A, then nothing more.
    fn check_pipe(&self) -> TResult {
        check_pipe_a(&self.p, &self.a, &self.b)
    }
    /// Same, diagnosing against `new`, the file's content after the change.
    fn check_pipe_vs(&self, new: &[u8]) -> TResult {
        check_pipe_a(&self.p, &self.a, new)
    }
    /// After `what` wrote B: the file has B; the pipe A if it was
    /// stable-spliced (`held`), and if not (the plain control) B must show
    /// through, which proves that the path writes the very folios the
    /// splice put in the pipe, or the case skips. (`held` rather than the
    /// flags: with the flag overridden to 0 the stable case must fail.)
    fn check_pipe_after(&self, held: bool, what: &str) -> TResult {
        self.check_file(&self.b, what)?;
        if held {
            return self.check_pipe();
        }
        if read_pipe(&self.p.r, self.len)? == self.a {
            skip!("{what}: plain splice kept the old bytes (the path did not write the spliced folios here)");
        }
        Ok(())
    }
    fn check_file(&self, want: &[u8], what: &str) -> TResult {
        let got = pread_vec(self.fd(), want.len().max(self.len), 0)?;
        expect_bytes(&format!("file after {what} (did the write happen?)"), &got, want, None)
    }
}

fn check_pipe_a(p: &Pipe, a: &[u8], b: &[u8]) -> TResult {
    let got = read_pipe(&p.r, a.len())?;
    expect_bytes("pipe", &got, a, Some(("file's new content (the change showed through)", b)))?;
    ensure!(pipe_queued(p.r.raw())? == 0, "pipe holds more than was spliced");
    Ok(())
}

/// Scratch file with A, stable-spliced whole into a fresh pipe.
fn setup(ctx: &Ctx, named: bool, len: usize) -> TResult<Snap> {
    setup_with(ctx, named, len, true)
}

/// [`setup`] with the flag (`held`) or without (the plain control).
fn setup_with(ctx: &Ctx, named: bool, len: usize, held: bool) -> TResult<Snap> {
    let f = if named { named_file(&ctx.dir, 0o600)? } else { tmpfile(&ctx.dir)? };
    let a = pattern(SEED_A, 0, len);
    let b = pattern(SEED_B, 0, len);
    pwrite_all(f.fd.raw(), &a, 0)?;
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), len, stable_if(held))?;
    Ok(Snap { f, p, a, b, len })
}

/// [`setup_with`] with a shared mapping of the file. `dirty_before`: A is
/// stored through the mapping before the splice instead of written, so
/// its PTEs are dirty and writable when the splice takes the pages, and
/// later stores and GUP reach them without a fault unless the hold
/// write-protected them; otherwise the file is mapped after the splice.
fn setup_mapped(ctx: &Ctx, len: usize, held: bool, dirty_before: bool) -> TResult<(Snap, Map)> {
    if !dirty_before {
        let s = setup_with(ctx, false, len, held)?;
        let m = Map::shared_file(s.fd(), len)?;
        return Ok((s, m));
    }
    let f = tmpfile(&ctx.dir)?;
    ftruncate(f.fd.raw(), len)?;
    let m = Map::shared_file(f.fd.raw(), len)?;
    let (a, b) = (pattern(SEED_A, 0, len), pattern(SEED_B, 0, len));
    m.store(0, &a);
    let p = pipe()?;
    splice_exact(f.fd.raw(), 0, p.w.raw(), len, stable_if(held))?;
    Ok((Snap { f, p, a, b, len }, m))
}

/// Splices A (with the flag if `held`), lets `write` put B over it by some
/// path, then checks file and pipe ([`Snap::check_pipe_after`]).
fn writer_path(ctx: &Ctx, held: bool, what: &str, write: impl FnOnce(&Snap) -> TResult) -> TResult {
    let s = setup_with(ctx, false, LEN, held)?;
    write(&s)?;
    s.check_pipe_after(held, what)
}

pub fn snapshot_pwrite(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    pwrite_all(s.fd(), &s.b, 0)?;
    s.check_file(&s.b, "pwrite")?;
    s.check_pipe()
}

pub fn snapshot_write(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    lseek(s.fd(), 0)?;
    write_all(s.fd(), &s.b)?;
    s.check_file(&s.b, "write")?;
    s.check_pipe()
}

pub fn snapshot_writev(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    lseek(s.fd(), 0)?;
    // Split inside the second page so one writev spans a page boundary mid-iovec.
    let cut = PAGE + 100;
    let iov = [
        libc::iovec { iov_base: s.b.as_ptr() as *mut _, iov_len: cut },
        libc::iovec { iov_base: s.b[cut..].as_ptr() as *mut _, iov_len: s.len - cut },
    ];
    // SAFETY: both iovecs point into s.b, alive for the call.
    let n = cvt(unsafe { libc::writev(s.fd(), iov.as_ptr(), 2) });
    ensure!(n == Ok(s.len), "writev returned {n:?}, expected Ok({})", s.len);
    s.check_file(&s.b, "writev")?;
    s.check_pipe()
}

pub fn snapshot_mmap_after_splice(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    let m = Map::shared_file(s.fd(), s.len)?;
    m.store(0, &s.b);
    s.check_file(&s.b, "stores through a shared mmap")?;
    s.check_pipe()
}

pub fn snapshot_mmap_dirty_before_splice(ctx: &Ctx) -> TResult {
    // The mapping exists and its PTEs are dirty+writable before the splice:
    // later stores fault only if the hold write-protected them.
    let (s, m) = setup_mapped(ctx, LEN, true, true)?;
    m.store(0, &s.b);
    expect_bytes("mapping after stores", &m.load(0, LEN), &s.b, None)?;
    s.check_file(&s.b, "stores through the pre-existing dirty mapping")?;
    s.check_pipe()
}

/// Write 16 MiB elsewhere so that freed page-cache pages get reused: a
/// buffer still pointing at a freed folio would then show foreign bytes.
fn churn_page_cache(ctx: &Ctx) -> TResult {
    let g = tmpfile(&ctx.dir)?;
    let junk = vec![0xa5u8; 1 << 20];
    for i in 0..16 {
        pwrite_all(g.fd.raw(), &junk, i << 20)?;
    }
    Ok(())
}

pub fn snapshot_ftruncate_zero(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    ftruncate(s.fd(), 0)?;
    ensure!(file_size(s.fd())? == 0, "size after ftruncate(0) is {}", file_size(s.fd())?);
    ensure!(pread_vec(s.fd(), LEN, 0)?.is_empty(), "truncated file still returns data");
    churn_page_cache(ctx)?;
    s.check_pipe_vs(&vec![0; LEN])
}

pub fn snapshot_ftruncate_mid_page(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    let mid = PAGE / 2;
    ftruncate(s.fd(), mid)?;
    let sz = file_size(s.fd())?;
    ensure!(sz == mid as u64, "size after ftruncate({mid}) is {sz}");
    // Extend again: the cut-off tail of the first page must read as zeros now.
    ftruncate(s.fd(), LEN)?;
    let mut want = s.a[..mid].to_vec();
    want.resize(LEN, 0);
    s.check_file(&want, "ftruncate(mid page) + re-extend")?;
    s.check_pipe_vs(&want)
}

pub fn snapshot_punch_hole(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    let (off, len) = (1024usize, 2048usize);
    // SAFETY: plain syscall on our fd.
    let r = unsafe {
        libc::fallocate(
            s.fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    };
    if r != 0 {
        match errno() {
            libc::EOPNOTSUPP => skip!("fallocate(PUNCH_HOLE) not supported by this filesystem (EOPNOTSUPP)"),
            e => fail!("fallocate(PUNCH_HOLE|KEEP_SIZE, {off}, {len}): {}", ename(e)),
        }
    }
    let mut want = s.a.clone();
    want[off..off + len].fill(0);
    s.check_file(&want, "punch hole")?;
    s.check_pipe_vs(&want)
}

pub fn snapshot_odirect(ctx: &Ctx) -> TResult {
    let len = 2 * PAGE; // O_DIRECT needs aligned offset and length
    let s = setup(ctx, true, len)?;
    let path = s.f.path.clone().unwrap_or_default();
    let dfd = match open(&path, libc::O_RDWR | libc::O_DIRECT, 0) {
        Ok(fd) => fd,
        Err(libc::EINVAL) => skip!("open(O_DIRECT): EINVAL, filesystem does not support O_DIRECT"),
        Err(e) => fail!("open(O_DIRECT): {}", ename(e)),
    };
    let buf = Map::anon(len)?; // page aligned
    buf.store(0, &s.b);
    // SAFETY: buf is a live, aligned mapping of len bytes.
    let r = cvt(unsafe { libc::pwrite(dfd.raw(), buf.ptr().cast(), len, 0) });
    match r {
        Ok(n) if n == len => {}
        Err(libc::EINVAL) => skip!("O_DIRECT pwrite: EINVAL (alignment not accepted by this filesystem)"),
        other => fail!("O_DIRECT pwrite returned {other:?}"),
    }
    let rbuf = Map::anon(len)?;
    // SAFETY: rbuf is a live, aligned, writable mapping of len bytes.
    let r = cvt(unsafe { libc::pread(dfd.raw(), rbuf.ptr().cast(), len, 0) });
    ensure!(r == Ok(len), "O_DIRECT pread returned {r:?}");
    expect_bytes("file via O_DIRECT read", &rbuf.load(0, len), &s.b, None)?;
    // A stale page cache after the direct write would be a coherency bug.
    s.check_file(&s.b, "O_DIRECT write (buffered view)")?;
    s.check_pipe()
}

/// A writer through GUP: an `O_DIRECT` read from another file into a
/// shared mapping of the spliced range. The kernel pins the mapping's
/// pages for writing (`pin_user_pages`, `FOLL_WRITE`) and the device's
/// data lands in the page cache without a `write()`: the pin must fault
/// (`page_mkwrite`, where a hold is broken) and never reach the pipe's
/// folio. `dirty_before`: the mapping's PTEs are dirty and writable before
/// the splice, so GUP-fast would pin without a fault unless taking the
/// hold write-protected them.
fn direct_read_into_mapping(ctx: &Ctx, dirty_before: bool) -> TResult {
    let len = 2 * PAGE; // O_DIRECT: aligned offset and length
    // The source of the direct read: B on disk.
    let src = tmpfile(&ctx.dir)?;
    pwrite_all(src.fd.raw(), &pattern(SEED_B, 0, len), 0)?;
    fsync(src.fd.raw())?;
    let Some(direct) = reopen_direct(src.fd.raw(), libc::O_RDONLY)? else {
        skip!("open(O_DIRECT): EINVAL, no O_DIRECT on this file system");
    };
    let (s, m) = setup_mapped(ctx, len, true, dirty_before)?;
    let breaks = counter("breaks");
    // SAFETY: m is a live, page-aligned, writable mapping of len bytes.
    let r = cvt(unsafe { libc::pread(direct.raw(), m.ptr().cast(), len, 0) });
    match r {
        Ok(n) if n == len => {}
        Err(libc::EINVAL) => skip!("O_DIRECT pread: EINVAL (alignment not accepted here)"),
        other => fail!("O_DIRECT pread into the mapping returned {other:?}"),
    }
    if let (Some(before), Some(after)) = (breaks, counter("breaks")) {
        ctx.note(format!("{} breaks by the pinned read", after - before));
    }
    expect_bytes("mapping after the direct read", &m.load(0, len), &s.b, Some(("the old content", &s.a)))?;
    s.check_file(&s.b, "an O_DIRECT read into a shared mapping")?;
    s.check_pipe()
}

pub fn snapshot_direct_read_into_mapping(ctx: &Ctx) -> TResult {
    direct_read_into_mapping(ctx, false)
}

pub fn snapshot_direct_read_into_dirty_mapping(ctx: &Ctx) -> TResult {
    direct_read_into_mapping(ctx, true)
}

/// Pipe -> file by `splice()`, a server's receive path where it splices
/// uploads socket -> pipe -> file (netatalk's; Samba has the same code in
/// `sys_recvfile()`, switched off, and reads and writes instead):
/// `iter_file_splice_write()`, the file system's buffered write under the
/// pipe's lock.
fn splice_into_file(ctx: &Ctx, held: bool) -> TResult {
    writer_path(ctx, held, "splice pipe -> file", |s| {
        let q = pipe()?;
        write_all(q.w.raw(), &s.b)?;
        splice_pipe_into(q.r.raw(), s.fd(), 0, s.len, 0)
    })
}

pub fn snapshot_splice_into_file(ctx: &Ctx) -> TResult {
    splice_into_file(ctx, true)
}
pub fn plain_splice_into_file(ctx: &Ctx) -> TResult {
    splice_into_file(ctx, false)
}

/// `copy_file_range()` of B from another file over the spliced range: ext4
/// and tmpfs copy through splice (a buffered write), xfs with `reflink=1`
/// shares the source's blocks (`remap_file_range()`, which writes back and
/// takes the old pages out of the page cache: its plain control skips, as
/// the pipe keeps folios that left the cache unchanged).
fn copy_file_range_over(ctx: &Ctx, held: bool) -> TResult {
    writer_path(ctx, held, "copy_file_range", |s| {
        let src = tmpfile(&ctx.dir)?;
        pwrite_all(src.fd.raw(), &s.b, 0)?;
        let (mut off_in, mut off_out) = (0i64, 0i64);
        while (off_out as usize) < s.len {
            let left = s.len - off_out as usize;
            // SAFETY: both descriptors are ours; the offsets are locals.
            let n = cvt(unsafe { libc::copy_file_range(src.fd.raw(), &mut off_in, s.fd(), &mut off_out, left, 0) });
            match n {
                Ok(0) => fail!("copy_file_range returned 0 at {off_out} of {}", s.len),
                Ok(_) => {}
                Err(e) => fail!("copy_file_range at {off_out}: {}", ename(e)),
            }
        }
        Ok(())
    })
}

pub fn snapshot_copy_file_range(ctx: &Ctx) -> TResult {
    copy_file_range_over(ctx, true)
}
pub fn plain_copy_file_range(ctx: &Ctx) -> TResult {
    copy_file_range_over(ctx, false)
}

/// A write through `/proc/self/mem` (a debugger's poke) into a shared
/// mapping of the spliced range: `get_user_pages_remote()` with
/// `FOLL_FORCE | FOLL_WRITE` and a copy into the page it returns, no
/// `write()`. `dirty_before`: the mapping was stored to before the splice,
/// so its PTEs were dirty and writable and GUP would take the page without
/// a fault unless the hold write-protected them.
fn proc_mem_write(ctx: &Ctx, held: bool, dirty_before: bool) -> TResult {
    let what = "a write through /proc/self/mem";
    let (s, m) = setup_mapped(ctx, LEN, held, dirty_before)?;
    let mem = ck(open("/proc/self/mem", libc::O_RDWR, 0), "open(/proc/self/mem)")?;
    // The file's offset is the address: the mapping, s.len bytes long.
    pwrite_all(mem.raw(), &s.b, m.ptr() as usize)?;
    expect_bytes("mapping after the write through /proc/self/mem", &m.load(0, s.len), &s.b, Some(("the old content", &s.a)))?;
    s.check_pipe_after(held, what)
}

pub fn snapshot_proc_mem_write(ctx: &Ctx) -> TResult {
    proc_mem_write(ctx, true, false)
}
pub fn snapshot_proc_mem_write_dirty_mapping(ctx: &Ctx) -> TResult {
    proc_mem_write(ctx, true, true)
}
pub fn plain_proc_mem_write(ctx: &Ctx) -> TResult {
    proc_mem_write(ctx, false, false)
}

pub fn snapshot_unlink_close(ctx: &Ctx) -> TResult {
    let Snap { mut f, p, a, b, .. } = setup(ctx, true, LEN)?;
    let path = f.path.take().unwrap_or_default();
    let c = cstr(&path);
    // SAFETY: valid C string.
    ensure!(unsafe { libc::unlink(c.as_ptr()) } == 0, "unlink: {}", ename(errno()));
    // Last descriptor closed: the inode is evicted with the pipe still full.
    drop(f);
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and buffer.
    let r = unsafe { libc::stat(c.as_ptr(), &mut st) };
    ensure!(r != 0 && errno() == libc::ENOENT, "file still exists after unlink");
    churn_page_cache(ctx)?;
    check_pipe_a(&p, &a, &b)
}

pub fn snapshot_io_uring_write(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    let mut ring = uring::setup_or_skip(4)?;
    let sqe = uring::Sqe {
        opcode: uring::IORING_OP_WRITE,
        fd: s.fd(),
        off: 0,
        addr: s.b.as_ptr() as u64,
        len: s.len as u32,
        user_data: 0x5eed,
        ..Default::default()
    };
    let res = ring.submit_and_wait(sqe)?;
    ensure!(res == s.len as i32, "IORING_OP_WRITE completed with {res}");
    s.check_file(&s.b, "IORING_OP_WRITE")?;
    s.check_pipe()
}

pub fn snapshot_tee(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    let p2 = pipe()?;
    let n = tee_raw(s.p.r.raw(), p2.w.raw(), s.len, 0);
    ensure!(n == Ok(s.len), "tee returned {n:?}, expected Ok({})", s.len);
    pwrite_all(s.fd(), &s.b, 0)?;
    s.check_file(&s.b, "pwrite")?;
    check_pipe_a(&p2, &s.a, &s.b).map_err(|e| TestErr::Fail(format!("tee copy: {e}")))?;
    s.check_pipe()
}

pub fn snapshot_pipe_to_pipe(ctx: &Ctx) -> TResult {
    let s = setup(ctx, false, LEN)?;
    let p2 = pipe()?;
    let n = splice_raw(s.p.r.raw(), None, p2.w.raw(), None, s.len, 0);
    ensure!(n == Ok(s.len), "splice pipe->pipe returned {n:?}, expected Ok({})", s.len);
    ensure!(pipe_queued(s.p.r.raw())? == 0, "first pipe not empty after moving its buffers");
    pwrite_all(s.fd(), &s.b, 0)?;
    s.check_file(&s.b, "pwrite")?;
    check_pipe_a(&p2, &s.a, &s.b)
}

/// Restores /proc/sys/fs/pipe-max-size on drop.
struct PipeMaxGuard(Option<String>);

impl Drop for PipeMaxGuard {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write("/proc/sys/fs/pipe-max-size", old);
        }
    }
}

fn set_pipe_size(ctx: &Ctx, fd: i32, size: usize) -> TResult<PipeMaxGuard> {
    let mut guard = PipeMaxGuard(None);
    // SAFETY: F_SETPIPE_SZ takes an int argument.
    let mut r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size as libc::c_int) };
    if r < 0 && errno() == libc::EPERM {
        let old = std::fs::read_to_string("/proc/sys/fs/pipe-max-size").unwrap_or_default();
        ctx.note(format!("raising pipe-max-size from {} to {size}", old.trim()));
        ensure!(
            std::fs::write("/proc/sys/fs/pipe-max-size", size.to_string()).is_ok(),
            "cannot raise /proc/sys/fs/pipe-max-size (not root?)"
        );
        guard.0 = Some(old);
        // SAFETY: as above.
        r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size as libc::c_int) };
    }
    ensure!(r >= 0, "F_SETPIPE_SZ({size}): {}", ename(errno()));
    ensure!(r as usize >= size, "F_SETPIPE_SZ gave {r} bytes, wanted {size}");
    Ok(guard)
}

pub fn large_8mib(ctx: &Ctx) -> TResult {
    const BIG: usize = 8 << 20;
    let p = pipe()?;
    let _guard = set_pipe_size(ctx, p.w.raw(), BIG)?;
    let f = tmpfile(&ctx.dir)?;
    let a = pattern(0x21, 0, BIG);
    let b = pattern(0x99, 0, BIG);
    pwrite_all(f.fd.raw(), &a, 0)?;
    let (mut off, mut calls) = (0i64, 0);
    while (off as usize) < BIG {
        let want = BIG - off as usize;
        let at = off;
        let n = ck(
            splice_raw(f.fd.raw(), Some(&mut off), p.w.raw(), None, want, stable()),
            &format!("splice({want} @{at})"),
        )?;
        ensure!(n > 0, "splice returned 0 at offset {at} of {BIG}");
        calls += 1;
    }
    ctx.note(format!("8 MiB spliced in {calls} call(s)"));
    ensure!(pipe_queued(p.r.raw())? == BIG, "pipe holds {} bytes, expected {BIG}", pipe_queued(p.r.raw())?);
    pwrite_all(f.fd.raw(), &b, 0)?;
    expect_bytes("file after overwrite", &pread_vec(f.fd.raw(), BIG, 0)?, &b, None)?;
    check_pipe_a(&p, &a, &b)
}

/// A tracer of tracefs (`function`, `function_graph`) on the named
/// functions, until dropped. Each start and stop patches kernel text
/// (every fentry site of the functions, and the graph tracer's
/// tracepoints): in a TCG guest with two vCPUs a vCPU has hit a patching
/// `int3` that was no longer registered (an "Oops: int3" at
/// `__filemap_get_folio_mpol+0x5`, in `ttwu_do_activate` or, without the
/// module loaded, in `__schedule`), one in 10-30 starts; with one vCPU,
/// never in 400 (tests/scripts/tracer-starts.sh). So the tests start as
/// few as they need, and not in a TCG guest with more than one vCPU.
struct FunctionTracer {
    root: &'static str,
}

/// tracefs, mounted if it is not yet.
fn tracefs() -> TResult<&'static str> {
    const ROOT: &str = "/sys/kernel/tracing";
    if !std::path::Path::new(&format!("{ROOT}/current_tracer")).exists() {
        let dir = std::ffi::CString::new(ROOT).unwrap();
        // SAFETY: NUL-terminated strings that live across the call.
        let r = unsafe { libc::mount(c"nodev".as_ptr(), dir.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
        ensure!(r == 0, "mount tracefs on {ROOT}: {}", ename(errno()));
    }
    Ok(ROOT)
}

/// Writes `what` to tracefs's `file` (appends where `append`).
fn tracefs_write(root: &str, file: &str, what: &str, append: bool) -> TResult {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .append(append)
        .truncate(!append)
        .open(format!("{root}/{file}"))
        .and_then(|mut f| f.write_all(what.as_bytes()))
        .map_err(|e| TestErr::Fail(format!("{root}/{file} <- {what:?}: {e}")))
}

/// What a tracing tool saw, for the test to check.
trait Tracing {
    fn report(&self) -> TResult<String>;
}

impl FunctionTracer {
    fn on(tracer: &str, functions: &[&str]) -> TResult<Self> {
        let root = tracefs()?;
        let this = Self { root };
        tracefs_write(root, "trace", "", false)?;
        tracefs_write(root, "set_ftrace_filter", &functions.join(" "), false)?;
        tracefs_write(root, "current_tracer", tracer, false)?;
        tracefs_write(root, "tracing_on", "1", false)?;
        Ok(this)
    }
}

impl Tracing for FunctionTracer {
    /// The trace.
    fn report(&self) -> TResult<String> {
        std::fs::read_to_string(format!("{}/trace", self.root)).map_err(|e| TestErr::Fail(format!("read trace: {e}")))
    }
}

impl Drop for FunctionTracer {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("{}/current_tracer", self.root), "nop");
        let _ = std::fs::write(format!("{}/set_ftrace_filter", self.root), "");
        let _ = std::fs::write(format!("{}/trace", self.root), "");
    }
}

/// Another ftrace user on the five functions the module can redirect with
/// direct calls (the writers' `__filemap_get_folio_mpol`, `do_page_mkwrite`
/// and the splice entry points): ftrace then reaches the module's
/// trampolines from its own register-saving caller rather than straight
/// from the fentry call. The stable splice, a pwrite and stores through a
/// shared mapping must still leave the pipe's snapshot alone.
pub fn snapshot_beside_function_tracer(ctx: &Ctx) -> TResult {
    let (s, trace) = writes_under_tracer(ctx, || FunctionTracer::on("function", &direct_names()))?;
    for f in direct_names() {
        ensure!(trace.contains(f), "the function tracer saw no call of {f}: the test did not share the functions");
    }
    s.check_pipe()
}

/// A stable splice, then a pwrite and stores through a shared mapping into
/// its pages, under the tracing that `start` starts on the five functions
/// that can be direct calls: the snapshot (pipe unread) and its report.
fn writes_under_tracer<T: Tracing>(ctx: &Ctx, start: impl FnOnce() -> TResult<T>) -> TResult<(Snap, String)> {
    // The redirects are per function, not per file system (tmpfs passes
    // neither), and each start of a tracer is a risk to a TCG guest
    // (FunctionTracer): one mount, the harness's default ext4.
    let default_ext4 = std::path::Path::new(&ctx.dir).file_name().is_some_and(|n| n == "ext4");
    if crate::detect_fs(&ctx.dir) != "ext4" || !default_ext4 || copies_at_splice(&ctx.dir) {
        return Err(TestErr::Skip("runs on the default ext4 mount (a directory named ext4) only".into()));
    }
    // SAFETY: no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if std::env::var("SS_ACCEL").as_deref() == Ok("tcg") && cpus > 1 {
        return Err(TestErr::Skip(format!(
            "a TCG guest with {cpus} vCPUs, where starting a tracer kills the guest now and then \
             (QEMU, also without the module); make check runs this in a one-vCPU guest"
        )));
    }
    let tracer = start()?;
    let s = setup(ctx, false, LEN)?;
    pwrite_all(s.fd(), &s.b[..PAGE], 0)?;
    let m = Map::shared_file(s.fd(), s.len)?;
    m.store(PAGE, &s.b[PAGE..]);
    s.check_file(&s.b, "a pwrite and stores through a shared mmap")?;
    let report = tracer.report()?;
    Ok((s, report))
}

/// The functions the module can redirect with ftrace direct calls
/// (`direct_calls=1`), with how deep a call of each nests in a call of
/// itself in a stable splice and the writes after it: once where the
/// replacement calls the original inside the redirected call, never for
/// `do_splice`, whose trampoline only refuses a stable splice from a pipe.
const DIRECT: [(&str, usize); 5] = [
    ("__filemap_get_folio_mpol", 1),
    ("do_page_mkwrite", 1),
    ("__x64_sys_splice", 1),
    ("do_splice", 0),
    ("do_splice_read", 1),
];

fn direct_names() -> Vec<&'static str> {
    DIRECT.iter().map(|&(f, _)| f).collect()
}

/// The function graph tracer on the five functions that can be direct
/// calls: it replaces each traced call's return address (as kretprobes and
/// fprobes do), so a trampoline cannot tell the replacement's own call of
/// the original by its return address. Before the mark in the arguments
/// each redirected writer call recursed into the replacement until the
/// tracer's return stack was full: 80 deep per pwrite, and a pwrite that
/// added a folio overflowed the kernel stack (a panic). The snapshot must
/// hold and each call nest in itself exactly as [`DIRECT`] says
/// (writes_under_tracer runs only where holds are taken, so every one is
/// redirected).
pub fn snapshot_beside_function_graph(ctx: &Ctx) -> TResult {
    let (s, trace) = writes_under_tracer(ctx, || FunctionTracer::on("function_graph", &direct_names()))?;
    let mut wrong = Vec::new();
    for (f, want) in DIRECT {
        match graph_self_nesting(&trace, f).into_iter().max() {
            None => wrong.push(format!("no call of {f} traced (the test did not share the function)")),
            Some(d) if d == want => {}
            Some(d) => wrong.push(format!("{f} nested {d} deep in itself, want {want}")),
        }
    }
    ensure!(
        wrong.is_empty(),
        "under the function graph tracer: {} (1: the replacement's call of the original, once)",
        wrong.join(", ")
    );
    s.check_pipe()
}

/// Return probes (tracefs `kprobe_events`, `r:`) on the named functions,
/// until dropped: a kretprobe on a function ftrace can trace goes through
/// ftrace too, and replaces the traced call's return address at entry, as
/// the graph tracer does.
struct KretProbes {
    root: &'static str,
    events: Vec<String>,
}

impl KretProbes {
    fn on(functions: &[&str]) -> TResult<Self> {
        let root = tracefs()?;
        let mut this = Self { root, events: Vec::new() };
        for (i, f) in functions.iter().enumerate() {
            let event = format!("ss_ret_{i}");
            tracefs_write(root, "kprobe_events", &format!("r:{event} {f}\n"), true)?;
            this.events.push(event.clone());
            tracefs_write(root, &format!("events/kprobes/{event}/enable"), "1", false)?;
        }
        Ok(this)
    }
}

impl Tracing for KretProbes {
    /// `kprobe_profile`: one line per probe, its event, hits and misses.
    fn report(&self) -> TResult<String> {
        std::fs::read_to_string(format!("{}/kprobe_profile", self.root))
            .map_err(|e| TestErr::Fail(format!("read kprobe_profile: {e}")))
    }
}

impl Drop for KretProbes {
    fn drop(&mut self) {
        for event in &self.events {
            let _ = tracefs_write(self.root, &format!("events/kprobes/{event}/enable"), "0", false);
            let _ = tracefs_write(self.root, "kprobe_events", &format!("-:{event}\n"), true);
        }
    }
}

/// Return probes (kretprobes) on the five functions that can be direct
/// calls:
/// each probe replaces the probed call's return address when the call
/// enters, as the function graph tracer does. Were the replacement's own
/// call of the original known by its return address, every redirected call
/// would recurse until the probe ran out of instances, counted as missed.
/// The snapshot must hold, both probes fire, none misses.
pub fn snapshot_beside_kretprobes(ctx: &Ctx) -> TResult {
    let (s, profile) = writes_under_tracer(ctx, || KretProbes::on(&direct_names()))?;
    let mut wrong = Vec::new();
    for (i, f) in direct_names().into_iter().enumerate() {
        let event = format!("ss_ret_{i}");
        let line = profile.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|w| w.first() == Some(&event.as_str()));
        match line.as_deref() {
            Some([_, hits, missed]) if *hits != "0" && *missed == "0" => {}
            Some([_, hits, missed]) => wrong.push(format!("{f}: {hits} returns probed, {missed} missed")),
            _ => wrong.push(format!("{f}: no line for {event} in kprobe_profile")),
        }
    }
    ensure!(
        wrong.is_empty(),
        "under kretprobes: {} (want some returns probed, none missed)\nkprobe_profile:\n{profile}",
        wrong.join(", ")
    );
    s.check_pipe()
}

/// How deep each call of `f` in a `function_graph` trace sits within calls
/// of `f` itself: 0 for a call no other call of `f` encloses. The tracer
/// starts a line with its CPU (`  1)`) and indents a call by two spaces per
/// level of traced calls after the `|`; each CPU's calls nest on their own.
fn graph_self_nesting(trace: &str, f: &str) -> Vec<usize> {
    let mut open: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    let mut nesting = Vec::new();
    for l in trace.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, r)) = l.split_once('|') else { continue };
        let body = r.trim_start();
        let Some((name, _)) = body.split_once("()").filter(|_| !body.starts_with('}')) else { continue };
        let depth = (r.len() - body.len()).saturating_sub(2) / 2;
        let cpu = head.split(')').next().unwrap_or("").trim();
        let calls = open.entry(cpu).or_default();
        calls.truncate(depth);
        if name == f {
            nesting.push(calls.iter().filter(|&&c| c == f).count());
        }
        calls.push(name);
    }
    nesting
}

/// An overlayfs mount whose layers are directories of the scratch mount,
/// unmounted and removed on drop. None where the kernel has no overlayfs
/// (the project's test kernel is built without it; Debian's has it as a
/// module).
fn overlay(dir: &str) -> TResult<Option<TestMount>> {
    let base = format!("{dir}/ovl-{}", std::process::id());
    for d in ["lower", "upper", "work"] {
        std::fs::create_dir_all(format!("{base}/{d}")).map_err(|e| TestErr::Fail(format!("mkdir {base}/{d}: {e}")))?;
    }
    let opts = format!("lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work", base);
    let mount = || TestMount::mount("overlay", "overlay", &opts, format!("{base}/merged"), base.clone());
    let mut r = mount()?;
    if r.as_ref().err() == Some(&libc::ENODEV) {
        let _ = std::process::Command::new("modprobe").arg("overlay").status();
        r = mount()?;
    }
    match r {
        Ok(m) => Ok(Some(m)),
        Err(libc::ENODEV) => {
            let _ = std::fs::remove_dir_all(&base);
            Ok(None)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&base);
            fail!("mount overlay on {base}/merged: {}", ename(e))
        }
    }
}

/// A file of an overlayfs whose upper layer is on this mount: overlayfs
/// splices from its backing file through `vfs_splice_read()`, so the
/// backing file's buffers are made stable by a `do_splice_read` nested in
/// the overlay's (zero copy where the mount holds), and the overlay's own
/// call leaves them as they are. A write through the overlay after the
/// splice must not reach the pipe; a plain splice, the control, shows it.
pub fn snapshot_through_overlayfs(ctx: &Ctx) -> TResult {
    let Some(ovl) = overlay(&ctx.dir)? else {
        skip!("the kernel has no overlayfs");
    };
    let len = 16 * PAGE;
    let path = format!("{}/file", ovl.target);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| TestErr::Fail(format!("create {path}: {e}")))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    for stable_call in [false, true] {
        let (a, b) = (pattern(SEED_A, 0, len), pattern(SEED_B, 0, len));
        pwrite_all(fd, &a, 0)?;
        settle_page_cache(fd, len)?;
        let (zero0, copied0) = stable_bytes();
        let p = pipe()?;
        // SAFETY: fcntl on our own pipe descriptor.
        unsafe { libc::fcntl(p.w.raw(), libc::F_SETPIPE_SZ, len as i32) };
        splice_exact(fd, 0, p.w.raw(), len, stable_if(stable_call))?;
        let (zero1, copied1) = stable_bytes();
        let (zero, copied) = (zero1 - zero0, copied1 - copied0);
        pwrite_all(fd, &b, 0)?;
        expect_bytes("file after the write through the overlay", &pread_vec(fd, len, 0)?, &b, None)?;
        let got = read_pipe(&p.r, len)?;
        if !stable_call {
            ensure!(got != a, "plain splice through the overlay: the write after it did not show (the control cannot see a leak)");
            continue;
        }
        ctx.note(format!("stable splice through overlayfs: {zero} bytes zero copy, {copied} copied"));
        ensure!(zero + copied == len as u64, "stable splice through the overlay: {zero} bytes zero copy + {copied} copied, spliced {len}");
        ensure!(
            copies_at_splice(&ctx.dir) || zero == len as u64,
            "stable splice through the overlay on a mount that holds: only {zero} of {len} bytes zero copy ({copied} copied)"
        );
        expect_bytes("pipe", &got, &a, Some(("file's new content (the change showed through)", &b)))?;
    }
    Ok(())
}
