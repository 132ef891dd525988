#!/usr/bin/env bash
# Installing on a Debian machine, as the README says, in the Debian trixie
# root of scripts/setup-debian standing in for a user's machine: Debian's
# linux-headers packages installed with apt, DKMS refusing to build the
# module against them as shipped (no rust/), scripts/debian-rust-headers
# completing them, `dkms install` building and signing the module, and
# `modprobe stable_splice` of that very file on Debian's kernel in the VM.
# Prints TAP lines that scripts/check counts.
set -u
cd "$(dirname "$0")/../.."
. scripts/lib/common.sh
D=$(ss_debian_current)
K=$(ss_debian_kver)
ROOT=$(cat "$D/root")
HEADERS=/usr/src/linux-headers-$K
n=0 rc=0
tap() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - debian-dkms/$2"; else echo "not ok $n - debian-dkms/$2${3:+ # $3}"; rc=1; fi
}
in_root() { ss_debian_chroot "$ROOT" bash -c "$1"; }
log=$D/dkms-test.log
: >"$log"

# ---- the user's steps: headers and DKMS from Debian's archive
in_root "export DEBIAN_FRONTEND=noninteractive
	dpkg -s dkms openssl linux-headers-$K >/dev/null 2>&1 && exit 0
	apt-get -q update && apt-get install -y -q --no-install-recommends dkms openssl $D/debs/*.deb" >>"$log" 2>&1
tap $? apt_installs_headers_and_dkms "$(tail -1 "$log")"

# Whatever an earlier run added goes, so the headers are as Debian ships them.
in_root "a=$HEADERS/rust/.stable-splice-added; [ -f \$a ] && (cd $HEADERS && xargs rm -f <\$a) && rm -f \$a
	dkms remove stable-splice/0.3 --all >/dev/null 2>&1; rm -rf /usr/src/stable-splice-0.3 /tmp/ss-dkms" >>"$log" 2>&1
git ls-files -z | (mkdir -p "$ROOT/tmp/ss-dkms" && cpio -0pdm --quiet "$ROOT/tmp/ss-dkms")
in_root "cd /tmp/ss-dkms && dkms add ." >>"$log" 2>&1
tap $? dkms_add "$(tail -1 "$log")"
in_root "dkms build stable-splice/0.3 -k $K" >>"$log" 2>&1
st=$?
in_root "grep -q 'target.json\" does not exist' /var/lib/dkms/stable-splice/0.3/build/make.log"
[ $st != 0 ] && [ $? = 0 ]; tap $? shipped_headers_cannot_build_rust_modules "dkms build status $st"

in_root "$SS_ROOT/scripts/debian-rust-headers --build $D/build $K" >>"$log" 2>&1
tap $? debian_rust_headers "$(tail -1 "$log")"
in_root "$SS_ROOT/scripts/debian-rust-headers --build $SS_CACHE/kernel $K" >>"$log" 2>&1
[ $? != 0 ]; tap $? debian_rust_headers_refuses_another_tree
in_root "dkms install stable-splice/0.3 -k $K" >>"$log" 2>&1
tap $? dkms_install "$(tail -1 "$log")"
ko=$(in_root "ls /lib/modules/$K/updates/dkms/stable_splice.ko*" 2>/dev/null | head -1)
[ -n "$ko" ] && modinfo -F vermagic "$ROOT$ko" | grep -q "^$K "; tap $? vermagic_is_debians "$ko"
modinfo -F signer "$ROOT$ko" 2>/dev/null | grep -q .; tap $? dkms_signed_it "$(modinfo -F signer "$ROOT$ko" 2>&1)"

# ---- modprobe of the DKMS-built file on Debian's kernel
stage=$D/dkms-stage
rm -rf "$stage" && mkdir -p "$stage/lib/modules/$K/updates/dkms"
cp "$ROOT$ko" "$stage/lib/modules/$K/updates/dkms/"
depmod -b "$stage" "$K" 2>>"$log"
out=$(scripts/vm-run --kernel debian --no-module -- bash -c "
	modprobe -d $stage -S $K stable_splice \$SS_KO_PARAMS && echo MODPROBE-OK
	tools/stable-splice/target/release/stable-splice probe
	grep -q '^stable_splice ' /proc/modules && rmmod stable_splice && echo RMMOD-OK" 2>&1)
vst=$?
echo "$out" >>"$log"
echo "$out" | grep -q MODPROBE-OK; tap $? modprobe_on_debians_kernel "$(echo "$out" | grep -iE 'error|modprobe' | head -2 | tr '\n' ' ')"
echo "$out" | grep -q 'SPLICE_F_STABLE works'; tap $? flag_works_after_modprobe
echo "$out" | grep -q RMMOD-OK && [ $vst = 0 ]; tap $? rmmod_and_clean_kernel_log "vm-run status $vst"

in_root "dkms remove stable-splice/0.3 --all && ! ls /lib/modules/$K/updates/dkms/stable_splice.ko* 2>/dev/null" >>"$log" 2>&1
tap $? dkms_remove
exit $rc
