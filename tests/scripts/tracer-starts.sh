#!/usr/bin/env bash
# A probe, not part of make check: starts and stops the function and
# function_graph tracers on the two functions the module redirects with
# direct calls, ROUNDS times, while dd writes on the other CPU. Run it
# without the module to tell the TCG guest's "Oops: int3" from the module's
# redirects (Documentation/stable-splice.rst, "Redirects on the paths of unrelated work"):
#
#   VM_VERBOSE=1 scripts/vm-run --no-module -- tests/scripts/tracer-starts.sh 150
#
# With two vCPUs (vm-run's default) the guest died within 12 rounds in
# every run of more than 3; with VM_CPUS=1 it never did in 100.
#
# Prints "round N ok" per round; a guest that dies prints its Oops instead.
set -euo pipefail
rounds=${1:-60}
t=/sys/kernel/tracing
dir=${SS_FS_DIRS%% *}   # the first scratch mount vm-run made (ext4)
[ -e $t/current_tracer ] || mount -t tracefs nodev $t
( while :; do dd if=/dev/zero of="$dir/tracer-bg" bs=4k count=256 conv=notrunc status=none; done ) &
writer=$!
trap 'kill $writer' EXIT
for i in $(seq "$rounds"); do
	for tracer in function function_graph; do
		echo > $t/trace
		echo "__filemap_get_folio_mpol do_page_mkwrite" > $t/set_ftrace_filter
		echo $tracer > $t/current_tracer
		dd if=/dev/zero of="$dir/tracer-fg" bs=4k count=64 conv=notrunc status=none
		echo nop > $t/current_tracer
		echo > $t/set_ftrace_filter
	done
	echo "round $i ok"
done
