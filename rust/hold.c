// SPDX-License-Identifier: GPL-2.0
/*
 * Glue for src/hold.rs and src/policy.rs: the policy parameter, the file
 * a hold is for, time, and the shrinker that gives the index's memory
 * back (src/hold/reap.rs).
 */

#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/shrinker.h>
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

static unsigned long count_entries(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long n = ss_hold_entries();

	return n ? n : SHRINK_EMPTY;
}

/*
 * Entries of ranges still in the page cache cannot go yet (they go as the
 * page cache does): a scan that freed nothing asks not to be called again
 * in this round, rather than walking them over and over.
 */
static unsigned long scan_entries(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long freed = ss_reap_some(sc->nr_to_scan);

	return freed ? freed : SHRINK_STOP;
}

/* Index entries go under memory pressure (none is needed for soundness). */
void *ss_shrinker_new(void)
{
	struct shrinker *s = shrinker_alloc(0, "stable_splice-holds");

	if (!s)
		return NULL;
	s->count_objects = count_entries;
	s->scan_objects = scan_entries;
	shrinker_register(s);
	return s;
}

/* Unregisters @s and waits for its callbacks in flight. */
void ss_shrinker_free(void *s)
{
	shrinker_free(s);
}
