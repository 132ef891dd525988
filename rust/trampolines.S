/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Direct ftrace trampolines for the two redirects that sit on paths of
 * unrelated work: every writer's page-cache lookup and every store fault
 * into a shared file mapping pass them, with direct_calls=1 (by default
 * their twins in rust/direct.c run as ftrace callbacks; see src/ftrace.rs).
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
#include <asm/unwind_hints.h>
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
	pushq	%rbp
	movq	%rsp, %rbp
	pushq	%rdi
	pushq	%rsi
	call	ss_page_mkwrite_wanted
	popq	%rsi
	popq	%rdi
	popq	%rbp
	testb	%al, %al
	jz	.Lpass_page_mkwrite
	LEARN ss_page_mkwrite_site
	REDIRECT ss_redirected_page_mkwrite
.Lpass_page_mkwrite:
	RET
SYM_FUNC_END(ss_direct_page_mkwrite)
