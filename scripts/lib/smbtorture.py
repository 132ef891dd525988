#!/usr/bin/env python3
# Samba's own test suite against smbd in the stable mode, run in the VM by
# scripts/lib/guest-tests.sh (module loaded): smbtorture from Debian's
# samba-testsuite runs the SMB2 families that read, first against smbd
# without the mode (the control), then against smbd under
# `stable-splice exec`, each on a fresh share on the file system in argv[1].
# Every subtest must end the same way in both runs; a subtest that fails in
# both is reported as passing with the failure named (it is Samba's or this
# setup's, not the module's). Prints TAP lines without plan.
#
# Families and why:
#   smb2.read           EOF and min_count, position, directories, access
#                       checks; `access` reads a file opened after it was
#                       written: served by sendfile()
#   smb2.rw             random writes read back through a second handle,
#                       invalid offsets
#   smb2.compound       reads inside compound requests (smbd never uses
#                       sendfile there: the mode must not change them)
#   smb2.compound_async async flushes inside compounds
#   smb2.lock           byte-range locks against reads and writes (a read of
#                       a locked range fails before any sendfile)
#   smb2.sharemode      share modes of opens that read and write
import os, re, shutil, subprocess, sys, time

from smbd import Smbd

SUITES = ["smb2.read", "smb2.rw", "smb2.compound", "smb2.compound_async", "smb2.lock", "smb2.sharemode"]
DEBUGFS = "/sys/kernel/debug/stable_splice/"
PASSWORD = "stable-splice-pw"
n = 0
rc = 0


def tap(ok, name, why="", skip=False, note=""):
    """A TAP line; `why` says what failed, `note` goes with a pass."""
    global n, rc
    n += 1
    if skip:
        print(f"ok {n} - {name} # SKIP {why}", flush=True)
        return
    print(f"{'ok' if ok else 'not ok'} {n} - {name}" + ("" if ok else f" # {why}"), flush=True)
    if ok and note:
        print(f"#   {name}: {note}", flush=True)
    rc |= not ok


def counter(name):
    with open(DEBUGFS + name) as f:
        return int(f.read().strip())


def start(state, share, stable):
    smbd = Smbd(state, share, stable, extra="  use sendfile = yes\n  aio read size = 0\n")
    p = subprocess.run(["smbpasswd", "-c", smbd.conf, "-a", "-s", "root"], input=f"{PASSWORD}\n{PASSWORD}\n",
                       capture_output=True, text=True)
    if p.returncode != 0:
        smbd.stop()
        raise RuntimeError(f"smbpasswd: {p.stderr.strip()}")
    return smbd


def run_suite(suite, port, conf):
    """{subtest: (result, reason)} of one smbtorture suite."""
    # The server's smb.conf for the client too: its state directories are
    # under /tmp (the guest's root file system is read-only).
    p = subprocess.run(["timeout", "900", "smbtorture", "//127.0.0.1/t", "-s", conf, "-p", str(port),
                        "-U", f"root%{PASSWORD}",
                        "--option=client signing=off", suite], capture_output=True, text=True,
                       cwd=os.path.dirname(conf))  # it makes a temp dir in its cwd
    results, cur = {}, None
    lines = p.stdout.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(success|failure|error|skip|xfail): (\S+)( \[)?$", lines[i])
        if m:
            reason = []
            if m.group(3):
                i += 1
                while i < len(lines) and lines[i] != "]":
                    reason.append(lines[i].strip())
                    i += 1
            results[m.group(2)] = (m.group(1), " ".join(reason)[:200])
        i += 1
    if not results:
        results["(suite)"] = ("error", f"no results, status {p.returncode}: {(p.stdout + p.stderr)[-300:]}")
    return results


def main():
    fsdir = sys.argv[1]
    fs = os.path.basename(fsdir.rstrip("/"))
    state = "/tmp/ss-smbtorture"
    runs = {}
    for stable in (False, True):
        label = "stable" if stable else "plain"
        share = f"{fsdir}/smbtorture-{label}"
        shutil.rmtree(share, ignore_errors=True)
        os.makedirs(share)
        splices0 = counter("mode_splices")
        try:
            smbd = start(f"{state}-{label}", share, stable)
        except RuntimeError as e:
            tap(False, f"smbtorture/{fs}/smbd_{label}_starts", str(e))
            return
        t0 = time.time()
        runs[label] = {s: run_suite(s, smbd.port, smbd.conf) for s in SUITES}
        # smbd serves on after the suites: a fresh client lists the share.
        ls = subprocess.run(smbd.client("-U", f"root%{PASSWORD}", "-c", "ls"), capture_output=True, text=True)
        smbd.stop()
        splices = counter("mode_splices") - splices0
        print(f"#   smbtorture/{fs}: {label} run took {time.time() - t0:.0f} s, {splices} splices in the mode", flush=True)
        tap(ls.returncode == 0, f"smbtorture/{fs}/smbd_{label}_serves_after_the_suites", ls.stderr.strip()[-200:])
        if stable:
            tap(splices > 0, f"smbtorture/{fs}/stable_reads_went_through_sendfile_in_the_mode",
                "smbd under stable-splice exec made no splices in the mode")
        else:
            tap(splices == 0, f"smbtorture/{fs}/plain_smbd_not_in_the_mode", f"{splices} mode splices without the mode")
        shutil.rmtree(share, ignore_errors=True)
    for suite in SUITES:
        plain, stable = runs["plain"][suite], runs["stable"][suite]
        for name in sorted(set(plain) | set(stable)):
            a = plain.get(name, ("missing", ""))
            b = stable.get(name, ("missing", ""))
            full = f"smbtorture/{fs}/{suite}.{name}"
            if name == "(suite)":
                tap(False, full, f"smbtorture ran nothing: without the mode: {a[1]}; in the mode: {b[1]}")
            elif a[0] != b[0]:
                tap(False, full, f"without the mode: {a[0]} {a[1]}; in the mode: {b[0]} {b[1]}")
            elif a[0] == "skip":
                tap(True, full, f"skipped by smbtorture in both runs: {a[1]}", skip=True)
            elif a[0] in ("failure", "error"):
                tap(True, full, note=f"{a[0]} without the module's mode too (Samba's or this setup's): {a[1]}")
            else:
                tap(True, full)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a crash of the script is a failure, not silence
        tap(False, "smbtorture/script", repr(e))
    sys.exit(rc)
