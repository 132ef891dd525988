#!/usr/bin/env bash
# Inside the VM, module not loaded (scripts/lib/guest-tests.sh runs this
# after the lifecycle): the redirects that can be direct calls, in their
# other form and beside BPF (src/ftrace.rs): the writers' two
# (__filemap_get_folio_mpol, do_page_mkwrite) and the three splice entry
# points (__x64_sys_splice, do_splice, do_splice_read). By default they are
# ftrace callbacks, which the suites above test; here
#   - direct_calls=1 makes them direct calls into the trampolines of
#     rust/trampolines.S: the writer cases and the splice cases (the flag,
#     its errors, restarts, io_uring, the mode, sendfile, the races) must
#     pass as with callbacks, and a plain splice must stay plain;
#   - a BPF fentry/fexit program (bpftrace kfunc/kretfunc probes) attaches
#     beside the default callbacks, the cases pass, and the program counts
#     its calls;
#   - with the program attached first, direct_calls=1 cannot have the
#     functions' one direct call and must fall back to the callbacks (before
#     the fallback, insmod failed with EBUSY).
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
# The cases that go through the splice entry points in every way they are
# reached: the flag and its errors (unknown flags, pipe sources, a stray
# mark bit), the user's registers, signals and restarts, io_uring with the
# flag, the mode (splice without the flag, sendfile, io_uring; nobody else
# in it, not even a process in a member's filter slot), sockets and tee as
# consumers, plain splice beside stable, and the races.
SPLICE_CASES=stable_flag_accepted,unknown_flag_einval,registers_preserved,mark_bit_without_flag_is_plain,metzmacher_,snapshot_tee,snapshot_pipe_to_pipe,io_uring_splice,socket_sink_,bad_input,signal_,counters_zero_after_close,mode_splice_without_flag,mode_reaches_only_members,mode_sendfile_socket,mode_io_uring_splice,mode_pipe_source_unchanged,holds_overlapping_splices,plain_overlapping_splices,contract_stress
DEBUGFS=/sys/kernel/debug/stable_splice
FUNCS=(__filemap_get_folio_mpol do_page_mkwrite __x64_sys_splice do_splice do_splice_read)
n=0 rc=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; rc=1; fi; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# $1: label; the rest: file systems
run_cases() {
	local label=$1 fs
	shift
	for fs in "$@"; do
		"$BIN" --dir "/tmp/ss/$fs" --fs-label "$label/$fs" --expect-module --stress-secs 3 --filter "$CASES,$SPLICE_CASES" || rc=1
	done
}

# $1: writer redirects through callbacks, $2: splice entry points through callbacks
by_callback_is() {
	local w s
	w=$(cat $DEBUGFS/writer_redirects_by_callback 2>/dev/null)
	s=$(cat $DEBUGFS/splice_redirects_by_callback 2>/dev/null)
	[ "$w" = "$1" ] && [ "$s" = "$2" ] ||
		{ echo "#   writer_redirects_by_callback: $w, want $1; splice_redirects_by_callback: $s, want $2"; return 1; }
}

echo "---- redirects as direct calls: direct_calls=1 ----"
ss_insmod direct_calls=1; tap $? direct/insmod_direct_calls_1
by_callback_is 0 0; tap $? direct/all_five_redirects_are_direct_calls
run_cases direct ext4 xfs
ss_rmmod; tap $? direct/rmmod
# The kernel's answer to the flag once the trampolines are gone.
"$BIN" --expect-no-module --dir /tmp/ss/ext4 --fs-label direct-unloaded --filter flag_einval_without_module || rc=1

# bpftrace's fentry (kfunc) and fexit (kretfunc) probes on both functions:
# BPF trampolines, direct calls of their own. Prints its counts at SIGINT.
bpf_start() {
	local probes="" f i
	for f in "${FUNCS[@]}"; do probes+="kfunc:vmlinux:$f, kretfunc:vmlinux:$f, "; done
	bpftrace -e "${probes%, } { @[probe] = count(); }" >/tmp/ss/bpftrace.out 2>&1 &
	bpf_pid=$!
	# "Attaching N probes..." comes before they are attached: give it time.
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
# Whether bpftrace counted calls at entry and return of both functions.
bpf_counted_all() {
	local f p c ok=0
	for f in "${FUNCS[@]}"; do
		for p in kfunc kretfunc; do
			c=$(sed -nE "s/^@\[$p:vmlinux:$f\]: ([0-9]+)$/\1/p" /tmp/ss/bpftrace.out)
			[ "${c:-0}" -gt 0 ] || { echo "#   $p:$f counted ${c:-nothing}"; ok=1; }
		done
	done
	return $ok
}

if ! command -v bpftrace >/dev/null || [ ! -e /sys/kernel/btf/vmlinux ]; then
	why="no bpftrace or no BTF in this kernel (BPF fentry/fexit need it)"
	for t in beside/insmod beside/fentry_fexit_attach beside/program_counted_its_calls beside/rmmod \
		first/fentry_fexit_attached first/insmod_direct_calls_1_falls_back \
		first/all_five_redirects_are_callbacks first/rmmod first/program_counted_its_calls; do
		skip "bpf-$t" "$why"
	done
	exit $rc
fi

echo "---- a BPF program beside the module's callbacks ----"
ss_insmod; tap $? bpf-beside/insmod
bpf_start; tap $? bpf-beside/fentry_fexit_attach
run_cases bpf-beside ext4
bpf_stop
bpf_counted_all; tap $? bpf-beside/program_counted_its_calls
ss_rmmod; tap $? bpf-beside/rmmod

echo "---- direct_calls=1 with a BPF program on the functions first ----"
bpf_start; tap $? bpf-first/fentry_fexit_attached
ss_insmod direct_calls=1; tap $? bpf-first/insmod_direct_calls_1_falls_back
dmesg | grep 'has a direct call already' | tail -2 | sed 's/^/#   /'
by_callback_is 2 3; tap $? bpf-first/all_five_redirects_are_callbacks
run_cases bpf-first ext4
ss_rmmod; tap $? bpf-first/rmmod
bpf_stop
bpf_counted_all; tap $? bpf-first/program_counted_its_calls
exit $rc
