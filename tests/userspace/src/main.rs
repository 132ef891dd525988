//! stable-splice-tests: user-space tests for SPLICE_F_STABLE.
//!
//! Each case runs in its own forked process group with a timeout, so a
//! panic, a crash or a kernel-side hang of one case is reported as `not ok`
//! and the run moves on. Output is TAP-like, one line per case, and ends
//! with `# summary: P passed, F failed, S skipped`.

#[macro_use]
mod macros;
mod cases;
mod uring;
mod util;

use cases::{Case, Ctx, Needs};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use util::TestErr;

const CASE_TIMEOUT: Duration = Duration::from_secs(20);

struct Opts {
    dir: String,
    label: Option<String>,
    expect_module: bool,
    list: bool,
    filter: Option<String>,
    stress_secs: u64,
    /// Run the end-to-end cases (real servers) instead of the others.
    e2e: bool,
}

const USAGE: &str = "usage: stable-splice-tests [--dir DIR] [--fs-label LABEL] \
[--expect-module | --expect-no-module] [--list] [--filter SUBSTR[,SUBSTR...]] [--stress-secs N] [--e2e]";

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        dir: "/tmp".into(),
        label: None,
        expect_module: true,
        list: false,
        filter: None,
        stress_secs: 3,
        e2e: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |k: &str| {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{k} needs a value"))
        };
        match key.as_str() {
            "--dir" => o.dir = value("--dir")?,
            "--fs-label" => o.label = Some(value("--fs-label")?),
            "--filter" => o.filter = Some(value("--filter")?),
            "--stress-secs" => {
                o.stress_secs = value("--stress-secs")?.parse().map_err(|_| "bad --stress-secs")?
            }
            "--expect-module" => o.expect_module = true,
            "--expect-no-module" => o.expect_module = false,
            "--list" => o.list = true,
            "--e2e" => o.e2e = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// Default label from the filesystem type of --dir.
pub(crate) fn detect_fs(dir: &str) -> String {
    let c = util::cstr(dir);
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path, st a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "fs".into();
    }
    match st.f_type as u64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x0102_1994 => "tmpfs",
        0x9123_683E => "btrfs",
        _ => "fs",
    }
    .into()
}

enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".into()
    }
}

/// Body of the forked case process.
fn run_in_child(case: &Case, opts: &Opts, out: i32) -> ! {
    let ctx = Ctx {
        dir: opts.dir.clone(),
        expect_module: opts.expect_module,
        stress_secs: opts.stress_secs,
        out,
    };
    let res = catch_unwind(AssertUnwindSafe(|| (case.func)(&ctx)));
    let line = match res {
        Ok(Ok(())) => "R P".to_string(),
        Ok(Err(TestErr::Fail(m))) => format!("R F {m}"),
        Ok(Err(TestErr::Skip(m))) => format!("R S {m}"),
        Err(p) => format!("R F panic: {}", panic_text(&*p)),
    };
    let line = line.replace('\n', " ") + "\n";
    // SAFETY: out is our end of the result pipe.
    unsafe {
        libc::write(out, line.as_ptr().cast(), line.len());
        libc::_exit(0)
    }
}

