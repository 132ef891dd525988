/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * stable-splice: SPLICE_F_STABLE for splice(2), provided by the
 * stable_splice kernel module.
 *
 * splice(fd_file, &off, pipe_w, NULL, len, SPLICE_F_STABLE) moves file data
 * into a pipe as a snapshot taken when splice() returns: later writes to the
 * file never show through to whoever drains the pipe.
 *
 * Without the module loaded the kernel rejects the flag with EINVAL, so a
 * caller can probe for support with a one-byte splice (a zero-length splice
 * returns 0 before the kernel looks at the flags). A pipe as the source is
 * refused with EINVAL.
 */
#ifndef _UAPI_LINUX_STABLE_SPLICE_H
#define _UAPI_LINUX_STABLE_SPLICE_H

#include <linux/ioctl.h>

/* The next free bit after SPLICE_F_GIFT (0x08); SPLICE_F_ALL is 0x0f. */
#define SPLICE_F_STABLE (0x10)

/*
 * Stable mode, for programs that do not pass the flag (sendfile() servers):
 * ioctls on /dev/stable_splice (mode 0666). They act on the calling process
 * (its whole thread group) and nothing else; processes it starts afterwards
 * inherit the mode, which survives execve(). In the mode, every splice from
 * a page-cache file into a pipe is stable: splice() with or without the
 * flag, sendfile(), IORING_OP_SPLICE. A splice from a pipe is left as it
 * is. Each process in the mode keeps the module loaded.
 *
 * STABLE_SPLICE_SET_MODE: argument 1 enters the mode, 0 leaves it; returns 0.
 * STABLE_SPLICE_GET_MODE: returns 1 if the caller is in the mode, else 0.
 *
 * Reading /dev/stable_splice gives the module's policy and counters as
 * "name value" lines.
 */
#define STABLE_SPLICE_IOC_MAGIC 0xB5
#define STABLE_SPLICE_SET_MODE _IO(STABLE_SPLICE_IOC_MAGIC, 1)
#define STABLE_SPLICE_GET_MODE _IO(STABLE_SPLICE_IOC_MAGIC, 2)

/*
 * STABLE_SPLICE_FILE_INFO: argument an open file descriptor of a regular
 * file; returns how a stable splice from it gets its snapshot, one of
 * STABLE_SPLICE_HELD..STABLE_SPLICE_COPY_DAX, or'ed with
 * STABLE_SPLICE_LARGE_FOLIOS when its page cache may hold large folios
 * (they are held like small ones). EBADF for a bad descriptor, EINVAL for
 * one that is not a regular file.
 *
 * HELD: zero copy, the pipe keeps the page-cache pages, a writer that
 *       reaches one puts a copy in its place (ext4 without data
 *       journalling, xfs).
 * COPY_JOURNALLED: copied at splice time: ext4 journals this file's data
 *       (data=journal, chattr +j), inside journal handles where no copy
 *       may take a page's place.
 * COPY_FS: copied at splice time: a file system whose writers the module
 *       does not intercept (tmpfs, btrfs, network file systems, ...).
 * COPY_DAX: copied at splice time: DAX has no page cache to hold.
 */
#define STABLE_SPLICE_FILE_INFO _IO(STABLE_SPLICE_IOC_MAGIC, 3)
#define STABLE_SPLICE_HELD 0
#define STABLE_SPLICE_COPY_JOURNALLED 1
#define STABLE_SPLICE_COPY_FS 2
#define STABLE_SPLICE_COPY_DAX 3
#define STABLE_SPLICE_LARGE_FOLIOS 0x100

#endif /* _UAPI_LINUX_STABLE_SPLICE_H */
