// SPDX-License-Identifier: GPL-2.0
/*
 * Race windows that tests hold open, as xfs's delay error tags do for
 * fstests: with CONFIG_FAULT_INJECTION_DEBUG_FS, each window is a fault
 * attribute in debugfs stable_splice/ (the kernel's usual files:
 * probability, times, task-filter, ...) plus delay_ms, and the task it
 * picks sleeps that long there. The windows of a break
 * (ss_folio_break_copy()), where its folio locks are held, which sleep:
 *   break_window: the held folio is locked, still in the page cache; an
 *     integrity writeback that took it in its batch waits for its lock.
 *   split_window_before: the copy is in the page cache, whole; a reference
 *     taken meanwhile (a plain splice, a read) makes the split fail. In a
 *     one-step split (ss_folio_break_small(): dirty, buffer heads) the
 *     small copies are made and the old folio, locked, is still in the
 *     page cache without its buffers.
 *   split_window_after: the pages of the split copy are unlocked; a
 *     truncation or a store fault may reach one before the break gives it
 *     its share of the old folio's state. In a one-step split the copies
 *     are in the page cache, each with its state, all still locked:
 *     nothing reaches them before the break is done.
 * And failures that tests inject where no user-space program can make
 * them happen on purpose, in the same files (without delay_ms); the task
 * the attribute picks sees the failure:
 *   buffers_busy: the held folio's buffer heads are busy (somebody has
 *     one locked or referenced), so a break can neither move them to its
 *     copy nor release them (ss_buffers_take(), ss_folio_replace_with()).
 *   writeback_skipped: a writer's writeback of a held dirty folio before
 *     its break (write_back() in src/hold/breaks.rs) leaves it dirty, as
 *     if it had been dirtied again after each one.
 * Without fault injection: nothing, no file.
 */

#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/fault-inject.h>
#include "helpers.h"

#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static struct ss_race_window {
	const char *name;
	struct fault_attr attr;
	u32 delay_ms;
} windows[] = {
	[SS_BREAK_WINDOW] = { "break_window", FAULT_ATTR_INITIALIZER, 1000 },
	[SS_SPLIT_WINDOW_BEFORE] = { "split_window_before", FAULT_ATTR_INITIALIZER, 1000 },
	[SS_SPLIT_WINDOW_AFTER] = { "split_window_after", FAULT_ATTR_INITIALIZER, 1000 },
}, failures[] = {
	[SS_BUFFERS_BUSY] = { "buffers_busy", FAULT_ATTR_INITIALIZER },
	[SS_WRITEBACK_SKIPPED] = { "writeback_skipped", FAULT_ATTR_INITIALIZER },
};
static struct dentry *window_dirs[ARRAY_SIZE(windows)];
static struct dentry *failure_dirs[ARRAY_SIZE(failures)];

/* Under the module's debugfs directory @dir_name, which must exist. */
void ss_race_windows_create(const char *dir_name)
{
	struct dentry *parent = debugfs_lookup(dir_name, NULL);
	struct dentry *dir;
	int i;

	if (!parent)
		return;
	for (i = 0; i < ARRAY_SIZE(windows); i++) {
		dir = fault_create_debugfs_attr(windows[i].name, parent, &windows[i].attr);
		if (IS_ERR(dir))
			continue;
		debugfs_create_u32("delay_ms", 0600, dir, &windows[i].delay_ms);
		window_dirs[i] = dir;
	}
	for (i = 0; i < ARRAY_SIZE(failures); i++) {
		dir = fault_create_debugfs_attr(failures[i].name, parent, &failures[i].attr);
		if (!IS_ERR(dir))
			failure_dirs[i] = dir;
	}
	dput(parent);
}

void ss_race_windows_remove(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(windows); i++) {
		debugfs_remove_recursive(window_dirs[i]);
		window_dirs[i] = NULL;
	}
	for (i = 0; i < ARRAY_SIZE(failures); i++) {
		debugfs_remove_recursive(failure_dirs[i]);
		failure_dirs[i] = NULL;
	}
}

/* In task context, where the caller may sleep (folio locks are sleeping locks). */
void ss_race_window(enum ss_race_window_at at)
{
	if (should_fail(&windows[at].attr, 1))
		msleep(READ_ONCE(windows[at].delay_ms));
}

/* Any context: should_fail() neither sleeps nor, with verbose 0, prints. */
bool ss_injected(enum ss_injected_failure what)
{
	return should_fail(&failures[what].attr, 1);
}
#else
void ss_race_windows_create(const char *dir_name)
{
}

void ss_race_windows_remove(void)
{
}

void ss_race_window(enum ss_race_window_at at)
{
}

bool ss_injected(enum ss_injected_failure what)
{
	return false;
}
#endif
