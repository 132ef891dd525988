#!/usr/bin/env bash
# Inside the VM, module loaded (scripts/check runs this through vm-run):
# the user-space contract tests on ext4, xfs and tmpfs, then the module's
# load/unload cycle. Prints TAP lines that scripts/check counts.
set -u
BIN=$SS_ROOT/tests/userspace/target/release/stable-splice-tests
. "$SS_ROOT/scripts/lib/holds.sh"
rc=0
for dir in $SS_FS_DIRS; do
	fs=$(basename "$dir")
	echo "---- user-space tests on $fs ($dir), at $SECONDS s ----"
	# The stress cases run 5 s per file system (TCG is slow; each case
	# still counts its iterations in the thousands on every mount, see its
	# notes); SS_STRESS_SECS sets another duration.
	secs=${SS_STRESS_SECS:-5}
	"$BIN" --dir "$dir" --fs-label "$fs" --expect-module --stress-secs $secs || rc=1
done

# End to end: Debian's nginx (sendfile on) and Samba's smbd (use sendfile)
# with and without the stable mode, clients that stop reading, curl and
# smbclient while the file is rewritten, smbd's misbehaving clients; on
# the file systems in SS_E2E_FS (default ext4 and xfs; scripts/check runs
# ext4 on the debug kernel, xfs on Debian's).
export SS_NGINX=$SS_CACHE/nginx/usr/sbin/nginx
export SS_TOOL=$SS_ROOT/tools/stable-splice/target/release/stable-splice
for dir in $SS_FS_DIRS; do
	fs=$(basename "$dir")
	case " ${SS_E2E_FS:-ext4 xfs} " in *" $fs "*) ;; *) continue ;; esac
	echo "---- end to end on $fs ($dir), at $SECONDS s ----"
	"$BIN" --dir "$dir" --fs-label "$fs" --expect-module --e2e --stress-secs 10 || rc=1
	# A case killed at its timeout cannot stop its nginx daemon (it is a
	# session of its own): one left in the stable mode would keep the module
	# loaded and fail the lifecycle below for the wrong reason.
	for d in nginx smbd; do
		if pkill -KILL -x $d 2>/dev/null; then
			echo "#   killed a $d that an end-to-end case on $fs left running"
			for i in $(seq 50); do pgrep -x $d >/dev/null || break; sleep 0.1; done
		fi
	done
done

n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; rc=1; fi; }
# Renumbers a script's TAP lines (no plan) into ours; SKIP lines stay skips.
retap() {
	local line
	while IFS= read -r line; do
		case $line in
		'ok '*'# SKIP'*) n=$((n + 1)); echo "ok $n - ${line#ok * - }" ;;
		'ok '*) tap 0 "${line#ok * - }" ;;
		'not ok '*) tap 1 "${line#not ok * - }" ;;
		*) echo "$line" ;;
		esac
	done
}

# Samba's own tests (smbtorture, the SMB2 families that read) against smbd
# without and with the stable mode: the same results in both
# (SS_SMBTORTURE_FS: the file systems; none by default: scripts/check runs
# them on Debian's kernel on ext4, a minute a pair there; on the debug
# kernel, with lockdep, a pair takes over four).
for fs in ${SS_SMBTORTURE_FS-}; do
	echo "---- smbtorture on $fs, at $SECONDS s ----"
	retap < <(SS_TOOL=$SS_TOOL timeout 1800 python3 "$SS_ROOT/scripts/lib/smbtorture.py" "/tmp/ss/$fs" 2>&1 ||
		echo "not ok - smbtorture/$fs/script (status $?)")
	pkill -KILL -x smbd 2>/dev/null && echo "#   killed an smbd that smbtorture.py left running"
done

echo "---- README examples (C: examples/splice_stable.c, Rust: tests/userspace/examples/) ----"
for dir in $SS_FS_DIRS; do
	"$SS_ROOT/examples/splice_stable" "$dir"; tap $? "example/c_$(basename "$dir")"
	"$SS_ROOT/tests/userspace/target/release/examples/splice_stable" "$dir"; tap $? "example/rust_$(basename "$dir")"
done

