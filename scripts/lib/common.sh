# Shared settings for stable-splice scripts. Sourced, not executed.
# shellcheck shell=bash

SS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SS_CACHE=${STABLE_SPLICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stable-splice}
SS_SERIES=7.3                       # kernel series pinned; newest patch level taken
SS_SUITE=trixie-backports           # Debian suite that carries linux-source-$SS_SERIES
SS_VIRTME_VERSION=1.42              # virtme-ng from PyPI
SS_BINDGEN_VERSION=0.73.2           # bindgen-cli from crates.io
SS_LLVM=19                          # Debian's llvm-19: libclang for bindgen
SS_FRAGMENT=$SS_ROOT/scripts/kernel.config
SS_VENV=$SS_CACHE/venv
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-$SS_LLVM/lib}
export PATH="$HOME/.cargo/bin:$SS_VENV/bin:$PATH"

die() { echo "error: $*" >&2; exit 1; }
step() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }

# The kernel build directory that `make` and `scripts/vm-run` use by default:
# a symlink maintained by scripts/setup to the build keyed by version + config.
ss_default_kdir() { echo "$SS_CACHE/kernel"; }

ss_kdir() {
	local k=${KDIR:-$(ss_default_kdir)}
	[ -e "$k" ] || die "no kernel build at $k: run scripts/setup (or set KDIR to a Rust-enabled kernel build tree)"
	[ -f "$k/.config" ] || die "KDIR=$k is not a configured kernel build tree (no .config)"
	grep -q '^CONFIG_RUST=y' "$k/.config" || die "kernel at $k has no CONFIG_RUST=y: stable-splice is a Rust module"
	(cd "$k" && pwd -P)
}

# Where vm-run caches its KVM-or-TCG answer for kernel image $1: per host
# boot, image and qemu binary, since any of them changes the answer.
ss_accel_cache() {
	local key
	key=$( (cat /proc/sys/kernel/random/boot_id; stat -c %Y "$1"; qemu-system-x86_64 --version | head -1) |
		sha256sum | cut -c1-16)
	echo "$SS_CACHE/accel-$key"
}

# ss_make_with_progress LOG TOTAL CMD...: runs CMD (a kernel make) with its
# output in LOG and shows progress on stderr: build steps (the make lines
# "  CC ...", "  LD ...") out of about TOTAL, every 2 s in place on a
# terminal, a line a minute otherwise (CI logs; SS_PROGRESS_SECS changes
# the minute). On failure the error lines and the log's path are printed
# and the status is CMD's.
ss_make_with_progress() {
	local log=$1 total=$2 pid rc t0 last=0 n pct now
	[ "$total" -gt 0 ] 2>/dev/null || total=1
	shift 2
	t0=$(date +%s)
	"$@" >"$log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 2
		now=$(date +%s)
		n=$(grep -c '^  [A-Z]' "$log" 2>/dev/null || true)
		pct=$((n * 100 / total)); [ "$pct" -gt 99 ] && pct=99
		if [ -t 2 ]; then
			printf '\r    %d/~%d build steps (%d%%), %d:%02d elapsed ' "$n" "$total" "$pct" \
				$(((now - t0) / 60)) $(((now - t0) % 60)) >&2
		elif [ $((now - last)) -ge "${SS_PROGRESS_SECS:-60}" ]; then
			last=$now
			note "$n/~$total build steps ($pct%), $(((now - t0) / 60)) min elapsed"
		fi
	done
	[ -t 2 ] && printf '\n' >&2
	rc=0; wait "$pid" || rc=$?
	if [ $rc != 0 ]; then
		grep -E 'error|Error' "$log" | head -20 >&2
		note "build failed; the whole make output is in $log"
	fi
	return $rc
}
