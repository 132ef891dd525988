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

/* The next free bit after SPLICE_F_GIFT (0x08); SPLICE_F_ALL is 0x0f. */
#define SPLICE_F_STABLE (0x10)

#endif /* _UAPI_LINUX_STABLE_SPLICE_H */
