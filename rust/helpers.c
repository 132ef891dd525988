// SPDX-License-Identifier: GPL-2.0
/* C glue for stable_splice; see helpers.h. */

#include <linux/file.h>
#include <linux/fs_struct.h>
#include <linux/ftrace.h>
#include <linux/highmem.h>
#include <linux/io_uring.h>
#include <linux/io_uring_types.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/pipe_fs_i.h>
#include <linux/rcupdate.h>
#include <linux/namei.h>
#include <linux/splice.h>
#include <linux/rmap.h>
#include <linux/sched/signal.h>
#include <linux/ktime.h>
#include <linux/moduleparam.h>
#include <linux/workqueue.h>
#include <asm/ibt.h>
#include <asm/unistd.h>
#include <linux/sched/task_stack.h>
#include "helpers.h"

void ss_ftrace_regs_set_ip(struct ftrace_regs *fregs, unsigned long ip)
{
	ftrace_regs_set_instruction_pointer(fregs, ip);
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

/* Whether splice() treats @file as a pipe (pipes and FIFOs). */
bool ss_file_is_pipe(struct file *file)
{
	return S_ISFIFO(file_inode(file)->i_mode);
}

ssize_t ss_call_do_splice(unsigned long fn, struct file *in, long long *off_in, struct file *out,
			  long long *off_out, size_t len, unsigned int flags)
{
	ssize_t (*f)(struct file *, loff_t *, struct file *, loff_t *, size_t, unsigned int) =
		(void *)fn;

	return f(in, off_in, out, off_out, len, flags);
}

/*
 * An IORING_OP_SPLICE request accepted with the flag must come back to
 * io_splice_cleanup() however it ends (issued, cancelled, failed link), to
 * drop the module reference it holds. Called in prep, before anybody else
 * sees the request.
 */
void ss_io_req_want_cleanup(void *req)
{
	((struct io_kiocb *)req)->flags |= REQ_F_NEED_CLEANUP;
}

void ss_call_io_cleanup(unsigned long fn, void *req)
{
	void (*f)(void *) = (void *)fn;

	f(req);
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

/* The ring of a locked pipe: its buffers and the mask of a slot. */
struct pipe_buffer *ss_pipe_ring(const struct pipe_inode_info *pipe, unsigned int *mask)
{
	*mask = pipe->ring_size - 1;
	return pipe->bufs;
}

/* 0: private (anonymous, zero page), 1: orphaned, 2: in the page cache;
 * one read of ->mapping, which a concurrent eviction clears. */
static inline int folio_kind(struct folio *folio)
{
	if (folio_test_anon(folio) || is_zero_folio(folio))
		return 0;
	return READ_ONCE(folio->mapping) ? 2 : 1;
}

/*
 * The runs of buffers on one folio among slots [@from, @to) of a locked
 * pipe's ring, at most @max of them from @from on: each run's folio, page
 * index, folio_kind(), first slot and length. Returns how many. A large
 * folio's pages are one run however many buffers they fill. One call per
 * chunk of a stable splice's fast path, not one per buffer.
 */
unsigned int ss_pipe_runs(const struct pipe_buffer *bufs, unsigned int mask, unsigned int from,
			  unsigned int to, struct ss_folio_run *runs, unsigned int max)
{
	unsigned int slot = from, n = 0;

	while (slot != to && n < max) {
		struct folio *f = page_folio(bufs[slot & mask].page);
		struct ss_folio_run *r = &runs[n++];

		r->folio = f;
		r->index = f->index;
		r->kind = folio_kind(f);
		r->slot = slot;
		do {
			slot++;
		} while (slot != to && page_folio(bufs[slot & mask].page) == f);
		r->len = slot - r->slot;
	}
	return n;
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

int ss_page_kind(struct page *page)
{
	return folio_kind(page_folio(page));
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
 * ---- holds (src/hold.rs) ----
 *
 * The policy is a string parameter, which the Rust module! macro cannot
 * declare yet; src/hold.rs interprets it.
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

struct address_space *ss_folio_mapping(struct folio *folio)
{
	return READ_ONCE(folio->mapping);
}

unsigned long ss_folio_pfn(struct folio *folio)
{
	return folio_pfn(folio);
}

unsigned long ss_folio_index(struct folio *folio)
{
	return folio->index;
}

unsigned long ss_folio_nr_pages(struct folio *folio)
{
	return folio_nr_pages(folio);
}

bool ss_folio_dirty(struct folio *folio)
{
	return folio_test_dirty(folio);
}

void ss_folio_get(struct folio *folio)
{
	folio_get(folio);
}

void ss_folio_put(struct folio *folio)
{
	folio_put(folio);
}

/*
 * Shared mappings must fault (do_page_mkwrite) before the next store; keep
 * what dirty ptes said in the folio's dirty bit. Folio locked.
 */
void ss_folio_write_protect(struct folio *folio)
{
	if (folio_mapped(folio) && folio_mkclean(folio))
		folio_mark_dirty(folio);
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

struct address_space *ss_vmf_mapping(struct vm_fault *vmf)
{
	struct file *file = vmf->vma->vm_file;

	return file ? file->f_mapping : NULL;
}

ssize_t ss_call_splice_write(unsigned long fn, void *pipe, void *out, void *ppos,
			     size_t len, unsigned int flags)
{
	ssize_t (*f)(struct pipe_inode_info *, struct file *, loff_t *, size_t,
		     unsigned int) = (void *)fn;

	return f(pipe, out, ppos, len, flags);
}

/*
 * For a size change of a regular file: its mapping, and in @from the lower
 * of the old and the new size (everything from there on may be zeroed or
 * dropped). NULL for other changes.
 */
struct address_space *ss_iattr_size_change(struct dentry *dentry, struct iattr *attr, long long *from)
{
	struct inode *inode = d_inode(dentry);

	if (!(attr->ia_valid & ATTR_SIZE) || !inode || !S_ISREG(inode->i_mode))
		return NULL;
	*from = min_t(loff_t, attr->ia_size, i_size_read(inode));
	return inode->i_mapping;
}

int ss_call_fallocate(unsigned long fn, struct file *file, int mode, long long offset,
		      long long len)
{
	int (*f)(struct file *, int, loff_t, loff_t) = (void *)fn;

	return f(file, mode, offset, len);
}

void *ss_err_ptr_eagain(void)
{
	return ERR_PTR(-EAGAIN);
}

void *ss_err_ptr_enomem(void)
{
	return ERR_PTR(-ENOMEM);
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

long ss_err_ptr(const void *ptr)
{
	return IS_ERR(ptr) ? PTR_ERR(ptr) : 0;
}
