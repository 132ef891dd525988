/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C glue for stable_splice: static inline kernel helpers, THIS_MODULE and
 * calls through addresses learnt at run time, which Rust cannot call or
 * name directly. One section per file of rust/, each serving one module of
 * src/ (as the kernel's rust/helpers/ has a file per topic); the logic
 * lives in src/.
 */
#ifndef STABLE_SPLICE_HELPERS_H
#define STABLE_SPLICE_HELPERS_H

#include <linux/types.h>

struct address_space;
struct dentry;
struct file;
struct folio;
struct ftrace_regs;
struct ftrace_ops;
struct iattr;
struct io_uring_sqe;
struct page;
struct pipe_buffer;
struct pipe_inode_info;
struct task_struct;
struct tracepoint;
struct vm_fault;
struct ss_hold_index;

/* redirects, the originals, module references (rust/ftrace.c, rust/symbols.c) */
unsigned long ss_func_start(unsigned long fentry_ip);
int ss_lookup_functions(const char *const *names, unsigned long *addrs, int n);
long ss_call_syscall(unsigned long fn, const void *regs);
ssize_t ss_call_splice_read(unsigned long fn, void *in, void *ppos, void *pipe,
			    size_t len, unsigned int flags);
ssize_t ss_call_do_splice(unsigned long fn, struct file *in, long long *off_in, struct file *out,
			  long long *off_out, size_t len, unsigned int flags);
int ss_call_io_prep(unsigned long fn, void *req, const struct io_uring_sqe *sqe);
int ss_call_io_issue(unsigned long fn, void *req, unsigned int issue_flags);
void ss_call_io_cleanup(unsigned long fn, void *req);
int ss_call_fallocate(unsigned long fn, struct file *file, int mode, long long offset,
		      long long len);
int ss_call_notify_change(unsigned long fn, void *idmap, struct dentry *dentry,
			  struct iattr *attr, void *delegated);
void ss_call_truncate_range(unsigned long fn, struct address_space *mapping,
			    long long lstart, long long lend);
void ss_call_truncate_final(unsigned long fn, struct address_space *mapping);
bool ss_module_get(void);
void ss_module_get_more(void);
void ss_module_put(void);
void ss_wait_for_module_code(void);
unsigned int ss_entries_idle_secs(void);
void ss_schedule_entry_idle(void);
void ss_cancel_entry_idle(void);
void ss_entry_idle(void);	/* src/entry_gate.rs */

/* direct ftrace trampolines (rust/trampolines.S, rust/direct.c) */
void ss_direct_get_folio(void);
void ss_direct_page_mkwrite(void);
void ss_direct_sys_splice(void);
void ss_direct_do_splice_read(void);
void ss_direct_do_splice(void);
int ss_direct_init(void);
void ss_direct_call_enter(void);
void ss_direct_call_exit(void);
void ss_direct_drain(void);
struct folio *ss_call_get_folio(struct address_space *mapping, unsigned long index,
				unsigned int fgp, unsigned int gfp, void *policy);
extern unsigned long ss_text_start, ss_text_size;
unsigned long ss_page_mkwrite_fentry(void);
unsigned int ss_call_page_mkwrite(unsigned long fn, struct vm_fault *vmf, struct folio *folio);
bool ss_vmf_from_replacement(struct vm_fault *vmf);
bool ss_direct_calls_wanted(void);
void ss_callback_get_folio(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			   struct ftrace_regs *fregs);
void ss_callback_page_mkwrite(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			      struct ftrace_regs *fregs);

/* layout of the kernel structs the module reads or allocates, as the C
 * compiler sees them (rust/layout.c; src/layout.rs compares bindgen's view
 * at load) */
enum ss_layout_item {
	SS_FTRACE_OPS_SIZE, SS_FTRACE_OPS_FUNC, SS_FTRACE_OPS_FLAGS,
	SS_PIPE_BUFFER_SIZE, SS_PIPE_BUFFER_PAGE, SS_PIPE_BUFFER_OFFSET, SS_PIPE_BUFFER_LEN,
	SS_PIPE_BUFFER_OPS, SS_PIPE_BUFFER_FLAGS, SS_PIPE_BUFFER_PRIVATE,
	SS_PIPE_BUF_OPERATIONS_SIZE, SS_PIPE_BUF_OPERATIONS_RELEASE, SS_PIPE_BUF_OPERATIONS_GET,
	SS_PT_REGS_SIZE, SS_PT_REGS_R9,
	SS_IO_URING_SQE_SIZE,
	SS_LAYOUT_ITEMS,
};
unsigned long ss_layout(enum ss_layout_item item);

/* io_uring: IORING_OP_SPLICE prep, issue, cleanup (rust/uring.c) */
u32 ss_sqe_splice_flags(const struct io_uring_sqe *sqe);
void ss_sqe_copy_clearing(struct io_uring_sqe *dst, const struct io_uring_sqe *src, u32 clear);
void ss_io_req_want_cleanup(void *req);

/* a locked pipe's ring and the pages in it (rust/pipe.c) */
bool ss_file_is_pipe(struct file *file);
void ss_pipe_set_head(struct pipe_inode_info *pipe, unsigned int head);
unsigned int ss_pipe_head(const struct pipe_inode_info *pipe);
struct pipe_buffer *ss_pipe_ring(const struct pipe_inode_info *pipe, unsigned int *mask,
				 unsigned int *head);
void ss_pipe_learn_page_cache_bufs(unsigned long addr);
bool ss_pipe_buf_is_page_cache(const struct pipe_buffer *buf);
/* a chunk's new holds in one pass (rust/hold_take.c) */
#define SS_HOLD_CHUNK 32	/* runs per pass: its scratch is on the stack */
/* New buffers of a locked pipe: slots [from, to) of its ring. */
struct ss_pipe_chunk {
	struct pipe_buffer *bufs;
	unsigned int mask;
	unsigned int from;
	unsigned int to;
};
/* What ss_pipe_hold_new() did. */
struct ss_new_holds {
	unsigned int next;	/* the slot after the runs it looked at */
	unsigned int joined;	/* folios held already, joined */
	unsigned int stored;	/* new holds, entries stored */
	unsigned int fresh;	/* of those, at indices that had no entry */
	unsigned int refused;	/* folios somebody else referenced */
	unsigned int left;	/* buffers left to the slow path */
	u64 bytes;		/* bytes of buffers made stable */
};
unsigned int ss_pipe_join_held(const struct ss_pipe_chunk *c, struct ss_hold_index *idx, u64 *bytes);
void ss_pipe_hold_new(struct ss_pipe_chunk *c, unsigned int max, struct address_space *mapping,
		      struct ss_hold_index *idx, atomic_t *count, struct ss_new_holds *out);

struct folio *ss_page_folio(struct page *page);
int ss_page_kind(struct page *page);
struct page *ss_alloc_page(void);
void ss_put_page(struct page *page);
void ss_memcpy_page(struct page *dst, unsigned int dst_off, struct page *src,
		    unsigned int src_off, size_t len);

/* folios: references, lock, checks, the break's copy (rust/folio.c) */
void ss_folio_lock(struct folio *folio);
bool ss_folio_lock_in(struct folio *folio, struct address_space *mapping);
struct address_space *ss_folio_mapping(struct folio *folio);
unsigned long ss_folio_index(struct folio *folio);
unsigned long ss_folio_nr_pages(struct folio *folio);
bool ss_folio_dirty(struct folio *folio);
void ss_folio_get(struct folio *folio);
void ss_folio_put(struct folio *folio);
struct folio *ss_folio_lookup(struct address_space *mapping, unsigned long index);
void ss_folio_write_protect(struct folio *folio);
int ss_folio_extra_refs(struct folio *folio);
bool ss_folio_unshared(struct folio *folio, int own);
bool ss_folio_writeback(struct folio *folio);
/* A held folio as debugfs `holds` shows it (read without its lock). */
struct ss_folio_report {
	unsigned long ino;	/* 0: the folio's lock was taken, or it left the file */
	unsigned long index;
	unsigned long nr_pages;
	int refs;
	int expected;		/* the page cache's, mappings', private data's */
	bool in_mapping;
	bool locked;
	bool dirty;
	bool writeback;
	bool mapped;
	bool lru;
};
void ss_folio_report(struct folio *folio, struct address_space *mapping, struct ss_folio_report *r);
unsigned long ss_max_folio_pages(void);
/* Pages of a split copy reached first by a store fault or a truncation. */
struct ss_split_races {
	unsigned int faulted;
	unsigned int truncated;
};
struct folio *ss_folio_break_copy(struct address_space *mapping, struct folio *old, bool dirty, unsigned long at,
				   struct ss_split_races *raced);
void ss_folio_learn_split(void);
bool ss_folio_evict(struct address_space *mapping, struct folio *old);
void ss_folio_wait_writeback(struct folio *folio);
bool ss_file_zero_copy(struct file *file, struct address_space **mapping);
int ss_file_stable_kind(struct file *file);
int ss_aops_cache_init(void);
void ss_aops_cache_exit(void);

/* race windows that tests hold open (rust/race_window.c) */
enum ss_race_window_at {
	SS_BREAK_WINDOW,
	SS_SPLIT_WINDOW_BEFORE,
	SS_SPLIT_WINDOW_AFTER,
};
void ss_race_windows_create(const char *dir_name);
void ss_race_windows_remove(void);
void ss_race_window(enum ss_race_window_at at);
/* failures that tests inject (rust/race_window.c) */
enum ss_injected_failure {
	SS_BUFFERS_BUSY,
	SS_WRITEBACK_SKIPPED,
};
bool ss_injected(enum ss_injected_failure what);

/* holds: the policy, the file, time, the shrinker (rust/hold.c) */
int ss_policy(void);
struct address_space *ss_file_mapping(struct file *file);
bool ss_file_may_write(struct file *file);
bool ss_in_fs_transaction(void);
bool ss_sleep_killable_ms(unsigned int ms);
u64 ss_ktime_ns(void);
u64 ss_jiffies_ns(void);
void *ss_shrinker_new(void);
void ss_shrinker_free(void *shrinker);
unsigned long ss_hold_entries(void);			/* src/hold/reap.rs */
unsigned long ss_reap_some(unsigned long n);	/* src/hold/reap.rs */

/* the per-file index of held folios (rust/hold_index.c) */
void ss_hold_index_init(struct ss_hold_index *idx);
void ss_hold_index_destroy(struct ss_hold_index *idx);
struct folio *ss_hold_index_load(struct ss_hold_index *idx, unsigned long index);
bool ss_hold_index_holds(struct ss_hold_index *idx, struct folio *folio);
struct folio *ss_hold_index_erase(struct ss_hold_index *idx, unsigned long index);
struct folio *ss_hold_index_find(struct ss_hold_index *idx, unsigned long *index, unsigned long max);
/* Where one step of a walk of an index got to. */
struct ss_reap_walk {
	unsigned int seen;	/* entries looked at */
	unsigned long next;	/* the next entry's index; ULONG_MAX: none left */
};
unsigned int ss_hold_index_reap(struct ss_hold_index *idx, struct address_space *mapping,
				unsigned long from, unsigned int budget, struct ss_reap_walk *w);
unsigned int ss_hold_index_drop_uncached(struct ss_hold_index *idx, struct address_space *mapping,
					 unsigned long from, unsigned int budget, struct ss_reap_walk *w);
/* An entry to store: index, folio, the entry it replaced. */
struct ss_index_store {
	unsigned long index;
	struct folio *folio;
	struct folio *old;
};
unsigned int ss_hold_index_store_all(struct ss_hold_index *idx, struct ss_index_store *stores,
				     unsigned int n);

/* writers' entry points (rust/writers.c) */
struct address_space *ss_vmf_mapping(struct vm_fault *vmf);
struct address_space *ss_iattr_size_change(struct dentry *dentry, struct iattr *attr, long long *from);
void *ss_err_ptr_eagain(void);
void *ss_err_ptr_enomem(void);
long ss_err_ptr(const void *ptr);

/* tasks and tracepoints: the stable mode, splice() in progress (rust/task.c) */
int ss_current_tid(void);
u64 ss_current_splice_r9(void);
int ss_current_tgid(void);
int ss_task_tgid(struct task_struct *task);
void ss_task_kill(struct task_struct *task);
struct tracepoint *ss_tracepoint(const char *name);
void ss_tracepoint_sync(void);

/* test support for tests/kunit, built with KUNIT=1 only (rust/kunit.c) */
struct file *ss_test_open_fifo(const char *path);
struct pipe_inode_info *ss_test_file_pipe(struct file *file);
struct file *ss_test_open_tmpfile(const char *dir);
void ss_test_fput(struct file *file);
ssize_t ss_test_pwrite(struct file *file, const void *buf, size_t len, loff_t pos);
ssize_t ss_test_read(struct file *file, void *buf, size_t len);
ssize_t ss_test_splice_read(struct file *in, loff_t *pos, struct pipe_inode_info *pipe,
			    size_t len);
int ss_test_drain_lru(void);
int ss_test_folio_refs(struct folio *folio);
bool ss_test_folio_locked(struct folio *folio);
struct page *ss_test_page_cache_page(struct file *file, unsigned long index);
struct pipe_buffer *ss_pipe_buf(const struct pipe_inode_info *pipe, unsigned int slot);
unsigned int ss_pipe_tail(const struct pipe_inode_info *pipe);
bool ss_page_in_page_cache(struct page *page);

#endif
