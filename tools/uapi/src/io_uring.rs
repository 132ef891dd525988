// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note
//! The part of Linux's io_uring ABI (`include/uapi/linux/io_uring.h`) that
//! the tests and the bench use on raw syscalls.

pub const IORING_OP_READ_FIXED: u8 = 4;
pub const IORING_OP_READ: u8 = 22;
pub const IORING_OP_WRITE: u8 = 23;
pub const IORING_OP_SEND: u8 = 26;
pub const IORING_OP_SPLICE: u8 = 30;
pub const IORING_OP_TEE: u8 = 33;
pub const IORING_OP_SEND_ZC: u8 = 47;

/// `IOSQE_IO_LINK`: the next SQE starts only after this one completed.
pub const IOSQE_IO_LINK: u8 = 1 << 2;
/// A send from a registered buffer (`buf_index`).
pub const IORING_RECVSEND_FIXED_BUF: u16 = 1 << 2;
/// More completions follow for this request (SEND_ZC's notification).
pub const IORING_CQE_F_MORE: u32 = 1 << 1;
/// SEND_ZC's notification: the buffer may be reused.
pub const IORING_CQE_F_NOTIF: u32 = 1 << 3;
pub const IORING_ENTER_GETEVENTS: u32 = 1;
pub const IORING_REGISTER_BUFFERS: u32 = 0;
pub const IORING_OFF_SQ_RING: i64 = 0;
pub const IORING_OFF_CQ_RING: i64 = 0x800_0000;
pub const IORING_OFF_SQES: i64 = 0x1000_0000;

/// `struct io_sqring_offsets`.
#[repr(C)]
#[derive(Default)]
pub struct SqringOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_cqring_offsets`.
#[repr(C)]
#[derive(Default)]
pub struct CqringOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_uring_params`.
#[repr(C)]
#[derive(Default)]
pub struct Params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqringOffsets,
    pub cq_off: CqringOffsets,
}

/// `struct io_uring_sqe` (64 bytes), under the names the requests used
/// here give its unions: `off` (off / addr2), `addr` (addr / splice_off_in),
/// `rw_flags` (rw_flags / msg_flags / splice_flags).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    pub off: u64,
    pub addr: u64,
    pub len: u32,
    pub rw_flags: u32,
    pub user_data: u64,
    pub buf_index: u16,
    pub personality: u16,
    pub splice_fd_in: i32,
    pub addr3: u64,
    pub pad2: u64,
}

/// `struct io_uring_cqe`.
#[repr(C)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<Sqe>() == 64);
const _: () = assert!(core::mem::size_of::<Cqe>() == 16);
const _: () = assert!(core::mem::size_of::<Params>() == 120);