/// Fork the case into its own process group, relay its notes, enforce the
/// timeout. A hung child is SIGKILLed with its whole group.
fn run_case(case: &Case, full: &str, opts: &Opts) -> Verdict {
    // Long cases (stress, servers end to end) get the base twice over: under
    // TCG on a loaded 2-core host an nginx case took over 30 s to finish.
    let timeout = if case.long { 2 * CASE_TIMEOUT + Duration::from_secs(opts.stress_secs) } else { CASE_TIMEOUT };
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid int[2].
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Verdict::Fail(format!("runner: pipe2: {}", util::ename(util::errno())));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let _ = std::io::stdout().flush();
    // SAFETY: the runner is single-threaded; the child runs the case and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Verdict::Fail(format!("runner: fork: {}", util::ename(util::errno())));
    }
    if pid == 0 {
        // SAFETY: plain syscalls in the fresh child.
        unsafe {
            libc::setpgid(0, 0);
            libc::close(rd);
        }
        run_in_child(case, opts, wr);
    }
    // SAFETY: also set the group from the parent to close the race with kill().
    unsafe {
        libc::setpgid(pid, pid);
        libc::close(wr);
    }
    let _ = util::set_nonblock(rd, true);

    let deadline = Instant::now() + timeout;
    let mut buf: Vec<u8> = Vec::new();
    let mut result: Option<String> = None;
    let mut status: Option<i32> = None;
    let mut eof = false;
    let drain = |buf: &mut Vec<u8>, eof: &mut bool, result: &mut Option<String>| {
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: chunk is a valid buffer; rd is non-blocking.
            let n = unsafe { libc::read(rd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n == 0 {
                *eof = true;
            }
            if n <= 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n as usize]);
        }
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if let Some(n) = line.strip_prefix("N ") {
                println!("#   {full}: {n}");
            } else if let Some(r) = line.strip_prefix("R ") {
                *result = Some(r.to_string());
            }
        }
    };
    let timed_out = loop {
        if !eof {
            util::poll_in(rd, 100);
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
        drain(&mut buf, &mut eof, &mut result);
        let mut st = 0;
        // SAFETY: st is a valid out-parameter; pid is our child.
        if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == pid {
            status = Some(st);
            drain(&mut buf, &mut eof, &mut result);
            break false;
        }
        if Instant::now() >= deadline {
            break true;
        }
    };
    // Kill the whole group: grandchildren of a finished case, or a hung case.
    // SAFETY: the group id is our child's pid; only its descendants are in it.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let mut unreaped = false;
    if timed_out {
        // SAFETY: as above, for the case process itself.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // A task stuck in D state cannot die; do not wait for it forever.
        unreaped = util::wait_child(pid, Duration::from_secs(5)).is_none();
    }
    // SAFETY: rd is ours and no longer used.
    unsafe { libc::close(rd) };

    if timed_out {
        let mut m = format!("timeout after {} s", timeout.as_secs());
        if unreaped {
            m += &format!(" (case process {pid} did not die after SIGKILL: stuck in the kernel?)");
        }
        if let Some(r) = result {
            m += &format!(" (case had reported: {r})");
        }
        return Verdict::Fail(m);
    }
    let st = status.unwrap_or(0);
    match result {
        Some(r) if r == "P" => {
            if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("case process ended abnormally: {}", util::describe_status(st)))
            }
        }
        Some(r) if r.starts_with("S ") => Verdict::Skip(r[2..].to_string()),
        Some(r) if r.starts_with("F ") => Verdict::Fail(r[2..].to_string()),
        Some(r) => Verdict::Fail(format!("garbled result {r:?}")),
        None => Verdict::Fail(format!("case process died without a result: {}", util::describe_status(st))),
    }
}