echo "---- module lifecycle, at $SECONDS s ----"
# A folio held for a pipe pins the module: rmmod must refuse (EBUSY, "in
# use") rather than let writers change what the pipe still has to deliver.
f=/tmp/ss/ext4/held
head -c 65536 /dev/urandom >"$f"
python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
# Fresh folios sit in per-CPU LRU batches, whose reference looks like a
# reader: they would be copied, not held. A plain splice keeps them cached
# while drop_caches drains the batches.
r0, w0 = os.pipe()
os.splice(fd, w0, 65536, offset_src=0)
open("/proc/sys/vm/drop_caches", "w").write("1")
os.close(r0); os.close(w0)
r, w = os.pipe()
print(os.splice(fd, w, 65536, offset_src=0, flags=0x10), flush=True)
time.sleep(60)' "$f" >/tmp/ss/holder.out &
holder=$!
for i in $(seq 300); do [ -s /tmp/ss/holder.out ] && break; sleep 0.1; done
[ "$(cat /tmp/ss/holder.out)" = 65536 ]; tap $? module/holder_spliced
out=$(rmmod stable_splice 2>&1); r=$?
echo "#   rmmod while held: status $r: $out"
[ $r != 0 ] && grep -q '^stable_splice ' /proc/modules && echo "$out" | grep -qi 'in use'
tap $? module/rmmod_refused_while_held
[ "$(cat /sys/kernel/debug/stable_splice/holds_active)" -gt 0 ]; tap $? module/counters_show_holds
# Reaping at once ends only holds nobody reads: the holder's pipe still does.
echo 1 >/sys/kernel/debug/stable_splice/reap
[ "$(cat /sys/kernel/debug/stable_splice/holds_active)" -gt 0 ]; tap $? module/reap_keeps_read_holds
kill $holder; wait $holder 2>/dev/null
ss_wait_holds_released; tap $? module/holds_end_with_pipe
timeout 60 sync; tap $? module/sync_completes
# A process in the stable mode keeps the module: unloading it would turn a
# running server's splices back into plain ones without a word.
mp=/sys/kernel/debug/stable_splice/mode_processes
"$SS_TOOL" exec -- sleep 60 &
moded=$!
for i in $(seq 100); do [ "$(cat $mp)" = 1 ] && break; sleep 0.1; done
[ "$(cat $mp)" = 1 ]; tap $? module/mode_counts_the_process
out=$(rmmod stable_splice 2>&1); r=$?
echo "#   rmmod with a process in the stable mode: status $r: $out"
[ $r != 0 ] && grep -q '^stable_splice ' /proc/modules && echo "$out" | grep -qi 'in use'
tap $? module/rmmod_refused_while_a_process_is_in_the_mode
kill $moded; wait $moded 2>/dev/null
for i in $(seq 100); do [ "$(cat $mp)" = 0 ] && break; sleep 0.1; done
[ "$(cat $mp)" = 0 ]; tap $? module/mode_left_at_exit
rmmod stable_splice; tap $? module/rmmod_after_pipes_closed
ok=0
# (each insmod runs the KUnit suite, whose holds end a second later)
for i in $(seq 1 10); do
	ss_insmod >/dev/null 2>&1 && ss_rmmod || { ok=1; break; }
done
tap $ok module/insmod_rmmod_x10
# debugfs readers and reap writers racing the unload: the files go first
# (their removal waits for a walk in progress), then the holds they walk.
ok=0
dbg=/sys/kernel/debug/stable_splice
for i in $(seq 1 5); do
	ss_insmod >/dev/null 2>&1 || { ok=1; break; }
	(while [ -e $dbg/reap ]; do echo 1 >$dbg/reap; cat $dbg/holds $dbg/split_window_after/times; done) >/dev/null 2>&1 &
	busy=$!
	ss_rmmod || { ok=1; kill $busy; wait $busy; break; }
	wait $busy
done
tap $ok module/rmmod_while_debugfs_busy
echo "---- policy parameter ----"
ss_insmod policy=bogus >/dev/null 2>&1
r=$?; grep -q '^stable_splice ' /proc/modules; loaded=$?
[ $r != 0 ] && [ $loaded != 0 ]; tap $? module/policy_invalid_refused
# The KUnit suite runs at insmod in a kthread that splices and then writes
# the file itself: under block that write waits for its own pipe. Keep the
# suite out of this load.
kglob=/sys/module/kunit/parameters/filter_glob
[ -w $kglob ] && echo no_such_suite >$kglob
timeout 60 insmod "$SS_KO" $SS_KO_PARAMS policy=block; tap $? module/insmod_policy_block
[ -w $kglob ] && echo '*' >$kglob
retap < <(timeout 120 python3 "$SS_ROOT/scripts/lib/policy-block.py" /tmp/ss/ext4 /tmp/ss/xfs 2>&1 || echo "not ok - policy_block/script (status $?)")
ss_rmmod; tap $? module/rmmod_policy_block
# The writers' redirects as direct calls (direct_calls=1), and beside BPF
# programs on their functions; leaves the module unloaded.
bash "$SS_ROOT/scripts/lib/writer-redirects.sh" || rc=1
grep -q '^stable_splice ' /proc/modules && ss_rmmod
# Without the module the flag is back to upstream's EINVAL.
"$BIN" --expect-no-module --dir /tmp/ss/ext4 --fs-label unloaded --filter flag_einval_without_module || rc=1
ss_insmod >/dev/null 2>&1; tap $? module/reload
exit $rc
