#!/usr/bin/env bash
# Inside the VM, module not loaded (scripts/lib/guest-tests.sh runs this
# after the lifecycle): the writers' two redirects as ftrace callbacks
# instead of direct calls (src/ftrace.rs). A function has one direct call
# at most, so
#   - with direct_calls=0 the module leaves it to BPF: the writer cases
#     pass as with direct calls, and a BPF fexit program attaches beside;
#   - where a BPF fentry/fexit program has it already, a load falls back
#     to the callbacks on its own (before: insmod failed with EBUSY): the
#     writer cases pass and the program keeps counting its calls.
# The BPF steps need bpftrace and a kernel with BTF (Debian's; the debug
# kernel has none: they skip there). TAP lines; the test binary's are
# counted as they are.
set -u
. "$SS_ROOT/scripts/lib/holds.sh"
BIN=$SS_ROOT/tests/userspace/target/release/stable-splice-tests
# The cases that need the writers' redirects: every writer kind into held
# pages (pwrite, write, writev, io_uring, stores through mappings),
# the races, and the breaks of clean and dirty pages.
CASES=snapshot_pwrite,snapshot_write,snapshot_mmap,snapshot_io_uring_write,holds_writer_race,holds_mmap_writer_race,holds_dirty_break,holds_clean_break
BY_CALLBACK=/sys/kernel/debug/stable_splice/writer_redirects_by_callback
FUNCS=(__filemap_get_folio_mpol do_page_mkwrite)
n=0 rc=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2${3:+ # $3}"; rc=1; fi; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# $1: label; the rest: file systems
writer_cases() {
	local label=$1 fs
	shift
	for fs in "$@"; do
		"$BIN" --dir "/tmp/ss/$fs" --fs-label "$label/$fs" --expect-module --stress-secs 3 --filter "$CASES" || rc=1
	done
}

by_callback_is() {
	local got
	got=$(cat $BY_CALLBACK 2>/dev/null)
	[ "$got" = "$1" ] || { echo "#   writer_redirects_by_callback: $got, want $1"; return 1; }
}

echo "---- writer redirects as ftrace callbacks: direct_calls=0 ----"
insmod "$SS_KO" direct_calls=0; tap $? callbacks/insmod_direct_calls_0
by_callback_is 2; tap $? callbacks/both_writer_redirects_are_callbacks
writer_cases callbacks ext4 xfs

# bpftrace's fentry (kfunc) and fexit (kretfunc) probes on both functions:
# BPF trampolines, direct calls of their own. Prints its counts at SIGINT.
bpf_start() {
	local probes="" f
	for f in "${FUNCS[@]}"; do probes+="kfunc:vmlinux:$f, kretfunc:vmlinux:$f, "; done
	bpftrace -e "${probes%, } { @[probe] = count(); }" >/tmp/ss/bpftrace.out 2>&1 &
	bpf_pid=$!
	# "Attaching N probes..." comes before they are attached: wait for a
	# count to move (a write passes __filemap_get_folio_mpol).
	for i in $(seq 120); do
		grep -q Attaching /tmp/ss/bpftrace.out && break
		kill -0 $bpf_pid 2>/dev/null || break
		sleep 0.5
	done
	sleep 3
	kill -0 $bpf_pid 2>/dev/null
}
bpf_stop() {
	kill -INT $bpf_pid 2>/dev/null
	wait $bpf_pid 2>/dev/null
	sed 's/^/#   bpftrace: /' /tmp/ss/bpftrace.out | grep -v ': $'
}
# The count bpftrace printed for probe $1.
bpf_count() { sed -nE "s/^@\[$1\]: ([0-9]+)$/\1/p" /tmp/ss/bpftrace.out; }

# A BPF fexit program after the module took the functions as callbacks.
if ! command -v bpftrace >/dev/null || [ ! -e /sys/kernel/btf/vmlinux ]; then
	why="no bpftrace or no BTF in this kernel (BPF fentry/fexit need it)"
	skip bpf/fexit_attaches_beside_callbacks "$why"
	ss_rmmod; tap $? callbacks/rmmod
	skip bpf/insmod_falls_back_to_callbacks "$why"
	skip bpf/both_writer_redirects_are_callbacks "$why"
	skip bpf/program_counted_its_calls "$why"
	exit $rc
fi
bpf_start; ok=$?
dd if=/dev/zero of=/tmp/ss/ext4/bpf-probe bs=4k count=64 status=none
bpf_stop
[ $ok = 0 ] && [ "$(bpf_count "kretfunc:vmlinux:__filemap_get_folio_mpol")" -gt 0 ] 2>/dev/null
tap $? bpf/fexit_attaches_beside_callbacks
ss_rmmod; tap $? callbacks/rmmod

echo "---- writer redirects as ftrace callbacks: a BPF program had the functions first ----"
bpf_start; tap $? bpf/fentry_fexit_attached_without_the_module
insmod "$SS_KO"; tap $? bpf/insmod_falls_back_to_callbacks
dmesg | grep 'has a direct call already' | tail -2 | sed 's/^/#   /'
by_callback_is 2; tap $? bpf/both_writer_redirects_are_callbacks
writer_cases bpf ext4
ss_rmmod; tap $? bpf/rmmod
bpf_stop
ok=0
for f in "${FUNCS[@]}"; do
	for p in kfunc kretfunc; do
		c=$(bpf_count "$p:vmlinux:$f")
		[ "${c:-0}" -gt 0 ] || { echo "#   $p:$f counted ${c:-nothing}"; ok=1; }
	done
done
tap $ok bpf/program_counted_its_calls
exit $rc
