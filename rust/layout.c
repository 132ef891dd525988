// SPDX-License-Identifier: GPL-2.0
/*
 * Glue for src/layout.rs: sizes and offsets of the kernel structures the
 * Rust side reads or builds itself, from this kernel's headers.
 */

#include <linux/ftrace.h>
#include <linux/io_uring_types.h>
#include <linux/pipe_fs_i.h>
#include <asm/ptrace.h>
#include "helpers.h"

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
