// SPDX-License-Identifier: GPL-2.0
/*
 * Glue for src/hold.rs and src/policy.rs: the policy parameter, the file
 * a hold is for, time, and the reaper's delayed work.
 */

#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/workqueue.h>
#include "helpers.h"

/*
 * The policy is a string parameter, which the Rust module! macro cannot
 * declare yet; src/policy.rs interprets it.
 */
static char policy[8] = "cow";
module_param_string(policy, policy, sizeof(policy), 0444);
MODULE_PARM_DESC(policy, "cow (default): a writer into a held page gets a copy of it; block: writers wait for the readers, up to 5 s (only for splicers that may write the file)");

int ss_policy(void)
{
	if (sysfs_streq(policy, "cow"))
		return 0;
	if (sysfs_streq(policy, "block"))
		return 1;
	return -EINVAL;
}

struct address_space *ss_file_mapping(struct file *file)
{
	return file->f_mapping;
}

bool ss_file_may_write(struct file *file)
{
	return inode_permission(file_mnt_idmap(file), file_inode(file), MAY_WRITE) == 0;
}

/* A journal handle is open: writeback from here could wait on ourselves. */
bool ss_in_fs_transaction(void)
{
	return current->journal_info != NULL;
}

/* Sleeps up to @ms; true if the task is being killed. */
bool ss_sleep_killable_ms(unsigned int ms)
{
	schedule_timeout_killable(msecs_to_jiffies(ms));
	return fatal_signal_pending(current);
}

u64 ss_ktime_ns(void)
{
	return ktime_get_ns();
}

/*
 * jiffies64_to_nsecs(), not jiffies_to_nsecs(): the latter goes through a
 * 32-bit microsecond count, which wraps five minutes after boot (jiffies
 * start at -300 s) and every 71 minutes after.
 */
u64 ss_jiffies_ns(void)
{
	return jiffies64_to_nsecs(get_jiffies_64());
}

/* Holds whose folios nobody reads any more are reaped every 100 ms. */
static void reap_holds(struct work_struct *work)
{
	ss_reap_holds();
}
static DECLARE_DELAYED_WORK(reap_work, reap_holds);

void ss_schedule_reap(void)
{
	schedule_delayed_work(&reap_work, msecs_to_jiffies(100));
}

void ss_cancel_reap(void)
{
	cancel_delayed_work_sync(&reap_work);
}
