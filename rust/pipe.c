// SPDX-License-Identifier: GPL-2.0
/*
 * Glue for src/stable_buf.rs: a locked pipe's ring, the runs of buffers on
 * one folio, the pages they point to, and the copy of one.
 */

#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/pipe_fs_i.h>
#include "helpers.h"

/* Whether splice() treats @file as a pipe (pipes and FIFOs). */
bool ss_file_is_pipe(struct file *file)
{
	return S_ISFIFO(file_inode(file)->i_mode);
}

void ss_pipe_set_head(struct pipe_inode_info *pipe, unsigned int head)
{
	pipe->head = head;
}

unsigned int ss_pipe_head(const struct pipe_inode_info *pipe)
{
	return pipe->head;
}

/* The ring of a locked pipe: its buffers, the mask of a slot, its head. */
struct pipe_buffer *ss_pipe_ring(const struct pipe_inode_info *pipe, unsigned int *mask,
				 unsigned int *head)
{
	*mask = pipe->ring_size - 1;
	*head = pipe->head;
	return pipe->bufs;
}

/* 0: private (anonymous, zero page), 1: orphaned, 2: in the page cache
 * (FolioKind in src/folio.rs); one read of ->mapping, which a concurrent
 * eviction clears. */
static inline int folio_kind(struct folio *folio)
{
	if (folio_test_anon(folio) || is_zero_folio(folio))
		return 0;
	return READ_ONCE(folio->mapping) ? 2 : 1;
}

/*
 * The confirm of page_cache_pipe_buf_ops (fs/splice.c): the operations of
 * every buffer that refers to a page-cache folio as it is, which only
 * filemap_splice_read() and shmem_file_splice_read() make. The table is
 * not exported, and on kernels without KALLSYMS_ALL not even named; its
 * confirm is a function, found at load with the redirected functions
 * (src/stable_splice_main.rs), at @addr.
 */
static unsigned long page_cache_confirm;

void ss_pipe_learn_page_cache_bufs(unsigned long addr)
{
	/* An operations table points at the function's start, ENDBR included. */
	page_cache_confirm = ss_func_start(addr);
}

bool ss_pipe_buf_is_page_cache(const struct pipe_buffer *buf)
{
	return page_cache_confirm && (unsigned long)buf->ops->confirm == page_cache_confirm;
}

struct folio *ss_page_folio(struct page *page)
{
	return page_folio(page);
}

int ss_page_kind(struct page *page)
{
	return folio_kind(page_folio(page));
}

struct page *ss_alloc_page(void)
{
	return alloc_page(GFP_KERNEL_ACCOUNT);
}

void ss_put_page(struct page *page)
{
	put_page(page);
}

void ss_memcpy_page(struct page *dst, unsigned int dst_off, struct page *src,
		    unsigned int src_off, size_t len)
{
	memcpy_page(dst, dst_off, src, src_off, len);
}
