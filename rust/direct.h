/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Constants shared by rust/trampolines.S and rust/direct.c, which checks
 * them against the kernel's definitions at build time.
 */
#ifndef STABLE_SPLICE_DIRECT_H
#define STABLE_SPLICE_DIRECT_H

/* FGP_LOCK, and FGP_WRITE | FGP_CREAT: a writer's page-cache lookup */
#define SS_FGP_LOCK_BIT		0x00000002
#define SS_FGP_WRITER_BITS	0x0000000c

#endif
