// SPDX-License-Identifier: GPL-2.0
/*
 * Folio glue for src/folio.rs and src/hold.rs: static inline mm helpers
 * that Rust cannot call, one line each where possible.
 */

#include <linux/kallsyms.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>
#include <linux/swap.h>
#include "helpers.h"

/*
 * References beyond the page cache, the folio's private data and its page
 * table mappings. Folio locked: nothing can map it or change its private
 * data or mapping meanwhile, only unmap it (zap does not lock). Reading the
 * count before the expected count means an unmap in between makes the
 * result larger, never smaller: a pte's reference is put after its rmap.
 */
int ss_folio_extra_refs(struct folio *folio)
{
	int refs = folio_ref_count(folio);

	smp_rmb();
	return refs - folio_expected_ref_count(folio);
}

bool ss_folio_writeback(struct folio *folio)
{
	return folio_test_writeback(folio);
}

bool ss_folio_mapped(struct folio *folio)
{
	return folio_mapped(folio);
}

bool ss_folio_large(struct folio *folio)
{
	return folio_test_large(folio);
}

bool ss_folio_trylock(struct folio *folio)
{
	return folio_trylock(folio);
}

/* Takes @folio out of every page table of @mapping; false if still mapped. */
bool ss_folio_unmap(struct address_space *mapping, struct folio *folio)
{
	unmap_mapping_pages(mapping, folio->index, folio_nr_pages(folio), false);
	return !folio_mapped(folio);
}

/* Drops buffer heads or iomap state of a clean folio; false if it cannot. */
bool ss_folio_release_private(struct folio *folio)
{
	return filemap_release_folio(folio, GFP_NOFS);
}

/*
 * A new folio with @old's bytes for @mapping's page cache: locked and
 * uptodate, in no mapping yet (what replace_page_cache_folio() wants).
 */
struct folio *ss_folio_copy_new(struct address_space *mapping, struct folio *old)
{
	struct folio *new = filemap_alloc_folio(mapping_gfp_constraint(mapping, ~__GFP_FS), 0, NULL);

	if (!new)
		return NULL;
	folio_copy(new, old);
	__folio_set_locked(new);
	folio_mark_uptodate(new);
	return new;
}

/* @new takes @old's place in the page cache and goes on the LRU. */
void ss_folio_replace(struct folio *old, struct folio *new)
{
	replace_page_cache_folio(old, new);
	folio_add_lru(new);
}

void ss_folio_wait_writeback(struct folio *folio)
{
	folio_wait_writeback(folio);
}

/*
 * Whether the writers of files with these address_space_operations all pass
 * the module's choke points before they change a folio, outside any journal
 * handle (see Documentation/stable-splice.rst, "Which files get zero copy").
 * ext4's journalled aops (data=journal, chattr +j) write data inside the
 * journal and are not; neither is DAX. Told by the name of a function the
 * ops point at: the ops themselves are static data, in kallsyms only with
 * CONFIG_KALLSYMS_ALL. Cached per ops table.
 */
static bool aops_zero_copy_uncached(const struct address_space_operations *a_ops,
				    const char *fs)
{
	char name[KSYM_SYMBOL_LEN];

	if (!strcmp(fs, "ext4") && a_ops->write_end) {
		sprint_symbol_no_offset(name, (unsigned long)a_ops->write_end);
		return !strcmp(name, "ext4_write_end") || !strcmp(name, "ext4_da_write_end");
	}
	if (!strcmp(fs, "xfs") && a_ops->dirty_folio) {
		sprint_symbol_no_offset(name, (unsigned long)a_ops->dirty_folio);
		return !strcmp(name, "iomap_dirty_folio");
	}
	return false;
}

#define SS_AOPS_CACHE 8
static struct {
	const struct address_space_operations *a_ops;
	bool zero_copy;
} aops_cache[SS_AOPS_CACHE];
static DEFINE_SPINLOCK(aops_cache_lock);

bool ss_mapping_zero_copy(struct address_space *mapping)
{
	const struct address_space_operations *a_ops = READ_ONCE(mapping->a_ops);
	bool zero_copy;
	int i;

	if (IS_DAX(mapping->host) || mapping_inaccessible(mapping))
		return false;
	for (i = 0; i < SS_AOPS_CACHE; i++) {
		/* pairs with smp_store_release() below */
		if (smp_load_acquire(&aops_cache[i].a_ops) == a_ops)
			return aops_cache[i].zero_copy;
	}
	zero_copy = aops_zero_copy_uncached(a_ops, mapping->host->i_sb->s_type->name);
	spin_lock(&aops_cache_lock);
	for (i = 0; i < SS_AOPS_CACHE; i++) {
		if (aops_cache[i].a_ops == a_ops)
			break;
		if (!aops_cache[i].a_ops) {
			aops_cache[i].zero_copy = zero_copy;
			smp_store_release(&aops_cache[i].a_ops, a_ops);
			break;
		}
	}
	spin_unlock(&aops_cache_lock);
	return zero_copy;
}
