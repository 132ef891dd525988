// SPDX-License-Identifier: GPL-2.0
/* Glue for src/writers.rs: what a writer's entry point is about. */

#include <linux/err.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include "helpers.h"

struct address_space *ss_vmf_mapping(struct vm_fault *vmf)
{
	struct file *file = vmf->vma->vm_file;

	return file ? file->f_mapping : NULL;
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

void *ss_err_ptr_eagain(void)
{
	return ERR_PTR(-EAGAIN);
}

void *ss_err_ptr_enomem(void)
{
	return ERR_PTR(-ENOMEM);
}

long ss_err_ptr(const void *ptr)
{
	return IS_ERR(ptr) ? PTR_ERR(ptr) : 0;
}
