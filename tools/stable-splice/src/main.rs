// SPDX-License-Identifier: GPL-2.0
//! `stable-splice`: run an unmodified program in the stable mode of the
//! stable_splice kernel module, show the module's state, probe for it.
//!
//!   stable-splice exec [--] CMD [ARGS...]   run CMD in the stable mode
//!   stable-splice status [FILE...]         module, policy, counters, and
//!                                          per file system (or FILE): zero
//!                                          copy or a copy, and why
//!   stable-splice probe [-q]               exit 0 iff SPLICE_F_STABLE works

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use stable_splice_uapi::{COPY_DAX, COPY_FS, COPY_JOURNALLED, DEVICE, FILE_INFO, GET_MODE, HELD, LARGE_FOLIOS, SET_MODE, SPLICE_F_STABLE};

/// Exit status when the mode cannot be set (CMD is not run), as env(1)
/// uses 125 for its own failures.
const EXIT_NO_MODE: u8 = 125;
const EXIT_CANNOT_RUN: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

const USAGE: &str = "\
usage: stable-splice exec [--] CMD [ARGS...]
       stable-splice status [FILE...]
       stable-splice probe [-q]

exec    run CMD with the stable mode on: every splice from a page-cache file
        into a pipe by CMD and every process and thread it starts (sendfile(),
        splice() with or without SPLICE_F_STABLE, IORING_OP_SPLICE) is a
        snapshot taken when the call returns. The mode survives exec. The exit
        status is CMD's; 127 if CMD is not found, 126 if it cannot be run,
        125 if the mode cannot be set (then CMD is not run).
status  whether the stable_splice module is loaded, its policy and counters,
        and for every mounted file system (or each FILE given) whether a
        stable splice from it is zero copy or copied at splice time, and why.
probe   exit 0 exactly when splice() accepts SPLICE_F_STABLE on this kernel.
";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let cmd = args.next();
    let rest: Vec<OsString> = args.collect();
    match cmd.as_ref().and_then(|c| c.to_str()) {
        Some("exec") => exec(rest),
        Some("status") => status(&rest),
        Some("probe") => probe(rest.iter().any(|a| a == "-q")),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn module_loaded() -> bool {
    std::path::Path::new("/sys/module/stable_splice").exists()
}

/// Why `/dev/stable_splice` cannot be used, and what to do about it.
fn device_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) if !module_loaded() => "the stable_splice kernel module is not loaded: load it with \
             `modprobe stable_splice` (after `make install`) or `insmod stable_splice.ko`"
            .to_string(),
        Some(libc::ENOENT) => format!(
            "the module is loaded but {DEVICE} does not exist: is devtmpfs mounted on /dev?"
        ),
        Some(libc::EACCES | libc::EPERM) => format!(
            "cannot open {DEVICE}: {e} (the module creates it with mode 0666; check who changed it)"
        ),
        _ => format!("cannot open {DEVICE}: {e}"),
    }
}

fn open_device() -> Result<File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(DEVICE)
        .map_err(|e| device_error(&e))
}

fn ioctl(dev: &File, cmd: libc::c_ulong, arg: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: the two ioctls take their argument by value and touch no
    // user memory.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), cmd, arg) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn exec(args: Vec<OsString>) -> ExitCode {
    let args: Vec<OsString> = match args.first() {
        Some(a) if a == "--" => args[1..].to_vec(),
        _ => args,
    };
    let Some(cmd) = args.first() else {
        eprintln!("stable-splice exec: no command given\n{USAGE}");
        return ExitCode::from(EXIT_NOT_FOUND);
    };
    let dev = match open_device() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("stable-splice: {msg}; not running {}", cmd.to_string_lossy());
            return ExitCode::from(EXIT_NO_MODE);
        }
    };
    if let Err(e) = ioctl(&dev, SET_MODE, 1) {
        let why = match e.raw_os_error() {
            Some(libc::ENOTTY) => "the loaded stable_splice module has no stable mode (too old?)".to_string(),
            Some(libc::ENODEV) => "the module is being unloaded".to_string(),
            _ => e.to_string(),
        };
        eprintln!("stable-splice: cannot enter the stable mode: {why}; not running {}", cmd.to_string_lossy());
        return ExitCode::from(EXIT_NO_MODE);
    }
    if ioctl(&dev, GET_MODE, 0).ok() != Some(1) {
        eprintln!("stable-splice: the stable mode did not stick; not running {}", cmd.to_string_lossy());
        return ExitCode::from(EXIT_NO_MODE);
    }
    drop(dev);
    let cargs: Vec<CString> = match args.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("stable-splice: an argument contains a NUL byte");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: `argv` is a NULL-terminated array of C strings that live
    // until execvp returns (it only returns on failure).
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    let e = io::Error::last_os_error();
    eprintln!("stable-splice: {}: {}", cmd.to_string_lossy(), match e.raw_os_error() {
        Some(libc::ENOENT) => "command not found".to_string(),
        _ => e.to_string(),
    });
    ExitCode::from(if e.raw_os_error() == Some(libc::ENOENT) { EXIT_NOT_FOUND } else { EXIT_CANNOT_RUN })
}

