/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Constants shared by rust/trampolines.S and rust/direct.c, which checks
 * them against the kernel's definitions at build time.
 */
#ifndef STABLE_SPLICE_DIRECT_H
#define STABLE_SPLICE_DIRECT_H

/*
 * FGP_LOCK, and FGP_WRITE or FGP_CREAT: a writer's page-cache lookup, which
 * locks the folio to write it (write_begin, FGP_WRITEBEGIN) or to create it.
 * The only lookups that go to the replacement: the trampoline tests these
 * bits in two instructions, the callback with ss_fgp_writer_lookup().
 */
#define SS_FGP_LOCK_BIT		0x00000002
#define SS_FGP_WRITER_BITS	0x0000000c

/*
 * A replacement's own call of its original carries a mark in its arguments
 * that the trampoline takes off and lets through: an fgp bit that no FGP_
 * flag and no folio order uses, and a fault flag that no FAULT_FLAG_ uses.
 * Not the caller's return address: the function graph tracer, kretprobes
 * and fprobes replace it.
 */
#define SS_FGP_FROM_REPLACEMENT		0x02000000
#define SS_FAULT_FROM_REPLACEMENT	0x40000000

#ifndef __ASSEMBLY__
static inline bool ss_fgp_writer_lookup(unsigned int fgp)
{
	return (fgp & SS_FGP_LOCK_BIT) && (fgp & SS_FGP_WRITER_BITS);
}
#endif

#endif
