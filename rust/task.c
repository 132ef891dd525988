// SPDX-License-Identifier: GPL-2.0
/*
 * Task and tracepoint glue for src/mode.rs and src/calls.rs: the task and
 * thread group a task belongs to, the splice() it is in, killing a child
 * that could not be put into its parent's stable mode, and finding a
 * tracepoint by name.
 */

#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <linux/sched/task_stack.h>
#include <asm/unistd.h>
#include <linux/tracepoint.h>
#include "helpers.h"

int ss_current_tgid(void)
{
	return current->tgid;
}

int ss_task_tgid(struct task_struct *task)
{
	return task->tgid;
}

void ss_task_kill(struct task_struct *task)
{
	send_sig(SIGKILL, task, 1);
}

struct ss_tp_lookup {
	const char *name;
	struct tracepoint *found;
};

static void ss_tp_match(struct tracepoint *tp, void *priv)
{
	struct ss_tp_lookup *l = priv;

	if (!strcmp(tp->name, l->name))
		l->found = tp;
}

/* Tracepoints of the core kernel are not exported by name: look them up. */
struct tracepoint *ss_tracepoint(const char *name)
{
	struct ss_tp_lookup l = { .name = name };

	for_each_kernel_tracepoint(ss_tp_match, &l);
	return l.found;
}

void ss_tracepoint_sync(void)
{
	tracepoint_synchronize_unregister();
}

int ss_current_tid(void)
{
	return current->pid;
}

/*
 * The saved r9 (splice's flags argument) of the splice() the current task
 * is in, or 0 when it is not in one: io_uring workers and kernel threads
 * never are. The syscall replacement marks its call in the upper half of
 * r9, which the syscall's unsigned int flags never see.
 */
u64 ss_current_splice_r9(void)
{
	struct pt_regs *regs;

	if (current->flags & (PF_KTHREAD | PF_IO_WORKER))
		return 0;
	regs = current_pt_regs();
	return regs->orig_ax == __NR_splice ? regs->r9 : 0;
}
