// SPDX-License-Identifier: GPL-2.0

//! Checks at load that bindgen's view of the kernel structs this module
//! reads, writes or allocates matches the C compiler's.
//!
//! bindgen parses the headers with libclang; a GCC-built kernel lays some
//! structs out differently (on 7.3 `task_struct` differs by 48 bytes before
//! `pid`). A wrong `ftrace_ops` size would let ftrace write past our
//! allocation, a wrong `pipe_buffer` offset would corrupt pipes: refuse to
//! load instead.

use crate::bindings::{self, ss_layout_item as Item};
use core::mem::{offset_of, size_of};
use kernel::prelude::*;

/// (item, what bindgen says, name for the log)
fn expected() -> [(Item, usize, &'static str); 16] {
    use bindings::{ftrace_ops, io_uring_sqe, pipe_buf_operations, pipe_buffer, pt_regs};
    [
        (Item::SS_FTRACE_OPS_SIZE, size_of::<ftrace_ops>(), "sizeof(ftrace_ops)"),
        (Item::SS_FTRACE_OPS_FUNC, offset_of!(ftrace_ops, func), "ftrace_ops.func"),
        (Item::SS_FTRACE_OPS_FLAGS, offset_of!(ftrace_ops, flags), "ftrace_ops.flags"),
        (Item::SS_PIPE_BUFFER_SIZE, size_of::<pipe_buffer>(), "sizeof(pipe_buffer)"),
        (Item::SS_PIPE_BUFFER_PAGE, offset_of!(pipe_buffer, page), "pipe_buffer.page"),
        (Item::SS_PIPE_BUFFER_OFFSET, offset_of!(pipe_buffer, offset), "pipe_buffer.offset"),
        (Item::SS_PIPE_BUFFER_LEN, offset_of!(pipe_buffer, len), "pipe_buffer.len"),
        (Item::SS_PIPE_BUFFER_OPS, offset_of!(pipe_buffer, ops), "pipe_buffer.ops"),
        (Item::SS_PIPE_BUFFER_FLAGS, offset_of!(pipe_buffer, flags), "pipe_buffer.flags"),
        (Item::SS_PIPE_BUFFER_PRIVATE, offset_of!(pipe_buffer, private), "pipe_buffer.private"),
        (Item::SS_PIPE_BUF_OPERATIONS_SIZE, size_of::<pipe_buf_operations>(), "sizeof(pipe_buf_operations)"),
        (Item::SS_PIPE_BUF_OPERATIONS_RELEASE, offset_of!(pipe_buf_operations, release), "pipe_buf_operations.release"),
        (Item::SS_PIPE_BUF_OPERATIONS_GET, offset_of!(pipe_buf_operations, get), "pipe_buf_operations.get"),
        (Item::SS_PT_REGS_SIZE, size_of::<pt_regs>(), "sizeof(pt_regs)"),
        (Item::SS_PT_REGS_R9, offset_of!(pt_regs, r9), "pt_regs.r9"),
        (Item::SS_IO_URING_SQE_SIZE, size_of::<io_uring_sqe>(), "sizeof(io_uring_sqe)"),
    ]
}

/// `Err(EINVAL)`, with every mismatch logged, if bindgen and the C
/// compiler disagree on any struct the module touches.
pub(crate) fn check() -> Result {
    let mut ok = true;
    for (item, rust, name) in expected() {
        // SAFETY: pure function of a constant.
        let c = unsafe { bindings::ss_layout(item) } as usize;
        if c != rust {
            pr_err!("stable_splice: layout mismatch: {} is {} in C, {} in bindgen\n", name, c, rust);
            ok = false;
        }
    }
    if ok { Ok(()) } else { Err(EINVAL) }
}
