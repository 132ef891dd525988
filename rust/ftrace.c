// SPDX-License-Identifier: GPL-2.0
/*
 * Glue for src/ftrace.rs: where a redirect lands (ftrace regs, the ENDBR
 * before fentry), the originals called through the addresses learnt at run
 * time, and the module references that keep our text while a replacement
 * runs.
 */

#include <linux/fs.h>
#include <linux/ftrace.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/rcupdate.h>
#include <linux/splice.h>
#include <linux/workqueue.h>
#include <asm/ibt.h>
#include "helpers.h"

/*
 * src/ftrace.rs reads a traced call's arguments and sets its ip in the
 * saved pt_regs, which on x86-64 is what an IPMODIFY ops' ftrace_regs are
 * (ftrace_regs_get_argument(), ftrace_regs_set_instruction_pointer()):
 * inline, without a call of ftrace_regs_get_argument(), because every
 * splice in the system passes three of its callbacks.
 */
static_assert(offsetof(struct __arch_ftrace_regs, regs) == 0);
#ifndef CONFIG_X86_64
#error "stable_splice reads the traced calls' arguments as x86-64 passes them"
#endif

/*
 * ftrace reports the address of the fentry call; with IBT it sits behind an
 * ENDBR that an indirect call must land on.
 */
unsigned long ss_func_start(unsigned long fentry_ip)
{
#ifdef CONFIG_X86_KERNEL_IBT
	u32 insn;

	if (!get_kernel_nofault(insn, (u32 *)(fentry_ip - ENDBR_INSN_SIZE)) &&
	    __is_endbr(insn))
		return fentry_ip - ENDBR_INSN_SIZE;
#endif
	return fentry_ip;
}

/*
 * Calls through addresses learnt at run time: kept in C so that the
 * indirect call gets the kernel's usual CFI/retpoline treatment.
 */
long ss_call_syscall(unsigned long fn, const void *regs)
{
	long (*f)(const struct pt_regs *) = (void *)fn;

	return f(regs);
}

ssize_t ss_call_splice_read(unsigned long fn, void *in, void *ppos, void *pipe,
			    size_t len, unsigned int flags)
{
	ssize_t (*f)(struct file *, loff_t *, struct pipe_inode_info *, size_t,
		     unsigned int) = (void *)fn;

	return f(in, ppos, pipe, len, flags);
}

ssize_t ss_call_do_splice(unsigned long fn, struct file *in, long long *off_in, struct file *out,
			  long long *off_out, size_t len, unsigned int flags)
{
	ssize_t (*f)(struct file *, loff_t *, struct file *, loff_t *, size_t, unsigned int) =
		(void *)fn;

	return f(in, off_in, out, off_out, len, flags);
}

int ss_call_io_prep(unsigned long fn, void *req, const struct io_uring_sqe *sqe)
{
	int (*f)(void *, const struct io_uring_sqe *) = (void *)fn;

	return f(req, sqe);
}

int ss_call_io_issue(unsigned long fn, void *req, unsigned int issue_flags)
{
	int (*f)(void *, unsigned int) = (void *)fn;

	return f(req, issue_flags);
}

void ss_call_io_cleanup(unsigned long fn, void *req)
{
	void (*f)(void *) = (void *)fn;

	f(req);
}

int ss_call_fallocate(unsigned long fn, struct file *file, int mode, long long offset,
		      long long len)
{
	int (*f)(struct file *, int, loff_t, loff_t) = (void *)fn;

	return f(file, mode, offset, len);
}

int ss_call_notify_change(unsigned long fn, void *idmap, struct dentry *dentry,
			  struct iattr *attr, void *delegated)
{
	int (*f)(void *, struct dentry *, struct iattr *, void *) = (void *)fn;

	return f(idmap, dentry, attr, delegated);
}

void ss_call_truncate_range(unsigned long fn, struct address_space *mapping,
			    long long lstart, long long lend)
{
	void (*f)(struct address_space *, loff_t, loff_t) = (void *)fn;

	f(mapping, lstart, lend);
}

void ss_call_truncate_final(unsigned long fn, struct address_space *mapping)
{
	void (*f)(struct address_space *) = (void *)fn;

	f(mapping);
}

bool ss_module_get(void)
{
	return try_module_get(THIS_MODULE);
}

/* Another reference while the caller holds one: cannot fail. */
void ss_module_get_more(void)
{
	__module_get(THIS_MODULE);
}

void ss_module_put(void)
{
	module_put(THIS_MODULE);
}

/*
 * A task that dropped its module reference may still be on its way out of
 * module text (the few instructions after module_put()). Wait until every
 * task has passed a voluntary schedule point before the text is freed.
 */
void ss_wait_for_module_code(void)
{
	synchronize_rcu_tasks();	/* synchronize_rcu() without TASKS_RCU */
}

/*
 * The splice entry points' gate (src/entry_gate.rs) takes their redirects
 * out after this many seconds without a stable splice; 0: only when asked
 * (debugfs idle). Writable at run time.
 */
static unsigned int entries_idle_secs = 10;
module_param(entries_idle_secs, uint, 0644);
MODULE_PARM_DESC(entries_idle_secs, "seconds without a stable splice after which do_splice and do_splice_read are no longer redirected, until the next one (default 10; 0: never)");

unsigned int ss_entries_idle_secs(void)
{
	return READ_ONCE(entries_idle_secs);
}

static void entry_idle(struct work_struct *work)
{
	ss_entry_idle();
}
static DECLARE_DELAYED_WORK(entry_idle_work, entry_idle);

/* The gate's next look: after the idle time, or 10 s while that is 0. */
void ss_schedule_entry_idle(void)
{
	unsigned int secs = ss_entries_idle_secs();

	schedule_delayed_work(&entry_idle_work, (secs ? secs : 10) * HZ);
}

void ss_cancel_entry_idle(void)
{
	cancel_delayed_work_sync(&entry_idle_work);
}
