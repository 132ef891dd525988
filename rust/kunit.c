// SPDX-License-Identifier: GPL-2.0
/*
 * Test support for tests/kunit, built only with `make KUNIT=1`.
 *
 * KUnit runs cases in kthreads, whose root is the boot rootfs; paths are
 * resolved in PID 1's file system view, where the harness mounted the
 * scratch file systems.
 */

#include <linux/file.h>
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/namei.h>
#include <linux/pagemap.h>
#include <linux/pipe_fs_i.h>
#include <linux/splice.h>
#include "helpers.h"

static struct file *open_fifo(const char *name)
{
	struct path parent;
	struct dentry *dentry;
	int err;

	dentry = start_creating_path(AT_FDCWD, name, &parent, 0);
	if (!IS_ERR(dentry)) {
		err = vfs_mknod(mnt_idmap(parent.mnt), d_inode(parent.dentry),
				dentry, S_IFIFO | 0600, 0, NULL);
		end_creating_path(&parent, dentry);
		if (err)
			return ERR_PTR(err);
	} else if (PTR_ERR(dentry) != -EEXIST) {
		return ERR_CAST(dentry);
	}
	/* O_RDWR on a FIFO opens without waiting for a peer. */
	return filp_open(name, O_RDWR | O_NONBLOCK, 0);
}

struct file *ss_test_open_fifo(const char *name)
{
	scoped_with_init_fs()
		return open_fifo(name);
	unreachable();
}

struct pipe_inode_info *ss_test_file_pipe(struct file *file)
{
	return file->private_data;
}

struct file *ss_test_open_tmpfile(const char *dir)
{
	scoped_with_init_fs()
		return filp_open(dir, O_RDWR | O_TMPFILE, 0600);
	unreachable();
}

void ss_test_fput(struct file *file)
{
	fput(file);
}

ssize_t ss_test_pwrite(struct file *file, const void *buf, size_t len, loff_t pos)
{
	return kernel_write(file, buf, len, &pos);
}

ssize_t ss_test_read(struct file *file, void *buf, size_t len)
{
	loff_t pos = 0;

	return kernel_read(file, buf, len, &pos);
}

/* What splice_file_to_pipe() does, minus waiting for room. */
ssize_t ss_test_splice_read(struct file *in, loff_t *pos, struct pipe_inode_info *pipe,
			    size_t len)
{
	ssize_t ret;

	pipe_lock(pipe);
	ret = vfs_splice_read(in, pos, pipe, len, 0);
	pipe_unlock(pipe);
	return ret;
}

/* The page at @index in @file's page cache now (identity only), or NULL. */
struct page *ss_test_page_cache_page(struct file *file, unsigned long index)
{
	struct folio *folio = filemap_get_folio(file->f_mapping, index);
	struct page *page;

	if (IS_ERR(folio))
		return NULL;
	page = folio_file_page(folio, index);
	folio_put(folio);
	return page;
}

int ss_test_folio_refs(struct folio *folio)
{
	return folio_ref_count(folio);
}

bool ss_test_folio_locked(struct folio *folio)
{
	return folio_test_locked(folio);
}

/*
 * Drains every CPU's LRU batches the way user space can: drop_caches (which
 * also drops clean, unreferenced page cache). A folio in a batch carries a
 * reference the module cannot tell from a reader's.
 */
int ss_test_drain_lru(void)
{
	struct file *f;
	loff_t pos = 0;
	ssize_t n;

	scoped_with_init_fs()
		f = filp_open("/proc/sys/vm/drop_caches", O_WRONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_write(f, "1", 1, &pos);
	fput(f);
	return n < 0 ? n : 0;
}

/* A pipe's buffers and where their pages belong, for the suite's checks. */
struct pipe_buffer *ss_pipe_buf(const struct pipe_inode_info *pipe, unsigned int slot)
{
	return pipe_buf(pipe, slot);
}

unsigned int ss_pipe_tail(const struct pipe_inode_info *pipe)
{
	return pipe->tail;
}

bool ss_page_in_page_cache(struct page *page)
{
	struct folio *folio = page_folio(page);

	return !folio_test_anon(folio) && folio_mapping(folio) != NULL;
}
