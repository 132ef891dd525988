/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Direct ftrace trampolines for the redirects that sit on paths of
 * unrelated work, with direct_calls=1: every writer's page-cache lookup
 * and every store fault into a shared file mapping pass the first two,
 * every splice the three splice entry points (by default the writers'
 * twins in rust/direct.c and the splice entry points' callback in
 * src/ftrace.rs run as ftrace callbacks).
 *
 * The traced function's fentry call lands here with the function's
 * arguments in their registers and two return addresses on the stack:
 * (%rsp) back into the function behind its fentry call, 8(%rsp) to its
 * caller. A call that is left alone returns into the function. A
 * redirected one drops the first return address and jumps to the
 * replacement, which then returns straight to the caller. The caller's own
 * registers are the function's: only scratch registers that carry no
 * argument of the traced function are touched, and the mark of a
 * replacement's own call (direct.h) is taken off the argument it is in.
 */
#include <linux/linkage.h>
#include <asm/ibt.h>
#include <asm/nospec-branch.h>
#include <asm/percpu.h>
#include <asm/unwind_hints.h>
#include <linux/errno.h>
#include "direct.h"

	.text

/* Records where the traced function's body starts, once, in \site. */
.macro LEARN site
	cmpq	$0, \site(%rip)
	jne	.Lknown_\@
	movq	(%rsp), %r11
	movq	%r11, \site(%rip)
.Lknown_\@:
.endm

/* Turns the fentry call into a call of \target by the function's caller. */
.macro REDIRECT target
	addq	$8, %rsp
	UNWIND_HINT_FUNC
	jmp	\target
.endm

/* Pops \first and \rest, pushed in that order, in reverse. */
.macro POP_ALL first:req, rest:vararg
	.ifnb \rest
	POP_ALL \rest
	.endif
	popq	%\first
.endm

/*
 * Calls \fn, a C or Rust function, keeping the traced function's argument
 * registers listed in \regs (the callee may clobber every scratch
 * register); %rbp framed for the unwinder.
 */
.macro CALL_PRESERVING fn:req, regs:vararg
	pushq	%rbp
	movq	%rsp, %rbp
	.irp	r, \regs
	pushq	%\r
	.endr
	call	\fn
	POP_ALL	\regs
	popq	%rbp
.endm

/*
 * __filemap_get_folio_mpol(mapping, index, fgp_flags, gfp, policy): only
 * writers' lookups (FGP_LOCK with FGP_WRITE or FGP_CREAT, in %edx) go to
 * the replacement; readers' and faults' lookups cost four instructions.
 * The replacement's own lookups are marked: the mark comes off here.
 */
SYM_FUNC_START(ss_direct_get_folio)
	ENDBR
	CALL_DEPTH_ACCOUNT
	testl	$SS_FGP_LOCK_BIT, %edx
	jz	.Lpass_get_folio
	testl	$SS_FGP_WRITER_BITS, %edx
	jz	.Lpass_get_folio
	testl	$SS_FGP_FROM_REPLACEMENT, %edx
	jnz	.Lown_get_folio
	REDIRECT ss_redirected_get_folio
.Lown_get_folio:
	andl	$~SS_FGP_FROM_REPLACEMENT, %edx
.Lpass_get_folio:
	RET
SYM_FUNC_END(ss_direct_get_folio)

/*
 * do_page_mkwrite(vmf, folio): only stores into a mapping that may have
 * holds go to the replacement, and not its own call (marked in the fault's
 * flags); ss_page_mkwrite_wanted() decides (it may clobber every scratch
 * register; do_page_mkwrite has two arguments).
 */
SYM_FUNC_START(ss_direct_page_mkwrite)
	ENDBR
	CALL_DEPTH_ACCOUNT
	CALL_PRESERVING ss_page_mkwrite_wanted, rdi, rsi
	testb	%al, %al
	jz	.Lpass_page_mkwrite
	LEARN ss_page_mkwrite_site
	REDIRECT ss_redirected_page_mkwrite
.Lpass_page_mkwrite:
	RET
SYM_FUNC_END(ss_direct_page_mkwrite)