/// The module's `name value` lines.
fn read_counters(dev: &mut File) -> io::Result<Vec<(String, String)>> {
    let mut text = String::new();
    dev.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect())
}

fn bytes(n: i64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// What STABLE_SPLICE_FILE_INFO said, in words.
fn describe_kind(kind: i32) -> String {
    let large = if kind & LARGE_FOLIOS != 0 { "; large folios, held like small ones" } else { "" };
    match kind & !LARGE_FOLIOS {
        HELD => format!("zero copy: the pipe keeps the page-cache pages, a writer gets a copy in their place{large}"),
        COPY_JOURNALLED => "copied at splice time: ext4 journals this file's data (data=journal or chattr +j), \
             and journalled pages cannot be swapped for copies"
            .into(),
        COPY_FS => "copied at splice time: the module does not intercept this file system's writers".into(),
        COPY_DAX => "copied at splice time: DAX has no page cache to hold".into(),
        k => format!("unknown answer {k:#x} (tool older than the module?)"),
    }
}

fn file_kind(dev: &File, path: &std::path::Path) -> io::Result<i32> {
    let f = File::options().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOATIME).open(path)
        .or_else(|_| File::options().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK).open(path))?;
    ioctl(dev, FILE_INFO, f.as_raw_fd() as libc::c_ulong)
}

/// File systems that hold no file data of their own.
const PSEUDO_FS: &[&str] = &[
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "pstore",
    "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "rpc_pipefs",
    "nsfs", "ramfs", "selinuxfs", "rootfs",
];

/// A regular file on the file system mounted at `mnt` (same device, two
/// levels down at most, a few hundred entries looked at), to ask the
/// module about.
fn sample_file(mnt: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mnt).ok()?.dev();
    let mut dirs = std::collections::VecDeque::from([(mnt.to_path_buf(), 0)]);
    let mut budget = 256;
    while let Some((dir, depth)) = dirs.pop_front() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            budget -= 1;
            if budget == 0 {
                return None;
            }
            let Ok(md) = std::fs::symlink_metadata(entry.path()) else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.file_type().is_file() {
                return Some(entry.path());
            }
            if md.file_type().is_dir() && depth < 2 {
                dirs.push_back((entry.path(), depth + 1));
            }
        }
    }
    None
}

/// Per mounted file system (or per FILE): what a stable splice gets.
fn file_systems(dev: &File, files: &[OsString]) -> String {
    let mut out = String::new();
    if !files.is_empty() {
        for f in files {
            let p = std::path::Path::new(f);
            let what = match file_kind(dev, p) {
                Ok(k) => describe_kind(k),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => "not a regular file".into(),
                Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => "the loaded module cannot tell (too old?)".into(),
                Err(e) => format!("cannot ask: {e}"),
            };
            out.push_str(&format!("{}: {what}\n", p.display()));
        }
        return out;
    }
    out.push_str("file systems (ext4 and xfs asked about one regular file on each):\n");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        // id parent major:minor root mount-point options ... - fstype source super-options
        let (left, right) = line.split_once(" - ").unwrap_or((line, ""));
        let (Some(mnt), Some(fstype)) = (left.split(' ').nth(4), right.split(' ').next()) else { continue };
        if PSEUDO_FS.contains(&fstype) {
            continue;
        }
        let mnt = mnt.replace("\\040", " ");
        // Only ext4 and xfs files can be held, and there the answer depends
        // on the file (data journalling, DAX): ask the module about one.
        // Files of any other type are copied at splice time.
        let what = if !matches!(fstype, "ext4" | "xfs") {
            describe_kind(COPY_FS)
        } else {
            match sample_file(std::path::Path::new(&mnt)) {
                None => "no regular file near its top to ask about".into(),
                Some(f) => match file_kind(dev, &f) {
                    Ok(k) => describe_kind(k),
                    Err(e) => format!("cannot ask ({}): {e}", f.display()),
                },
            }
        };
        out.push_str(&format!("  {mnt} ({fstype}): {what}\n"));
    }
    out
}

