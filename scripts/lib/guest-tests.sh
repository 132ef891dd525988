#!/usr/bin/env bash
# Inside the VM, module loaded (scripts/check runs this through vm-run):
# the user-space contract tests on ext4, xfs and tmpfs, then the module's
# load/unload cycle. Prints TAP lines that scripts/check counts.
set -u
BIN=$SS_ROOT/tests/userspace/target/release/stable-splice-tests
rc=0
for dir in $SS_FS_DIRS; do
	fs=$(basename "$dir")
	echo "---- user-space tests on $fs ($dir) ----"
	"$BIN" --dir "$dir" --fs-label "$fs" --expect-module || rc=1
done

echo "---- module lifecycle ----"
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - module/$2"; else echo "not ok $n - module/$2"; rc=1; fi; }
rmmod stable_splice; tap $? rmmod_after_tests
ok=0
for i in $(seq 1 10); do
	insmod "$SS_KO" >/dev/null 2>&1 && rmmod stable_splice || { ok=1; break; }
done
tap $ok insmod_rmmod_x10
# Without the module the flag is back to upstream's EINVAL.
"$BIN" --expect-no-module --dir /tmp/ss/ext4 --fs-label unloaded --filter flag_einval_without_module || rc=1
insmod "$SS_KO" >/dev/null 2>&1; tap $? reload
exit $rc
