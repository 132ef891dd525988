/* SPDX-License-Identifier: GPL-2.0 */
/* Headers that bindgen turns into src/bindings.rs (see Kbuild). */
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/ftrace.h>
#include <linux/io_uring.h>
#include <linux/pagemap.h>
#include <linux/pipe_fs_i.h>
#include <linux/splice.h>
#include <linux/ptrace.h>
#include <linux/tracepoint.h>
#include <linux/stable_splice.h>
#include "helpers.h"
#include "hold_index.h"
#include "direct.h"

/* macros bindgen cannot evaluate */
const unsigned int SS_SPLICE_F_ALL = SPLICE_F_ALL;
const unsigned int SS_SPLICE_F_STABLE = SPLICE_F_STABLE;
const unsigned int SS_SPLICE_F_FD_IN_FIXED = SPLICE_F_FD_IN_FIXED;
const unsigned int SS_FGP_NOWAIT = (__force unsigned int)FGP_NOWAIT;
const unsigned int SS_GFP_NOFAIL = (__force unsigned int)__GFP_NOFAIL;
const unsigned int SS_VM_FAULT_LOCKED = (__force unsigned int)VM_FAULT_LOCKED;
const unsigned int SS_VM_FAULT_NOPAGE = (__force unsigned int)VM_FAULT_NOPAGE;
const unsigned int SS_VM_FAULT_ERROR = (__force unsigned int)VM_FAULT_ERROR;
const long long SS_PAGE_SIZE = PAGE_SIZE;
const unsigned int SS_SET_MODE = STABLE_SPLICE_SET_MODE;
const unsigned int SS_GET_MODE = STABLE_SPLICE_GET_MODE;
const unsigned int SS_FILE_INFO = STABLE_SPLICE_FILE_INFO;

/*
 * A redirect rewrites the traced call's return address. Where ftrace_regs
 * carry the arguments and the instruction pointer (x86-64), that needs no
 * full pt_regs save, as for livepatch.
 */
const unsigned long SS_FTRACE_OPS_FL_PERMANENT = FTRACE_OPS_FL_PERMANENT;
#ifndef CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS
#error "stable_splice needs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS (as BPF trampolines do)"
#endif
#ifdef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
const unsigned long SS_FTRACE_REDIRECT_FLAGS = FTRACE_OPS_FL_IPMODIFY;
#else
const unsigned long SS_FTRACE_REDIRECT_FLAGS = FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_SAVE_REGS;
#endif
