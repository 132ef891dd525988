#!/usr/bin/env python3
# What serving SMB2 READs costs, run in the VM by scripts/bench (module
# loaded): Debian's smbd serves a warm file to smbclient (`get FILE
# /dev/null`), over loopback, three ways, rounds interleaved:
#   copy      Samba's default: the thread-pool read path (pread() into
#             memory, then send: one copy); `use sendfile = no`
#   sendfile  `use sendfile = yes`, `aio read size = 0`: zero copy, and the
#             bytes on the wire change with later writes to the file
#   stable    the same smbd under `stable-splice exec`: zero copy and a
#             snapshot
# Reports per method the median GiB/s over the rounds, CPU seconds per GiB
# of all CPUs (/proc/stat: smbd, smbclient, kworkers, softirqs), and the
# module's counters in the stable rounds. Usage: bench-samba.py DIR OUT [MiB]
import os, re, statistics, subprocess, sys, time

from smbd import Smbd

DEBUGFS = "/sys/kernel/debug/stable_splice/"
ROUNDS = int(os.environ.get("SS_BENCH_SAMBA_ROUNDS", "5"))
GETS = 3


def counter(name):
    with open(DEBUGFS + name) as f:
        return int(f.read().strip())


def cpu_busy():
    """(busy, total) jiffies of all CPUs."""
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def main():
    share, out_path = sys.argv[1], sys.argv[2]
    mib = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    fs = os.path.basename(share.rstrip("/"))
    name = "bench-samba.dat"
    with open(f"{share}/{name}", "wb") as f:
        f.write(os.urandom(1 << 20) * mib)
    os.sync()
    size = mib << 20
    methods = ["copy", "sendfile", "stable"]
    reads = {"copy": "  use sendfile = no\n", "sendfile": "  use sendfile = yes\n  aio read size = 0\n"}
    servers = {m: Smbd(f"/tmp/ss-bench-smbd-{m}", share, m == "stable",
                       extra="  map to guest = Bad User\n  log level = 0\n" + reads.get(m, reads["sendfile"]),
                       share_extra="  guest ok = yes\n") for m in methods}
    res = {m: [] for m in methods}
    cpu = {m: [0, 0] for m in methods}
    zc = cp = 0
    try:
        for m in methods:  # warm the file into the page cache and each server
            subprocess.run(servers[m].client("-N", "-c", f"get {name} /dev/null"), capture_output=True, check=True)
        for r in range(ROUNDS):
            for m in (methods if r % 2 == 0 else methods[::-1]):
                z0, c0 = counter("bytes_zero_copy"), counter("bytes_copied_at_splice")
                # One session of one get (smbclient's start, the session,
                # one transfer), one of 1 + GETS: the difference is GETS
                # transfers. Their rates are smbclient's own, per get.
                base = cpu_busy()
                subprocess.run(servers[m].client("-N", "-c", f"get {name} /dev/null"), capture_output=True, check=True)
                mid = cpu_busy()
                out = subprocess.run(servers[m].client("-N", "-c", "; ".join([f"get {name} /dev/null"] * (1 + GETS))),
                                     capture_output=True, text=True, check=True)
                end = cpu_busy()
                rates = [float(x) for x in re.findall(r"\(([0-9.]+) KiloBytes/sec\)", out.stdout + out.stderr)]
                if len(rates) != 1 + GETS:
                    raise RuntimeError(f"smbclient printed {len(rates)} rates: {out.stdout[-300:]} {out.stderr[-300:]}")
                res[m] += [x * 1024 / (1 << 30) for x in rates[1:]]
                cpu[m][0] += (end[0] - mid[0]) - (mid[0] - base[0])
                cpu[m][1] += GETS * size
                if m == "stable":
                    zc += counter("bytes_zero_copy") - z0
                    cp += counter("bytes_copied_at_splice") - c0
    finally:
        for smbd in servers.values():
            smbd.stop()
        os.unlink(f"{share}/{name}")
    hz = os.sysconf("SC_CLK_TCK")
    lines = [f"--- Samba: smbclient get of a warm {mib} MiB file from smbd on {fs}, loopback, "
             f"{ROUNDS} rounds interleaved, {GETS} gets a session (median GiB/s as smbclient reports it; CPU s per GiB, "
             f"all CPUs, a session's start taken out)"]
    med = {m: statistics.median(res[m]) for m in methods}
    for m in methods:
        cps = cpu[m][0] / hz / (cpu[m][1] / (1 << 30))
        lines.append(f"  {m:9s} {med[m]:7.3f} GiB/s  {cps:6.2f} CPU s/GiB  ({med[m] / med['sendfile']:.2f}x sendfile, "
                     f"{med[m] / med['copy']:.2f}x copy)")
    lines.append(f"  stable rounds: bytes_zero_copy {zc}, bytes_copied_at_splice {cp}")
    text = "\n".join(lines)
    print(text, flush=True)
    with open(out_path, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
