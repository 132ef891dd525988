// SPDX-License-Identifier: GPL-2.0
/*
 * Task and tracepoint glue for src/mode.rs: the thread group a task belongs
 * to (read in C, see ss_current_tid()), killing a child that could not be
 * put into its parent's stable mode, and finding a tracepoint by name.
 */

#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
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
