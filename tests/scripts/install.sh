#!/usr/bin/env bash
# Installing stable_splice.ko like other out-of-tree modules, on the host,
# against the cached test kernel, without touching the system: `make
# install` / `make uninstall` into a staging root, DKMS add, build, install
# and remove in private trees, and what modinfo says. Works on a copy of the
# repository's tracked files (the tests' own build stays as it is). Prints
# TAP lines that scripts/check counts.
set -u
cd "$(dirname "$0")/../.."
. scripts/lib/common.sh
KDIR=$(ss_kdir)
KREL=$(cat "$KDIR/include/config/kernel.release")
n=0 rc=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tap() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - install/$2"; else echo "not ok $n - install/$2${3:+ # $3}"; rc=1; fi
}

git ls-files -z | (mkdir -p "$tmp/repo" && cpio -0pdm --quiet "$tmp/repo")
root=$tmp/root
# The kernel's own modules.* files, as a distribution kernel has them.
make -s -C "$KDIR" modules_install INSTALL_MOD_PATH="$root" >"$tmp/kmods.log" 2>&1
tap $? staging_root_has_the_kernel "$(tail -1 "$tmp/kmods.log")"

# ---- the progress of a long build (scripts/setup's kernel build), with a
# stand-in for make that prints build steps and then fails
fake=$tmp/fake-make
printf '#!/bin/sh\nfor i in 1 2 3 4 5 6; do echo "  CC      obj$i.o"; sleep 1; done\necho "obj6.c:1: error: no"; exit 2\n' >"$fake"
chmod +x "$fake"
SS_PROGRESS_SECS=2 ss_make_with_progress "$tmp/fake.log" 6 "$fake" 2>"$tmp/progress.err"
st=$?
[ $st = 2 ]; tap $? build_progress_keeps_the_status "status $st"
grep -Eq '^    [0-9]/~6 build steps \([0-9]+%\)' "$tmp/progress.err"; tap $? build_progress_reports_steps "$(head -2 "$tmp/progress.err" | tr '\n' '|')"
grep -q "the whole make output is in $tmp/fake.log" "$tmp/progress.err" && grep -q 'error: no' "$tmp/progress.err"
tap $? build_failure_names_the_log

# ---- make install / uninstall
make -s -C "$tmp/repo" install KDIR="$KDIR" INSTALL_MOD_PATH="$root" >"$tmp/install.log" 2>&1
tap $? make_install "$(tail -1 "$tmp/install.log")"
ko=$root/lib/modules/$KREL/extra/stable_splice.ko
[ -f "$ko" ]; tap $? module_lands_in_extra
grep -q '^extra/stable_splice.ko:' "$root/lib/modules/$KREL/modules.dep"; tap $? depmod_lists_it
modprobe -d "$root" -S "$KREL" --show-depends stable_splice 2>&1 | grep -q "^insmod .*/extra/stable_splice.ko"
tap $? modprobe_finds_it
parm=$(modinfo -F parm "$ko")
echo "$parm" | grep -q '^policy:cow (default): .*block: .*(string)$'; tap $? modinfo_describes_policy "$parm"
modinfo -F description "$ko" | grep -q SPLICE_F_STABLE; tap $? modinfo_describes_module
"$root/usr/local/bin/stable-splice" --help | grep -q '^usage: stable-splice exec'; tap $? tool_lands_in_bindir
make -s -C "$tmp/repo" uninstall KDIR="$KDIR" INSTALL_MOD_PATH="$root" >/dev/null 2>&1 &&
	[ ! -e "$ko" ] && ! grep -q stable_splice "$root/lib/modules/$KREL/modules.dep" &&
	[ ! -e "$root/usr/local/bin/stable-splice" ]
tap $? make_uninstall

# ---- DKMS, in private trees; depmod run here against the staging root
if command -v dkms >/dev/null; then
	D=(--dkmstree "$tmp/dkms" --sourcetree "$tmp/src")
	mkdir -p "$tmp/dkms" "$tmp/src"
	ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$tmp/repo/dkms.conf")
	dkms add "${D[@]}" "$tmp/repo" >"$tmp/dkms.log" 2>&1; tap $? dkms_add "$(tail -1 "$tmp/dkms.log")"
	dkms build "${D[@]}" -m stable-splice -v "$ver" -k "$KREL" --kernelsourcedir "$KDIR" >>"$tmp/dkms.log" 2>&1
	tap $? dkms_build "$(tail -1 "$tmp/dkms.log")"
	dkms install "${D[@]}" -m stable-splice -v "$ver" -k "$KREL" --kernelsourcedir "$KDIR" \
		--installtree "$root/lib/modules" --no-depmod >>"$tmp/dkms.log" 2>&1 &&
		depmod -b "$root" "$KREL" &&
		modprobe -d "$root" -S "$KREL" --show-depends stable_splice 2>&1 | grep -q "^insmod .*stable_splice.ko"
	tap $? dkms_install "$(tail -1 "$tmp/dkms.log")"
	dkms status "${D[@]}" | grep -q "stable-splice/$ver, $KREL, .*: installed"; tap $? dkms_status_installed
	dkms remove "${D[@]}" -m stable-splice -v "$ver" -k "$KREL" --installtree "$root/lib/modules" --no-depmod \
		>>"$tmp/dkms.log" 2>&1 && depmod -b "$root" "$KREL" && ! grep -q stable_splice "$root/lib/modules/$KREL/modules.dep"
	tap $? dkms_remove "$(tail -1 "$tmp/dkms.log")"
else
	tap 1 dkms_available "dkms not installed: run scripts/setup"
fi
exit $rc
