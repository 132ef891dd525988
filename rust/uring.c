// SPDX-License-Identifier: GPL-2.0
/* Glue for src/uring.rs: IORING_OP_SPLICE's SQE and request. */

#include <linux/io_uring.h>
#include <linux/io_uring_types.h>
#include "helpers.h"

/*
 * io_uring reads the SQE from memory the submitter shares; take the flags
 * once, and hand the original prep a private copy without our bit. Only
 * the first 64 bytes carry splice fields, also on SQE128 rings.
 */
u32 ss_sqe_splice_flags(const struct io_uring_sqe *sqe)
{
	return READ_ONCE(sqe->splice_flags);
}

void ss_sqe_copy_clearing(struct io_uring_sqe *dst, const struct io_uring_sqe *src, u32 clear)
{
	memcpy(dst, src, sizeof(*dst));
	dst->splice_flags &= ~clear;
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
