# Scratch file systems inside the test VM: ext4 (default options,
# nodelalloc, data=journal) and xfs (reflink=1) on loop devices (images in
# the guest's tmpfs /tmp) and a tmpfs, at /tmp/ss/{ext4,ext4-nodelalloc,
# ext4-journal,xfs,tmpfs}. ext4 and ext4-journal have 4 KiB blocks (what
# a real file system has: one buffer head a page), ext4-nodelalloc 1 KiB
# blocks (mke2fs's choice for a small image: four a page), so both shapes
# of a folio's buffer ring are tested. ext4-inline and
# ext4-inline-nodelalloc (small, mkfs -O inline_data) are not in
# SS_FS_DIRS: holds_ext4_inline_data uses them from the ext4 run.
# Sourced by scripts/lib/guest.sh; tests find them through SS_FS_DIRS.
# shellcheck shell=bash

SS_FS_BASE=/tmp/ss
SS_FS_DIRS="$SS_FS_BASE/ext4 $SS_FS_BASE/ext4-nodelalloc $SS_FS_BASE/ext4-journal $SS_FS_BASE/xfs $SS_FS_BASE/tmpfs"
export SS_FS_BASE SS_FS_DIRS

# The guest's /tmp is an overlay of the host's: put everything on a tmpfs.
scratch_fs_mount() {
	local dev
	mkdir -p "$SS_FS_BASE" && mount -t tmpfs -o size=1600M,mode=1777 ss-scratch "$SS_FS_BASE" || return 1
	mkdir -p "$SS_FS_BASE"/{img,ext4,ext4-nodelalloc,ext4-journal,ext4-inline,ext4-inline-nodelalloc,xfs,tmpfs} || return 1
	scratch_ext4 ext4 256M defaults 4096 || return 1
	scratch_ext4 ext4-nodelalloc 160M nodelalloc 1024 || return 1
	scratch_ext4 ext4-journal 160M data=journal 4096 || return 1
	scratch_ext4 ext4-inline 16M defaults 4096 -O inline_data -I 256 || return 1
	scratch_ext4 ext4-inline-nodelalloc 16M nodelalloc 4096 -O inline_data -I 256 || return 1
	truncate -s 320M "$SS_FS_BASE/img/xfs.img" && mkfs.xfs -q -f -m reflink=1 "$SS_FS_BASE/img/xfs.img" &&
		dev=$(losetup -f --show "$SS_FS_BASE/img/xfs.img") && mount "$dev" "$SS_FS_BASE/xfs" || return 1
	mount -t tmpfs -o size=256M ss-tmpfs "$SS_FS_BASE/tmpfs" || return 1
	chmod 1777 "$SS_FS_BASE"/{ext4,ext4-nodelalloc,ext4-journal,ext4-inline,ext4-inline-nodelalloc,xfs,tmpfs}
}

# scratch_ext4 NAME SIZE MOUNT-OPTIONS BLOCK-SIZE [MKFS-OPTION...]
scratch_ext4() {
	local dev name=$1 size=$2 opts=$3 bs=$4
	shift 4
	truncate -s "$size" "$SS_FS_BASE/img/$name.img" && mkfs.ext4 -q -F -b "$bs" "$@" "$SS_FS_BASE/img/$name.img" &&
		dev=$(losetup -f --show "$SS_FS_BASE/img/$name.img") && mount -o "$opts" "$dev" "$SS_FS_BASE/$name"
}

# Unmounts them and checks each image (e2fsck -fn, xfs_repair -n): what
# breaks left on the disk (a break moves a dirty folio's buffer heads or
# iomap state to its copy) must be a consistent file system. Status 1 if a
# check found a problem (its output is printed), 0 otherwise.
scratch_fs_umount() {
	local d img rc=0 out
	for d in ext4 ext4-nodelalloc ext4-journal ext4-inline ext4-inline-nodelalloc xfs tmpfs; do
		mountpoint -q "$SS_FS_BASE/$d" && umount "$SS_FS_BASE/$d"
	done
	losetup -D 2>/dev/null
	for d in ext4 ext4-nodelalloc ext4-journal ext4-inline ext4-inline-nodelalloc xfs; do
		img=$SS_FS_BASE/img/$d.img
		[ -f "$img" ] || continue
		if [ "$d" = xfs ]; then
			out=$(xfs_repair -n "$img" 2>&1)
		else
			out=$(e2fsck -fn "$img" 2>&1)
		fi || { echo "---- file system check of $d failed ----"; echo "$out" | tail -30; rc=1; }
	done
	mountpoint -q "$SS_FS_BASE" && umount "$SS_FS_BASE"
	return $rc
}
