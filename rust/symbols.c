// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel functions by name, for src/ftrace.rs: ftrace's own lookup by name
 * (ftrace_set_filter) formats the name of every traceable function in the
 * kernel and its modules for each pattern: on Debian's kernel under TCG
 * 4.3 s per name, a minute for the module's eleven redirects. A kprobe
 * registered disabled resolves its symbol through kallsyms' sorted index
 * and is never armed; the batch costs one RCU grace period to unregister.
 * Without kprobes the module could not find page_cache_pipe_buf_confirm
 * (rust/pipe.c) at all: it is static, and ftrace hands out no address for
 * a name.
 */

#include <linux/kprobes.h>
#ifndef CONFIG_KPROBES
#error "stable_splice needs a kernel with CONFIG_KPROBES=y: it finds the functions it uses by name through kprobes"
#endif

#include <linux/slab.h>
#include "helpers.h"

/*
 * @addrs[i] = the address of the function @names[i] (behind its ENDBR on
 * IBT kernels, which ftrace_set_filter_ip() resolves to the same fentry
 * site). 0 on success, else what register_kprobes() said (-ENOENT: a
 * name is unknown).
 */
int ss_lookup_functions(const char *const *names, unsigned long *addrs, int n)
{
	struct kprobe *kps, **ptrs;
	int i, ret;

	kps = kcalloc(n, sizeof(*kps), GFP_KERNEL);
	ptrs = kcalloc(n, sizeof(*ptrs), GFP_KERNEL);
	ret = -ENOMEM;
	if (!kps || !ptrs)
		goto out;
	for (i = 0; i < n; i++) {
		kps[i].symbol_name = names[i];
		kps[i].flags = KPROBE_FLAG_DISABLED;
		ptrs[i] = &kps[i];
	}
	ret = register_kprobes(ptrs, n);
	if (!ret) {
		for (i = 0; i < n; i++)
			addrs[i] = (unsigned long)kps[i].addr;
		unregister_kprobes(ptrs, n);
	}
out:
	kfree(ptrs);
	kfree(kps);
	return ret;
}
