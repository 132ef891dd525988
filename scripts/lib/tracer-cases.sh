#!/usr/bin/env bash
# Inside a one-vCPU VM (scripts/check), module loaded: the cases that start
# ftrace's tracers and kretprobes beside the module's redirects
# (snapshot_beside_*) and those that take the splice entry points' redirects
# out and put them back (entries_*), with the redirects as ftrace callbacks
# (the default), then as direct calls (direct_calls=1). One vCPU: patching
# kernel text has killed two-vCPU TCG guests now and then
# (Documentation/stable-splice.rst, "Redirects on the paths of unrelated
# work"). TAP lines.
set -u
. "$SS_ROOT/scripts/lib/holds.sh"
BIN=$SS_ROOT/tests/userspace/target/release/stable-splice-tests
rc=0
"$BIN" --dir /tmp/ss/ext4 --fs-label one-vcpu/ext4 --expect-module --filter snapshot_beside_,entries_ || rc=1
ss_rmmod && ss_insmod direct_calls=1
if [ $? != 0 ]; then
	echo "not ok 1 - one-vcpu-direct/reload_with_direct_calls_1"
	exit 1
fi
"$BIN" --dir /tmp/ss/ext4 --fs-label one-vcpu-direct/ext4 --expect-module --filter snapshot_beside_,entries_ || rc=1
exit $rc
