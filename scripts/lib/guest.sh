#!/usr/bin/env bash
# Runs inside the test VM (started by scripts/vm-run): insmod, the command,
# rmmod, then the kernel-log check. The last line is the status for vm-run.
set -u
SCRATCH=$1
echo "STABLE-SPLICE-VM-START"
. "$SCRATCH/env"
status=0
fail() { echo "vm-run: FAILED: $*"; status=1; }

export PATH="$PATH:/sbin:/usr/sbin"
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# cgroup2 for the memory-limit cases, where the kernel has cgroups
if [ -d /sys/fs/cgroup ] && ! grep -q ' cgroup2 ' /proc/mounts; then
	mount -t cgroup2 none /sys/fs/cgroup || fail "mount cgroup2"
fi

# Under TCG with more than one vCPU, patching kernel text that another vCPU
# is executing has killed guests ("Oops: int3", QEMU's: also without the
# module, Documentation/stable-splice.rst, "Redirects on the paths of
# unrelated work"). The module patches do_splice and do_splice_read when its
# splice entry points go idle and come back ("Plain splices"): such guests
# load it with that off, and the cases that take them out (entries_*) run in
# the one-vCPU guests (scripts/lib/tracer-cases.sh).
SS_KO_PARAMS=
if [ "$SS_ACCEL" = tcg ] && [ "$(nproc)" -gt 1 ]; then
	SS_KO_PARAMS=entries_idle_secs=0
	# The memory controller patches text too: the first memory cgroup
	# flips its static keys on (socket and BPF accounting), the last one
	# removed flips them off, and a guest died there once, in CI, as the
	# memory-limit cases made and removed theirs. Such guests keep one
	# from boot on, so that the cases' cgroups come and go without it.
	CG=/sys/fs/cgroup
	if grep -qw memory "$CG/cgroup.controllers" 2>/dev/null; then
		grep -qw memory "$CG/cgroup.subtree_control" || echo +memory >"$CG/cgroup.subtree_control" ||
			fail "enable the memory controller"
		mkdir -p "$CG/stable-splice-static-keys" || fail "make the memory cgroup that keeps its static keys on"
	fi
fi
export SS_SCRATCH SS_ROOT SS_KO SS_MODULE SS_CACHE SS_KERNEL SS_ACCEL SS_KO_PARAMS

# Debian's kernel has the scratch file systems and loop as modules (the
# debug kernel has them built in): load them from its modules tree.
if [ "${SS_KERNEL:-debug}" = debian ]; then
	modprobe -a loop ext4 xfs || fail "modprobe loop ext4 xfs"
	# AF_ALG hashing for the signed-reads tests (built in on the debug kernel)
	modprobe algif_hash || fail "modprobe algif_hash"
fi

# Tests (and the KUnit suite) splice on ext4, xfs and tmpfs: mount all three.
. "$SS_ROOT/scripts/lib/scratch-fs.sh"
. "$SS_ROOT/scripts/lib/holds.sh"
scratch_fs_mount || fail "could not set up scratch file systems"

if [ "$SS_MODULE" = 1 ]; then
	before=$(dmesg | wc -l)
	if ! ss_insmod; then
		fail "insmod $SS_KO $SS_KO_PARAMS"
	fi
	if [ "$SS_KUNIT" = 1 ]; then
		dmesg | tail -n +$((before + 1)) | sed -n 's/^\[[^]]*\] //p' |
			sed -n '/KTAP version\|^ *\(ok\|not ok\) \|^ *# \|^ *1\.\./p' |
			grep -v '^ *# .*\.speed: ' >"$SCRATCH/kunit.ktap"
		echo "---- KUnit (stable_splice) ----"
		cat "$SCRATCH/kunit.ktap"
		grep -q '^ *ok [0-9]* stable_splice$' "$SCRATCH/kunit.ktap" || fail "KUnit suite stable_splice did not pass"
	fi
fi

bash -c "$(cat "$SCRATCH/cmd")"
rc=$?
[ $rc = 0 ] || status=$rc

if [ "$SS_MODULE" = 1 ]; then
	if grep -q '^stable_splice ' /proc/modules && ! ss_rmmod; then
		fail "rmmod stable_splice"
	fi
fi
scratch_fs_umount || fail "a scratch file system is inconsistent after the tests (e2fsck/xfs_repair)"

# Any of these in the kernel log fails the run, whatever the command said.
bad='WARNING:|BUG:|Oops|EXT4-fs error|XFS \([^)]*\): (Corruption|Internal error|Metadata corruption)|KFENCE:|KASAN:|UBSAN:|general protection fault|possible recursive locking|possible circular locking|inconsistent lock state|possible irq lock inversion|DEBUG_LOCKS_WARN_ON|turning off the locking correctness validator|suspicious RCU usage|blocked for more than|Call Trace:|cut here'
if dmesg | grep -E "$bad" >/dev/null; then
	echo "---- kernel log (problems found) ----"
	dmesg | grep -E -B5 -A30 "$bad" | head -200
	fail "kernel log shows a WARNING/BUG/Oops/lockdep/KFENCE report"
fi
dmesg >"$SCRATCH/dmesg.txt"
sync
echo; echo "STABLE-SPLICE-VM-STATUS: $status"
