// SPDX-License-Identifier: GPL-2.0
/*
 * Glue for the direct ftrace trampolines in rust/trampolines.S: what they
 * read (this module's text range, the learnt function sites), calling the
 * originals from the replacements, the count of replacements running,
 * which module unload waits for, and the trampolines' twins as ftrace
 * callbacks, for where a function's one direct call is taken.
 */

#include <linux/completion.h>
#include <linux/ftrace.h>
#include <linux/io_uring.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/pagemap.h>
#include <linux/percpu-refcount.h>
#include <linux/ptrace.h>
#include <linux/splice.h>
#include <linux/stable_splice.h>
#include "direct.h"
#include "helpers.h"

static_assert(SS_FGP_LOCK_BIT == (__force unsigned int)FGP_LOCK);
static_assert(SS_FGP_WRITER_BITS == (__force unsigned int)(FGP_WRITE | FGP_CREAT));
/* The marks: no flag of the kernel's, and (fgp) below the folio order. */
static_assert(!(SS_FGP_FROM_REPLACEMENT & (__force unsigned int)(FGP_ACCESSED | FGP_LOCK |
	FGP_CREAT | FGP_WRITE | FGP_NOFS | FGP_NOWAIT | FGP_FOR_MMAP | FGP_STABLE | FGP_DONTCACHE)));
static_assert(SS_FGP_FROM_REPLACEMENT > (__force unsigned int)FGP_DONTCACHE &&
	      FGF_GET_ORDER(SS_FGP_FROM_REPLACEMENT) == 0);
static_assert(SS_FAULT_FROM_REPLACEMENT > FAULT_FLAG_VMA_LOCK);
static_assert(offsetof(struct pt_regs, r9) == SS_PT_REGS_R9_OFFSET);
static_assert(offsetof(struct pt_regs, orig_ax) == SS_PT_REGS_ORIG_AX_OFFSET);
static_assert(SS_SYSCALL_FROM_REPLACEMENT < 0);
static_assert(SS_SPLICE_STABLE == SPLICE_F_STABLE);
static_assert(!(SS_SPLICE_FROM_REPLACEMENT & (SPLICE_F_ALL | SPLICE_F_STABLE | SPLICE_F_FD_IN_FIXED)));
/* The trampoline indexes the filter by the tgid's low byte (little endian). */
static_assert(SS_MODE_FILTER_SLOTS == 256 && sizeof_field(struct task_struct, tgid) == 4);
const unsigned long ss_task_tgid_offset = offsetof(struct task_struct, tgid);

/*
 * This module's core text, where the replacements call the originals from:
 * set by ss_direct_init() before any redirect is registered, read inline
 * by the redirect callback of src/ftrace.rs (one range, where
 * within_module() checks every kind of module memory on every call).
 * ftrace hands that callback the caller's return address as it was at the
 * call; the direct trampolines read the stack, where another tracer may
 * have replaced it, so they know their replacements' calls by a mark
 * instead (direct.h).
 */
unsigned long ss_text_start, ss_text_size;
/* Written once by its trampoline: do_page_mkwrite() behind its fentry call. */
unsigned long ss_page_mkwrite_site;

/*
 * Replacements entered through a trampoline and not yet returned. Per-CPU:
 * every buffered write in the system enters and leaves one; a module
 * reference there was a shared atomic bounced between all CPUs.
 */
static struct percpu_ref direct_calls;
static DECLARE_COMPLETION(direct_calls_done);

static void direct_calls_release(struct percpu_ref *ref)
{
	complete(&direct_calls_done);
}

int ss_direct_init(void)
{
	const struct module_memory *text = &THIS_MODULE->mem[MOD_TEXT];

	ss_text_start = (unsigned long)text->base;
	ss_text_size = text->size;
	return percpu_ref_init(&direct_calls, direct_calls_release, 0, GFP_KERNEL);
}

void ss_direct_call_enter(void)
{
	percpu_ref_get(&direct_calls);
}

void ss_direct_call_exit(void)
{
	percpu_ref_put(&direct_calls);
}

/*
 * Waits for the replacements still running; the direct redirects are
 * unregistered (ftrace waited for tasks on the way from a trampoline into a
 * replacement), so no new one starts.
 */
void ss_direct_drain(void)
{
	percpu_ref_kill(&direct_calls);
	wait_for_completion(&direct_calls_done);
	percpu_ref_exit(&direct_calls);
}

/*
 * The original lookup, for its replacement: ss_direct_get_folio (or
 * ss_callback_get_folio) lets a marked call through and takes the mark
 * off. Should the redirect be gone meanwhile (unload), the function gets
 * the mark, a bit it never tests.
 */