fn status(files: &[OsString]) -> ExitCode {
    let mut dev = match open_device() {
        Ok(d) => d,
        Err(msg) => {
            println!("stable_splice: not usable: {msg}");
            return ExitCode::from(1);
        }
    };
    let kv = match read_counters(&mut dev) {
        Ok(kv) => kv,
        Err(e) => {
            println!("stable_splice: loaded, but reading {DEVICE} failed: {e}");
            return ExitCode::from(1);
        }
    };
    let get = |k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("?");
    let num = |k: &str| get(k).parse::<i64>().unwrap_or(0);
    let in_mode = ioctl(&dev, GET_MODE, 0).map(|m| m == 1);
    let policy = match get("policy") {
        "cow" => "cow (a writer to a page in a pipe puts a copy in the page cache and goes on)",
        "block" => "block (a writer waits up to 5 s for pipes of splicers that may write the file)",
        other => other,
    };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("stable_splice: loaded, SPLICE_F_STABLE accepted by splice() and IORING_OP_SPLICE".into());
    line(format!("policy: {policy}"));
    line(format!(
        "stable mode: {} process(es) in it; this process {}",
        num("mode_processes"),
        match in_mode {
            Ok(true) => "is in it",
            Ok(false) => "is not",
            Err(_) => "unknown",
        }
    ));
    line(format!(
        "stable splices: {} ({} of them by the stable mode), {} in progress",
        num("stable_calls"),
        num("mode_splices"),
        num("calls_in_flight")
    ));
    line(format!(
        "data: {} passed as page-cache references (zero copy), {} copied at splice time",
        bytes(num("bytes_zero_copy")),
        bytes(num("bytes_copied_at_splice"))
    ));
    line(format!(
        "holds: {} page(s) held now, {} taken in all, {} refused (copied instead: somebody else had the page)",
        num("holds_active"),
        num("holds_taken"),
        num("holds_refused")
    ));
    line(format!(
        "writers: {} hit a held page (a copy took its place), {} of them dirty (its state moved to the copy), {} waited for writeback; longest wait {:.3} ms",
        num("breaks"),
        num("breaks_dirty"),
        num("breaks_written_back"),
        num("max_writer_wait_ns") as f64 / 1e6
    ));
    line(format!("snapshots kept for readers after writes: {}", bytes(num("snapshot_bytes"))));
    line(format!(
        "breaks without memory for a copy: {} took the clean page out of the page cache instead (the writer read it back)",
        num("breaks_evicted")
    ));
    line(format!(
        "breaks without a copy at first (the page could not be unmapped or released): {} retried or failed with ENOMEM",
        num("breaks_retried")
    ));
    let failures = num("break_failures") + num("mode_fork_failures");
    line(format!(
        "failures: {} break(s) that could not keep the snapshot, {} child process(es) killed for lack of memory{}",
        num("break_failures"),
        num("mode_fork_failures"),
        if failures == 0 { " (none)" } else { ": see the kernel log" }
    ));
    out.push_str(&file_systems(&dev, files));
    let _ = io::stdout().write_all(out.as_bytes());
    ExitCode::SUCCESS
}

/// One page through splice(file -> pipe, SPLICE_F_STABLE): the flag works
/// when the call moves it and the pipe returns the file's bytes.
fn probe_once() -> Result<(), String> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("stable-splice-probe.{}", std::process::id()));
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    file.write_all(&pattern).map_err(|e| format!("write: {e}"))?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: both were just created and are owned from here on.
    let (mut rd, wr) = unsafe {
        use std::os::fd::FromRawFd;
        (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
    };
    let mut off: libc::loff_t = 0;
    // SAFETY: valid descriptors and offset pointer.
    let n = unsafe {
        libc::splice(file.as_raw_fd(), &mut off, wr.as_raw_fd(), std::ptr::null_mut(), 4096, SPLICE_F_STABLE)
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EINVAL) => "splice() rejects SPLICE_F_STABLE (EINVAL): the stable_splice module is not loaded".into(),
            _ => format!("splice with SPLICE_F_STABLE: {e}"),
        });
    }
    let mut got = vec![0u8; n as usize];
    rd.read_exact(&mut got).map_err(|e| format!("reading the pipe: {e}"))?;
    if n != 4096 || got != pattern {
        return Err(format!("splice moved {n} bytes, expected the file's 4096"));
    }
    Ok(())
}

fn probe(quiet: bool) -> ExitCode {
    match probe_once() {
        Ok(()) => {
            if !quiet {
                println!("SPLICE_F_STABLE works on this kernel");
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            if !quiet {
                println!("SPLICE_F_STABLE does not work: {msg}");
            }
            ExitCode::from(1)
        }
    }
}
