//! The machine the run is on.

use crate::*;

pub(crate) fn first_line_value(path: &str, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

pub(crate) fn uname_release() -> String {
    // SAFETY: zeroed utsname is a valid out-parameter.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: the kernel NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned()
}

pub(crate) struct Machine {
    pub(crate) json: Json,
    pub(crate) summary: String,
    /// One line for the plots.
    pub(crate) short: String,
}

pub(crate) fn machine() -> Machine {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let guest_cpu = first_line_value("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let guest_flags = first_line_value("/proc/cpuinfo", "flags").unwrap_or_default();
    let hypervisor = guest_flags.split_whitespace().any(|f| f == "hypervisor");
    let clocksource = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let guess = if guest_cpu.contains("TCG") {
        "tcg"
    } else if clocksource == "kvm-clock" {
        "kvm"
    } else if hypervisor {
        "unknown hypervisor"
    } else {
        "bare metal"
    };
    let accel = env("SS_BENCH_ACCEL").unwrap_or_else(|| format!("{guess} (guessed in the guest)"));
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kib = first_line_value("/proc/meminfo", "MemTotal").and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    let kernel = uname_release();
    let host_nproc = env("SS_BENCH_HOST_NPROC");
    let host_cpu = env("SS_BENCH_HOST_CPU");
    let host_load = env("SS_BENCH_HOST_LOADAVG");
    let summary = format!(
        "kernel {kernel}; guest: {nproc} CPUs ({guest_cpu}), {} MiB, accelerator {accel}; host: {} CPUs ({}), load average at start {}",
        mem_kib.map_or(0, |k| k / 1024),
        host_nproc.as_deref().unwrap_or("?"),
        host_cpu.as_deref().unwrap_or("?"),
        host_load.as_deref().unwrap_or("?")
    );
    let short = format!(
        "kernel {kernel}, {nproc}-CPU guest ({}), host load {} at start",
        accel.split_whitespace().next().unwrap_or("?"),
        host_load.as_deref().unwrap_or("?")
    );
    let json = Json::obj()
        .with("kernel_release", kernel)
        .with("accelerator", accel)
        .with("accelerator_guess_in_guest", guess)
        .with("host_nproc", host_nproc.and_then(|v| v.parse::<u64>().ok()))
        .with("host_cpu_model", host_cpu)
        .with("host_loadavg_1min_at_start", host_load.and_then(|v| v.parse::<f64>().ok()))
        .with("guest_nproc", nproc)
        .with("guest_cpu_model", guest_cpu)
        .with("guest_cpu_hypervisor_flag", hypervisor)
        .with("guest_clocksource", clocksource)
        .with("guest_mem_total_kib", mem_kib);
    Machine { json, summary, short }
}

/// Touches the guest's free memory once and gives it back; returns the
/// bytes touched. A VM's host gives the guest its RAM at first touch, so
/// copies that land on memory the guest never used pay the host's page
/// faults: a fresh guest's first 2 MiB break copies took 5-6 ms where
/// later ones took 1 (TCG, ext4, the first file system of the run), a
/// tail that is the emulator's, not the kernel's (the instruction clock
/// does not see it).
pub(crate) fn touch_free_memory() -> u64 {
    let avail = first_line_value("/proc/meminfo", "MemAvailable")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let len = avail.saturating_sub(384 << 20) as usize;
    if len < 64 << 20 {
        return 0;
    }
    // SAFETY: a private anonymous mapping of our own, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return 0;
    }
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside the mapping just made.
        unsafe { std::ptr::write_volatile((p as *mut u8).add(off), 1) };
    }
    // SAFETY: the mapping made above, not used after.
    unsafe { libc::munmap(p, len) };
    len as u64
}