struct folio *ss_call_get_folio(struct address_space *mapping, unsigned long index,
				unsigned int fgp, unsigned int gfp, void *policy)
{
	return __filemap_get_folio_mpol(mapping, index,
					(__force fgf_t)(fgp | SS_FGP_FROM_REPLACEMENT),
					(__force gfp_t)gfp, policy);
}

/* do_page_mkwrite()'s fentry call, once its trampoline has seen it (else 0). */
unsigned long ss_page_mkwrite_fentry(void)
{
	unsigned long site = READ_ONCE(ss_page_mkwrite_site);

	return site ? site - MCOUNT_INSN_SIZE : 0;
}

/*
 * do_page_mkwrite() is static: called where src/ftrace.rs's Original learnt
 * it, marked in the fault's flags for ss_direct_page_mkwrite, which lets the
 * call through (ss_vmf_from_replacement). do_page_mkwrite() sets the flags
 * its page_mkwrite sees itself, and restores what it was given.
 */
unsigned int ss_call_page_mkwrite(unsigned long fn, struct vm_fault *vmf, struct folio *folio)
{
	vm_fault_t (*f)(struct vm_fault *, struct folio *) = (void *)fn;
	vm_fault_t ret;

	vmf->flags |= SS_FAULT_FROM_REPLACEMENT;
	ret = f(vmf, folio);
	vmf->flags &= ~SS_FAULT_FROM_REPLACEMENT;
	return (__force unsigned int)ret;
}

/* Whether this do_page_mkwrite() call is a replacement's own; takes the mark off. */
bool ss_vmf_from_replacement(struct vm_fault *vmf)
{
	if (!(vmf->flags & SS_FAULT_FROM_REPLACEMENT))
		return false;
	vmf->flags &= ~SS_FAULT_FROM_REPLACEMENT;
	return true;
}

/*
 * The writers' two redirects run through these ftrace callbacks by default:
 * they decide as the trampolines do and send the call to the same
 * replacements, and ftrace shares the functions with BPF trampolines
 * (fentry/fexit programs) the way it does for livepatch
 * (FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER), in either order of
 * attaching. A function has one direct call at most: the trampolines
 * (direct_calls=1) take it and keep BPF programs off the two functions
 * (EBUSY) for about 80 fewer instructions per buffered write (0.997x of
 * not loaded against 0.995x, instruction clock); where a BPF program has
 * it already at load, they fall back to these callbacks. The replacements
 * count themselves (ss_direct_call_enter); ftrace's unregistering waits
 * for tasks between a callback and that count, as for the trampolines.
 */
static bool use_direct_calls;
module_param_named(direct_calls, use_direct_calls, bool, 0444);
MODULE_PARM_DESC(direct_calls, "N (default): the writers' redirects (__filemap_get_folio_mpol, do_page_mkwrite) are ftrace callbacks, which share these functions with BPF fentry/fexit programs; Y: ftrace direct calls, 0.2% less work per buffered write, which keep such programs off them (EBUSY) and fall back to callbacks where one is attached already at load");

bool ss_direct_calls_wanted(void)
{
	return use_direct_calls;
}

/* The replacements and the decision the trampolines call (src/writers.rs). */
struct folio *ss_redirected_get_folio(struct address_space *mapping, unsigned long index,
				      unsigned int fgp, unsigned int gfp, void *policy);
unsigned int ss_redirected_page_mkwrite(struct vm_fault *vmf, struct folio *folio);
bool ss_page_mkwrite_wanted(struct vm_fault *vmf);

/* ss_direct_get_folio as a callback: fgp_flags is the third argument. */
notrace void ss_callback_get_folio(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
				   struct ftrace_regs *fregs)
{
	struct pt_regs *regs = &arch_ftrace_regs(fregs)->regs;
	unsigned long fgp = regs->dx;

	if (!ss_fgp_writer_lookup(fgp))
		return;
	if (fgp & SS_FGP_FROM_REPLACEMENT) {
		/* ftrace's caller restores the argument registers from here */
		regs->dx = fgp & ~SS_FGP_FROM_REPLACEMENT;
		return;
	}
	ftrace_regs_set_instruction_pointer(fregs, (unsigned long)ss_redirected_get_folio);
}

/* ss_direct_page_mkwrite as a callback; `ip` is the fentry call. */
notrace void ss_callback_page_mkwrite(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
				      struct ftrace_regs *fregs)
{
	struct vm_fault *vmf = (void *)ftrace_regs_get_argument(fregs, 0);

	if (!ss_page_mkwrite_wanted(vmf))
		return;
	if (!READ_ONCE(ss_page_mkwrite_site))
		WRITE_ONCE(ss_page_mkwrite_site, ip + MCOUNT_INSN_SIZE);
	ftrace_regs_set_instruction_pointer(fregs, (unsigned long)ss_redirected_page_mkwrite);
}
