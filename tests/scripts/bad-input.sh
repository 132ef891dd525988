#!/usr/bin/env bash
# Bad input to the project's scripts: each must end with a one-line reason
# on stderr and a non-zero exit, and leave nothing half-built behind.
# Runs on the host; prints TAP lines that scripts/check counts.
set -u
cd "$(dirname "$0")/../.."
n=0 rc=0
tmp=$(mktemp -d)
trap 'mountpoint -q "$tmp/small" && umount "$tmp/small"; rm -rf "$tmp"' EXIT

# expect NAME CMD...: CMD fails, says "error: ..." in one stderr line.
expect() {
	local name=$1; shift
	n=$((n + 1))
	"$@" >/dev/null 2>"$tmp/err.raw"
	local st=$?
	# make's own "make: *** [...] Error 1" trailer is not ours to shorten.
	grep -v '^make\(\[[0-9]*\]\)\?: \*\*\*' "$tmp/err.raw" >"$tmp/err"
	local lines; lines=$(grep -c . "$tmp/err")
	if [ $st != 0 ] && [ "$lines" = 1 ] && grep -q '^error: ' "$tmp/err"; then
		echo "ok $n - scripts/$name"
	else
		echo "not ok $n - scripts/$name # status $st, stderr: $(head -3 "$tmp/err" | tr '\n' '|')"
		rc=1
	fi
}

mkdir -p "$tmp/norust"
echo 'CONFIG_MODULES=y' >"$tmp/norust/.config"

expect make_missing_kdir make -s KDIR="$tmp/missing" module
expect make_kdir_without_rust make -s KDIR="$tmp/norust" module
expect vm_run_missing_kdir env KDIR="$tmp/missing" scripts/vm-run -- true
expect vm_run_kdir_without_rust env KDIR="$tmp/norust" scripts/vm-run -- true
expect vm_run_no_command scripts/vm-run
expect vm_run_unknown_option scripts/vm-run --frobnicate -- true
expect setup_unknown_option scripts/setup --frobnicate
expect soak_unknown_option scripts/soak --frobnicate
expect soak_bad_rounds scripts/soak --rounds 0
expect soak_bad_stress_secs scripts/soak --stress-secs five
expect soak_bad_kernel scripts/soak --kernel other
expect soak_missing_value scripts/soak --rounds

# No space: a 64 MiB cache cannot hold a kernel build.
if [ "$(id -u)" = 0 ] && mkdir -p "$tmp/small" && mount -t tmpfs -o size=64M none "$tmp/small" 2>/dev/null; then
	expect setup_no_space env STABLE_SPLICE_CACHE="$tmp/small/cache" scripts/setup
	n=$((n + 1))
	if [ -z "$(ls -A "$tmp/small/cache" 2>/dev/null)" ]; then
		echo "ok $n - scripts/setup_no_space_leaves_nothing"
	else
		echo "not ok $n - scripts/setup_no_space_leaves_nothing # $(ls "$tmp/small/cache")"; rc=1
	fi
else
	n=$((n + 1)); echo "ok $n - scripts/setup_no_space # SKIP needs root to mount a small tmpfs"
fi
exit $rc