/*
 * __x64_sys_splice(regs): a splice() whose flags carry SPLICE_F_STABLE or
 * whose r9 carries the mark (bit 63, tested as the sign) goes to the
 * replacement, with a module reference it adopts (none while the module
 * is going: the kernel then answers the flag with EINVAL, as without the
 * module); every other splice() costs five instructions here. The
 * replacement's own call is made on a frame of its own, which no system
 * call entry makes: orig_ax there is no system call's number.
 */
SYM_FUNC_START(ss_direct_sys_splice)
	ENDBR
	CALL_DEPTH_ACCOUNT
	movq	SS_PT_REGS_R9_OFFSET(%rdi), %r11
	testq	%r11, %r11
	js	.Lask_sys_splice
	testl	$SS_SPLICE_STABLE, %r11d
	jnz	.Lask_sys_splice
	RET
.Lask_sys_splice:
	cmpq	$SS_SYSCALL_FROM_REPLACEMENT, SS_PT_REGS_ORIG_AX_OFFSET(%rdi)
	je	.Lpass_sys_splice
	CALL_PRESERVING ss_module_get, rdi
	testb	%al, %al
	jz	.Lpass_sys_splice
	REDIRECT ss_redirected_sys_splice
.Lpass_sys_splice:
	RET
SYM_FUNC_END(ss_direct_sys_splice)

/*
 * do_splice_read(in, ppos, pipe, len, flags): asked about only while a
 * stable splice is in flight, or while a process is in the stable mode and
 * the mode's filter counts the calling task's slot (direct.h; a task of
 * another process asks only when it shares a slot with a member)
 * (ss_do_splice_read_wanted() takes the module reference the replacement
 * adopts); the replacement's own call is marked in the flags (%r8d), and
 * the mark comes off here.
 */
SYM_FUNC_START(ss_direct_do_splice_read)
	ENDBR
	CALL_DEPTH_ACCOUNT
	testl	$SS_SPLICE_FROM_REPLACEMENT, %r8d
	jnz	.Lown_do_splice_read
	cmpq	$0, ss_counters+SS_COUNTERS_CALLS_IN_FLIGHT(%rip)
	jne	.Lask_do_splice_read
	cmpq	$0, ss_counters+SS_COUNTERS_MODE_PROCESSES(%rip)
	jne	.Lmode_do_splice_read
	RET
.Lmode_do_splice_read:
	movq	PER_CPU_VAR(current_task), %r11
	movq	ss_task_tgid_offset(%rip), %r10
	movzbl	(%r11,%r10), %r11d
	leaq	ss_mode_filter(%rip), %r10
	cmpl	$0, (%r10,%r11,4)
	jne	.Lask_do_splice_read
	RET
.Lask_do_splice_read:
	CALL_PRESERVING ss_do_splice_read_wanted, rdi, rsi, rdx, rcx, r8
	testb	%al, %al
	jz	.Lpass_do_splice_read
	REDIRECT ss_redirected_do_splice_read
.Lown_do_splice_read:
	andl	$~SS_SPLICE_FROM_REPLACEMENT, %r8d
.Lpass_do_splice_read:
	RET
SYM_FUNC_END(ss_direct_do_splice_read)

/*
 * do_splice(in, off_in, out, off_out, len, flags): a stable splice from a
 * pipe is refused with EINVAL right here (ss_do_splice_refused() decides,
 * asked only while a stable splice is in flight); nothing else of the
 * call changes, so there is no replacement to go to and no own call.
 */
SYM_FUNC_START(ss_direct_do_splice)
	ENDBR
	CALL_DEPTH_ACCOUNT
	cmpq	$0, ss_counters+SS_COUNTERS_CALLS_IN_FLIGHT(%rip)
	jne	.Lask_do_splice
	RET
.Lask_do_splice:
	CALL_PRESERVING ss_do_splice_refused, rdi, rsi, rdx, rcx, r8, r9
	testb	%al, %al
	jz	.Lpass_do_splice
	/* return -EINVAL to do_splice()'s caller */
	addq	$8, %rsp
	UNWIND_HINT_FUNC
	movq	$-EINVAL, %rax
	RET
.Lpass_do_splice:
	RET
SYM_FUNC_END(ss_direct_do_splice)
