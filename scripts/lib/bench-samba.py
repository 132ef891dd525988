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
import os, shutil, signal, socket, statistics, subprocess, sys, time

DEBUGFS = "/sys/kernel/debug/stable_splice/"
TOOL = os.environ.get("SS_TOOL", "")
ROUNDS = int(os.environ.get("SS_BENCH_SAMBA_ROUNDS", "5"))


def counter(name):
    with open(DEBUGFS + name) as f:
        return int(f.read().strip())


def cpu_busy():
    """(busy, total) jiffies of all CPUs."""
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def smbd(state, share, method):
    shutil.rmtree(state, ignore_errors=True)
    for d in ["private", "lock", "state", "cache", "ncalrpc"]:
        os.makedirs(f"{state}/{d}")
    port = free_port()
    reads = "use sendfile = no\n" if method == "copy" else "use sendfile = yes\n  aio read size = 0\n"
    conf = f"{state}/smb.conf"
    open(conf, "w").write(f"""[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  private dir = {state}/private
  lock directory = {state}/lock
  state directory = {state}/state
  cache directory = {state}/cache
  pid directory = {state}
  ncalrpc dir = {state}/ncalrpc
  map to guest = Bad User
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
  log level = 0
  {reads}[t]
  path = {share}
  guest ok = yes
""")
    cmd = ["/usr/sbin/smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", conf]
    if method == "stable":
        cmd = [TOOL, "exec", "--"] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port, conf
        except OSError:
            time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    raise RuntimeError("smbd did not come up")


def main():
    share, out = sys.argv[1], sys.argv[2]
    mib = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    fs = os.path.basename(share.rstrip("/"))
    name = "bench-samba.dat"
    with open(f"{share}/{name}", "wb") as f:
        f.write(os.urandom(1 << 20) * mib)
    os.sync()
    size = mib << 20
    methods = ["copy", "sendfile", "stable"]
    servers = {m: smbd(f"/tmp/ss-bench-smbd-{m}", share, m) for m in methods}
    res = {m: [] for m in methods}
    cpu = {m: [0, 0] for m in methods}
    zc = cp = 0
    try:
        for m in methods:  # warm the file into the page cache and each server
            subprocess.run(["smbclient", "//127.0.0.1/t", "-s", servers[m][2], "-p", str(servers[m][1]), "-N", "-c",
                            f"get {name} /dev/null"], capture_output=True, check=True)
        for r in range(ROUNDS):
            for m in (methods if r % 2 == 0 else methods[::-1]):
                z0, c0 = counter("bytes_zero_copy"), counter("bytes_copied_at_splice")
                b0 = cpu_busy()
                t0 = time.perf_counter()
                subprocess.run(["smbclient", "//127.0.0.1/t", "-s", servers[m][2], "-p", str(servers[m][1]), "-N", "-c",
                                f"get {name} /dev/null"], capture_output=True, check=True)
                dt = time.perf_counter() - t0
                b1 = cpu_busy()
                res[m].append(size / dt / (1 << 30))
                cpu[m][0] += b1[0] - b0[0]
                cpu[m][1] += size
                if m == "stable":
                    zc += counter("bytes_zero_copy") - z0
                    cp += counter("bytes_copied_at_splice") - c0
    finally:
        for p, _, _ in servers.values():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        os.unlink(f"{share}/{name}")
    hz = os.sysconf("SC_CLK_TCK")
    lines = [f"--- Samba: smbclient get of a warm {mib} MiB file from smbd on {fs}, loopback, "
             f"{ROUNDS} rounds interleaved (median GiB/s; CPU s per GiB, all CPUs)"]
    med = {m: statistics.median(res[m]) for m in methods}
    for m in methods:
        cps = cpu[m][0] / hz / (cpu[m][1] / (1 << 30))
        lines.append(f"  {m:9s} {med[m]:7.3f} GiB/s  {cps:6.2f} CPU s/GiB  ({med[m] / med['sendfile']:.2f}x sendfile, "
                     f"{med[m] / med['copy']:.2f}x copy)")
    lines.append(f"  stable rounds: bytes_zero_copy {zc}, bytes_copied_at_splice {cp}")
    text = "\n".join(lines)
    print(text, flush=True)
    with open(out, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
