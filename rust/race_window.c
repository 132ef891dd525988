// SPDX-License-Identifier: GPL-2.0
/*
 * Race windows that tests widen, as xfs's delay error tags widen theirs
 * for fstests: with CONFIG_FAULT_INJECTION_DEBUG_FS, the fault attribute
 * debugfs stable_splice/split_window (the kernel's usual files:
 * probability, times, task-filter, ...) makes the split break it picks
 * sleep delay_ms between the split and the locks of the pages, where a
 * truncation or a store fault may reach a page before the break gives it
 * its share of the old folio's state (ss_folio_break_copy()). Without
 * fault injection: nothing, no file.
 */

#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/fault-inject.h>
#include "helpers.h"

#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static DECLARE_FAULT_ATTR(split_window);
static u32 split_window_ms = 1000;
static struct dentry *split_window_dir;

/* Under the module's debugfs directory @dir_name, which must exist. */
void ss_race_windows_create(const char *dir_name)
{
	struct dentry *parent = debugfs_lookup(dir_name, NULL);
	struct dentry *dir;

	if (!parent)
		return;
	dir = fault_create_debugfs_attr("split_window", parent, &split_window);
	dput(parent);
	if (IS_ERR(dir))
		return;
	debugfs_create_u32("delay_ms", 0600, dir, &split_window_ms);
	split_window_dir = dir;
}

void ss_race_windows_remove(void)
{
	debugfs_remove_recursive(split_window_dir);
	split_window_dir = NULL;
}

/* Called by a split break, folio locks held: a sleeping lock, may sleep. */
void ss_split_window(void)
{
	if (should_fail(&split_window, 1))
		msleep(READ_ONCE(split_window_ms));
}
#else
void ss_race_windows_create(const char *dir_name)
{
}

void ss_race_windows_remove(void)
{
}

void ss_split_window(void)
{
}
#endif
