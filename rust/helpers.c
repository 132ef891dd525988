// SPDX-License-Identifier: GPL-2.0
/* C glue for stable_splice; see helpers.h. */

#include <linux/file.h>
#include <linux/fs_struct.h>
#include <linux/ftrace.h>
#include <linux/highmem.h>
#include <linux/io_uring.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/pipe_fs_i.h>
#include <linux/rcupdate.h>
#include <linux/namei.h>
#include <linux/splice.h>
#include <asm/ibt.h>
#include "helpers.h"

void ss_ftrace_regs_set_ip(struct ftrace_regs *fregs, unsigned long ip)
{
	ftrace_regs_set_instruction_pointer(fregs, ip);
}

bool ss_within_this_module(unsigned long addr)
{
	return within_module(addr, THIS_MODULE);
}

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

/*
 * io_uring reads the SQE from memory the submitter shares; take the flags
 * once, and hand the original prep a private copy without our bit. Only
 * the first 64 bytes carry splice fields, also on SQE128 rings.
 */
u32 ss_sqe_splice_flags(const struct io_uring_sqe *sqe)
{
	return READ_ONCE(sqe->splice_flags);
}

int ss_sqe_splice_fd_in(const struct io_uring_sqe *sqe)
{
	return READ_ONCE(sqe->splice_fd_in);
}

void ss_sqe_copy_clearing(struct io_uring_sqe *dst, const struct io_uring_sqe *src, u32 clear)
{
	memcpy(dst, src, sizeof(*dst));
	dst->splice_flags &= ~clear;
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

unsigned long ss_layout(enum ss_layout_item item)
{
	switch (item) {
	case SS_FTRACE_OPS_SIZE: return sizeof(struct ftrace_ops);
	case SS_FTRACE_OPS_FUNC: return offsetof(struct ftrace_ops, func);
	case SS_FTRACE_OPS_FLAGS: return offsetof(struct ftrace_ops, flags);
	case SS_PIPE_BUFFER_SIZE: return sizeof(struct pipe_buffer);
	case SS_PIPE_BUFFER_PAGE: return offsetof(struct pipe_buffer, page);
	case SS_PIPE_BUFFER_OFFSET: return offsetof(struct pipe_buffer, offset);
	case SS_PIPE_BUFFER_LEN: return offsetof(struct pipe_buffer, len);
	case SS_PIPE_BUFFER_OPS: return offsetof(struct pipe_buffer, ops);
	case SS_PIPE_BUFFER_FLAGS: return offsetof(struct pipe_buffer, flags);
	case SS_PIPE_BUFFER_PRIVATE: return offsetof(struct pipe_buffer, private);
	case SS_PIPE_BUF_OPERATIONS_SIZE: return sizeof(struct pipe_buf_operations);
	case SS_PIPE_BUF_OPERATIONS_RELEASE: return offsetof(struct pipe_buf_operations, release);
	case SS_PIPE_BUF_OPERATIONS_GET: return offsetof(struct pipe_buf_operations, get);
	case SS_PT_REGS_SIZE: return sizeof(struct pt_regs);
	case SS_PT_REGS_R9: return offsetof(struct pt_regs, r9);
	case SS_IO_URING_SQE_SIZE: return sizeof(struct io_uring_sqe);
	case SS_LAYOUT_ITEMS: break;
	}
	return 0;
}

bool ss_fd_is_pipe(int fd)
{
	CLASS(fd, f)(fd);

	/* A bad descriptor is the kernel's to report (EBADF). */
	return !fd_empty(f) && S_ISFIFO(file_inode(fd_file(f))->i_mode);
}

int ss_current_tid(void)
{
	return current->pid;
}

bool ss_module_get(void)
{
	return try_module_get(THIS_MODULE);
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

void ss_pipe_set_head(struct pipe_inode_info *pipe, unsigned int head)
{
	pipe->head = head;
}

struct pipe_buffer *ss_pipe_buf(const struct pipe_inode_info *pipe, unsigned int slot)
{
	return pipe_buf(pipe, slot);
}

unsigned int ss_pipe_head(const struct pipe_inode_info *pipe)
{
	return pipe->head;
}

unsigned int ss_pipe_tail(const struct pipe_inode_info *pipe)
{
	return pipe->tail;
}

struct folio *ss_page_folio(struct page *page)
{
	return page_folio(page);
}

bool ss_page_in_page_cache(struct page *page)
{
	struct folio *folio = page_folio(page);

	return !folio_test_anon(folio) && folio_mapping(folio) != NULL;
}

struct page *ss_alloc_page(void)
{
	return alloc_page(GFP_KERNEL_ACCOUNT);
}

bool ss_try_get_page(struct page *page)
{
	return try_get_page(page);
}

void ss_put_page(struct page *page)
{
	put_page(page);
}

void ss_folio_lock(struct folio *folio)
{
	folio_lock(folio);
}

void ss_memcpy_page(struct page *dst, unsigned int dst_off, struct page *src,
		    unsigned int src_off, size_t len)
{
	memcpy_page(dst, dst_off, src, src_off, len);
}

/*
 * ---- test support for tests/kunit ----
 *
 * KUnit runs cases in kthreads, whose root is the boot rootfs; paths are
 * resolved in PID 1's file system view, where the harness mounted the
 * scratch file systems.
 */

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

long ss_err_ptr(const void *ptr)
{
	return IS_ERR(ptr) ? PTR_ERR(ptr) : 0;
}
