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

/*
 * The splice entry points (direct_calls=1). __x64_sys_splice(regs): the
 * user's r9 (the flags) is at SS_PT_REGS_R9_OFFSET of the frame;
 * SPLICE_F_STABLE there, or the mark of a stable call (bit 63,
 * src/calls.rs: the sign), sends the call to the replacement, but for the
 * replacement's own call, made on a frame of its own whose orig_ax is
 * SS_SYSCALL_FROM_REPLACEMENT: no system call's number, which the entry
 * code stores there in every frame it builds.
 */
#define SS_PT_REGS_R9_OFFSET		64
#define SS_PT_REGS_ORIG_AX_OFFSET	120
#define SS_SYSCALL_FROM_REPLACEMENT	(-0x5353)
#define SS_SPLICE_STABLE		0x10

/*
 * do_splice_read() and do_splice() are asked about only while some stable
 * splice is in flight or some process is in the stable mode: the counters
 * at these offsets of ss_counters (src/counters.rs checks them). A
 * replacement's own do_splice_read() call carries
 * SS_SPLICE_FROM_REPLACEMENT in its flags, a bit no SPLICE_F_ uses
 * (SPLICE_F_FD_IN_FIXED included).
 */
#define SS_COUNTERS_CALLS_IN_FLIGHT	0
#define SS_COUNTERS_MODE_PROCESSES	8
#define SS_SPLICE_FROM_REPLACEMENT	0x40000000

/*
 * While a process is in the stable mode, do_splice_read()'s trampoline
 * asks about the calling task only if its slot of ss_mode_filter (src/mode.rs:
 * SS_MODE_FILTER_SLOTS 32-bit counters by tgid, whose low byte indexes
 * them) is counted; the tgid is at ss_task_tgid_offset of current.
 */
#define SS_MODE_FILTER_SLOTS		256

#ifndef __ASSEMBLY__
static inline bool ss_fgp_writer_lookup(unsigned int fgp)
{
	return (fgp & SS_FGP_LOCK_BIT) && (fgp & SS_FGP_WRITER_BITS);
}
#endif

#endif
