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
step() { printf '==> [%d s] %s\n' "$SECONDS" "$*" >&2; }
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

# The Debian mirror this machine's apt already names (never a host of our own).
ss_debian_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && u && $0 !~ /security/ {print u; exit}' "$f")
		case $uri in */debian|*/debian/) echo "${uri%/}"; return ;; esac
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		uri=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit} }' "$f")
		case $uri in */debian|*/debian/) echo "${uri%/}"; return ;; esac
	done
}

# ss_private_apt: sets APT and APT_OPTS, an apt for $SS_SUITE with private
# state in $SS_CACHE/apt (the machine's sources stay untouched), lists at
# most a day old.
ss_private_apt() {
	local mirror
	APT=$SS_CACHE/apt
	mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
	mirror=$(ss_debian_mirror)
	[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}: cannot fetch from $SS_SUITE"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SS_SUITE main" >"$APT/sources.list"
	APT_OPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Debug::NoLocking=1)
	if [ -z "$(find "$APT/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
		note "apt update ($SS_SUITE, private state in $APT)"
		apt-get -q "${APT_OPTS[@]}" update >"$APT/update.log" 2>&1 || {
			tail -5 "$APT/update.log" >&2; die "apt-get update of $SS_SUITE failed (see $APT/update.log)"; }
	fi
}

# ss_linux_source VERSION: Debian's linux-source-$SS_SERIES of VERSION
# unpacked in $SS_CACHE/src/linux-VERSION (downloaded once); prints the path.
# Needs ss_private_apt first.
ss_linux_source() {
	local ver=$1 src=$SS_CACHE/src/linux-$1 deb tarball
	if [ ! -f "$src/.stable-splice-extracted" ]; then
		mkdir -p "$SS_CACHE/src"
		deb=$(ls "$APT"/linux-source-"$SS_SERIES"_"${ver//:/%3a}"_all.deb 2>/dev/null | head -1 || true)
		if [ -z "$deb" ]; then
			note "downloading linux-source-$SS_SERIES=$ver"
			(cd "$APT" && apt-get -q "${APT_OPTS[@]}" download "linux-source-$SS_SERIES=$ver" >&2) ||
				die "apt-get download linux-source-$SS_SERIES=$ver failed"
			deb=$(ls "$APT"/linux-source-"$SS_SERIES"_"${ver//:/%3a}"_all.deb | head -1)
		fi
		note "extracting $(basename "$deb")"
		rm -rf "$src" "$src.pkg"
		dpkg-deb -x "$deb" "$src.pkg" || die "dpkg-deb -x $deb failed"
		tarball=$(ls "$src.pkg"/usr/src/linux-source-"$SS_SERIES".tar.* | head -1)
		mkdir -p "$src"
		tar -xf "$tarball" -C "$src" --strip-components=1 || { rm -rf "$src"; die "extracting $tarball failed"; }
		rm -rf "$src.pkg"
		touch "$src/.stable-splice-extracted"
	fi
	echo "$src"
}

# ss_rust_symbols_missing SYMVERS BUILD: how many Rust symbols that the
# kernel exports (its Module.symvers) the crates of BUILD (a tree where
# `make modules_prepare` ran) do not define by name. 0 means modules built
# against BUILD link to that kernel: the names carry the compiler's version.
ss_rust_symbols_missing() {
	comm -23 <(awk '$2 ~ /^_R/ {print $2}' "$1" | sort -u) \
		<(for o in "$2"/rust/*.o; do nm --defined-only "$o" | awk '{print $3}'; done | grep '^_R' | sort -u) | wc -l
}

# Debian's own kernel (scripts/setup-debian): the trixie-backports packages,
# unpacked, and the build tree made for it in a Debian trixie root with
# Debian's toolchain.
SS_DEBIAN_FLAVOUR=amd64
SS_DEBIAN_DIR=$SS_CACHE/debian
# The kernel release of Debian's kernel that setup-debian prepared.
ss_debian_kver() {
	cat "$SS_DEBIAN_DIR/current/kver" 2>/dev/null ||
		die "Debian's kernel is not prepared: run scripts/setup (or scripts/setup-debian)"
}
ss_debian_current() { (cd "$SS_DEBIAN_DIR/current" 2>/dev/null && pwd -P) ||
	die "Debian's kernel is not prepared: run scripts/setup (or scripts/setup-debian)"; }

# ss_debian_chroot ROOT CMD...: CMD in the Debian root ROOT, with $SS_CACHE
# and $SS_ROOT at their own paths (bind mounts private to the command).
ss_debian_chroot() {
	local root=$1
	shift
	unshare -m bash -euc '
		root=$1 cache=$2 repo=$3; shift 3
		mkdir -p "$root$cache" "$root$repo"
		mount --bind "$cache" "$root$cache"
		mount --bind "$repo" "$root$repo"
		mount -t proc proc "$root/proc"
		exec chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
			LIBCLANG_PATH=/usr/lib/llvm-19/lib "$@"' ss-chroot "$root" "$SS_CACHE" "$SS_ROOT" "$@"
}
