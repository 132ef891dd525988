#!/usr/bin/env python3
# The `block` policy in the VM (module loaded with policy=block), run by
# scripts/lib/guest-tests.sh. Prints TAP lines without plan.
#   may_write : root (may write the file) splices; a writer in another thread
#               must finish only after the reader drained the pipe, and the
#               reader gets the old bytes.
#   read_only : nobody splices a root-owned 0644 file: block is not honoured,
#               root's write returns while nobody's pipe stays full, and
#               nobody's pipe keeps the old bytes.
import fcntl, os, sys, threading, time

STABLE = 0x10
F_SETPIPE_SZ = 1031
LEN = 16384
DEBUGFS = "/sys/kernel/debug/stable_splice/"
n = 0
rc = 0


def tap(ok, name, why=""):
    global n, rc
    n += 1
    print(f"{'ok' if ok else 'not ok'} {n} - {name}" + ("" if ok else f" # {why}"), flush=True)
    rc |= not ok


def counter(name):
    with open(DEBUGFS + name) as f:
        return f.read().strip()


def fresh(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"A" * LEN, 0)
    os.fsync(fd)
    settle(fd)
    return fd


def settle(fd):
    """Fresh folios sit in per-CPU LRU batches, whose reference the module
    cannot tell from a reader's: such a folio is copied, not held. A plain
    splice keeps the pages cached while drop_caches drains the batches."""
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, LEN)
    os.splice(fd, w, LEN, offset_src=0)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1")
    os.close(r)
    os.close(w)


def drain(r):
    data = b""
    while len(data) < LEN:
        chunk = os.read(r, LEN)
        if not chunk:
            break
        data += chunk
    return data


def may_write(d):
    fd = fresh(d + "/block-may-write")
    r, w = os.pipe()
    got = os.splice(fd, w, LEN, offset_src=0, flags=STABLE)
    done = []
    th = threading.Thread(target=lambda: (os.pwrite(fd, b"B" * 4096, 0), done.append(time.monotonic())))
    th.start()
    time.sleep(1.5)
    waited = not done
    drained_at = time.monotonic()
    data = drain(r)
    th.join(20)
    ok = got == LEN and waited and done and done[0] >= drained_at and data == b"A" * LEN
    tap(ok, f"policy_block/{os.path.basename(d)}/writer_waits_for_drain",
        f"spliced={got} waited={waited} finished={bool(done)} data_ok={data == b'A' * LEN}")


def read_only(d):
    path = d + "/block-read-only"
    fd = fresh(path)
    os.chmod(path, 0o644)
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(to_parent)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        rfd = os.open(path, os.O_RDONLY)
        r, w = os.pipe()
        got = os.splice(rfd, w, LEN, offset_src=0, flags=STABLE)
        os.write(from_child, b"%d\n" % got)
        time.sleep(2)  # the pipe sits full while root writes
        ok = drain(r) == b"A" * LEN
        os._exit(0 if ok else 1)
    os.close(from_child)
    got = int(os.read(to_parent, 64) or b"0")
    breaks = int(counter("breaks"))
    t = time.monotonic()
    os.pwrite(fd, b"B" * 4096, 0)
    returned_before_drain = time.monotonic() - t < 2
    _, status = os.waitpid(pid, 0)
    ok = got == LEN and returned_before_drain and int(counter("breaks")) > breaks and status == 0
    tap(ok, f"policy_block/{os.path.basename(d)}/read_only_splicer_gets_cow",
        f"spliced={got} returned_before_drain={returned_before_drain} child_status={status}")


tap(counter("policy") == "block", "policy_block/debugfs_reports_block", counter("policy"))
for d in sys.argv[1:]:
    may_write(d)
    read_only(d)
sys.exit(rc)