/// After every case (all its processes are gone, so are its pipes): the
/// module holds nothing any more, and `sync()` completes (no folio left in
/// writeback). Returns what was left behind, if anything.
fn left_behind() -> Option<String> {
    let mut what = Vec::new();
    if util::counters_present() {
        let idle = || {
            util::counter("calls_in_flight").unwrap_or(0) == 0
        };
        // Holds end when nobody but the page cache references their folios
        // (reaped every 100 ms; LRU batches drained if they keep one).
        if !util::wait_until(Duration::from_secs(2), idle) || !util::wait_holds_released(Duration::from_secs(2)) {
            what.push(format!(
                "calls_in_flight={:?} holds_active={:?} (held: {})",
                util::counter("calls_in_flight"),
                util::counter("holds_active"),
                util::holds_report(12),
            ));
        }
        if util::counter("break_failures").unwrap_or(0) != 0 {
            what.push(format!("break_failures={:?}", util::counter("break_failures")));
        }
    }
    // In a child process, not a thread: the runner forks every case, and a
    // thread still finishing at a fork (after its sync() returned) could
    // hold a lock that the forked case then finds held forever. A case's
    // failing_thread hung that way on a std mutex, 20 s, now and then.
    // SAFETY: the runner is single-threaded; the child only syncs and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain syscalls in the fresh child.
        unsafe {
            libc::sync();
            libc::_exit(0)
        }
    }
    if pid < 0 {
        what.push(format!("fork for sync(): {}", util::ename(util::errno())));
    } else if util::wait_child(pid, Duration::from_secs(20)).is_none() {
        what.push("sync() did not complete within 20 s".into());
    }
    (!what.is_empty()).then(|| what.join("; "))
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let label = opts.label.clone().unwrap_or_else(|| detect_fs(&opts.dir));
    let mut all = cases::all();
    if std::env::var("STABLE_SPLICE_TESTS_SELFTEST").as_deref() == Ok("1") {
        all.extend(cases::runner_selftest());
    }
    let matches = |c: &Case| {
        let full = format!("{label}/{}", c.name);
        c.name.contains("e2e_") == opts.e2e && opts.filter.as_deref().is_none_or(|f| f.split(',').any(|p| full.contains(p)))
    };

    if opts.list {
        for c in all.iter().filter(|c| matches(c)) {
            println!("{label}/{}  # needs: {}", c.name, c.needs.label());
        }
        return;
    }

    let selected: Vec<&Case> = all
        .iter()
        .filter(|c| match c.needs {
            Needs::Any => true,
            Needs::Module => opts.expect_module,
            Needs::NoModule => !opts.expect_module,
        })
        .filter(|c| matches(c))
        .collect();

    // SAFETY: uname fills a zeroed utsname.
    let release = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned()
    };
    println!(
        "# stable-splice-tests: kernel {release}, dir {}, fs {label}, {}",
        opts.dir,
        if opts.expect_module { "expecting the module" } else { "expecting NO module" }
    );
    if opts.expect_module && !util::counters_present() && std::path::Path::new("/sys/module/stable_splice").exists() {
        // Module loaded but debugfs not mounted (minimal VM init): mount it.
        let (src, dst) = (util::cstr("debugfs"), util::cstr("/sys/kernel/debug"));
        // SAFETY: valid C strings; no mount data.
        let r = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
        println!("# note: mounted debugfs for the counters: {}", if r == 0 { "ok".into() } else { util::ename(util::errno()) });
    }
    if opts.expect_module && !util::counters_present() {
        println!("# note: {} missing (module not loaded or debugfs not mounted)", util::COUNTER_DIR);
    }
    if let Some(f) = util::stable_override() {
        println!("# note: STABLE_SPLICE_TESTS_FLAG: cases pass flags {f:#x} instead of SPLICE_F_STABLE");
    }
    println!("1..{}", selected.len());

    let (mut pass, mut failed, mut skipped) = (0, 0, 0);
    // Where the suite's time goes (make check must stay short): each case's
    // wall time, the slowest listed with the summary.
    let mut times: Vec<(Duration, String)> = Vec::new();
    let suite_start = Instant::now();
    // The checks after each case (holds released, sync) are part of it.
    let mut after_cases = Duration::ZERO;
    for (i, c) in selected.iter().enumerate() {
        let n = i + 1;
        let full = format!("{label}/{}", c.name);
        let started = Instant::now();
        let mut verdict = run_case(c, &full, &opts);
        if opts.expect_module && !matches!(verdict, Verdict::Skip(_)) {
            let checked = Instant::now();
            let left = left_behind();
            after_cases += checked.elapsed();
            if let Some(w) = left {
                verdict = Verdict::Fail(match verdict {
                    Verdict::Fail(r) => format!("{r}; and left behind: {w}"),
                    _ => format!("left behind: {w}"),
                });
            }
        }
        match verdict {
            Verdict::Pass => {
                pass += 1;
                println!("ok {n} - {full}");
            }
            Verdict::Skip(r) => {
                skipped += 1;
                println!("ok {n} - {full} # SKIP {r}");
            }
            Verdict::Fail(r) => {
                failed += 1;
                println!("not ok {n} - {full} # {r}");
            }
        }
        // Every case's wall time, for whoever shortens make check next.
        let took = started.elapsed();
        println!("#   time: {:.1} s", took.as_secs_f64());
        times.push((took, full));
        let _ = std::io::stdout().flush();
    }
    times.sort_by(|a, b| b.0.cmp(&a.0));
    let slowest: Vec<String> = times.iter().take(6).map(|(t, name)| format!("{name} {:.1}", t.as_secs_f64())).collect();
    println!(
        "# time: {:.0} s, of which {:.0} s checking what cases left behind; slowest (s): {}",
        suite_start.elapsed().as_secs_f64(),
        after_cases.as_secs_f64(),
        slowest.join(", ")
    );
    println!("# summary: {pass} passed, {failed} failed, {skipped} skipped");
    let _ = std::io::stdout().flush();
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
