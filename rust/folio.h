/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reference checks of a folio that is locked in its mapping and not
 * mapped, for the loops that run once per held page (rust/hold_take.c,
 * the reaper's batch in rust/folio.c).
 */
#ifndef SS_FOLIO_H
#define SS_FOLIO_H

#include <linux/mm.h>

/*
 * References of a folio locked in its mapping and not mapped (nothing can
 * map it while it is locked) beyond the page cache's and its private
 * data's: folio_expected_ref_count() without its cases for anonymous,
 * swap-cache and mapped folios, which cannot apply.
 */
static inline int folio_extra_refs_unmapped(struct folio *folio)
{
	return folio_ref_count(folio) - folio_nr_pages(folio) - folio_test_private(folio);
}

#endif
