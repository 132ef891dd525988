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
