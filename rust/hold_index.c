// SPDX-License-Identifier: GPL-2.0
/*
 * The per-file index of held folios (src/hold_index.rs): an XArray from
 * page index to the held folio, each entry owning one folio reference.
 * In C because the Rust XArray abstraction has no cursor: a splice of 1 MiB
 * checks 256 consecutive indices, which xas_next() steps through in one
 * leaf node instead of 256 walks from the root. All callers hold the
 * registry's bucket lock; the XArray's own lock is taken for changes, as
 * the XArray API requires.
 */

#include <linux/mm.h>
#include <linux/pipe_fs_i.h>
#include <linux/xarray.h>
#include "helpers.h"

void ss_hold_index_init(struct xarray *xa)
{
	xa_init(xa);
}

void ss_hold_index_destroy(struct xarray *xa)
{
	xa_destroy(xa);
}

struct folio *ss_hold_index_load(struct xarray *xa, unsigned long index)
{
	return xa_load(xa, index);
}

struct folio *ss_hold_index_erase(struct xarray *xa, unsigned long index)
{
	return xa_erase(xa, index);
}

/* The first entry at or after *index, up to @max; its index in *index. */
struct folio *ss_hold_index_find(struct xarray *xa, unsigned long *index, unsigned long max)
{
	return xa_find(xa, index, max, XA_PRESENT);
}

/*
 * Up to @max entries from index @from on, in one walk: their indices and
 * folios. Returns how many. (The reaper's batch: a walk per hold from the
 * root, then an erase per hold under the lock, were half its time.)
 */
unsigned int ss_hold_index_gather(struct xarray *xa, unsigned long from, unsigned long *indices,
				  struct folio **folios, unsigned int max)
{
	XA_STATE(xas, xa, from);
	unsigned int n = 0;
	void *entry;

	if (!max)
		return 0;
	rcu_read_lock();
	xas_for_each(&xas, entry, ULONG_MAX) {
		if (xas_retry(&xas, entry))
			continue;
		indices[n] = xas.xa_index;
		folios[n] = entry;
		if (++n == max)
			break;
	}
	rcu_read_unlock();
	return n;
}

/*
 * Erases, under one hold of the XArray's lock, the entry at each @indices[i]
 * with @erase[i] set if it is still @folios[i]; clears @erase[i] where it
 * was not. Returns how many were erased; their references are the
 * caller's.
 */
unsigned int ss_hold_index_erase_all(struct xarray *xa, const unsigned long *indices,
				     struct folio *const *folios, bool *erase, unsigned int n)
{
	XA_STATE(xas, xa, 0);
	unsigned int i, done = 0;

	xas_lock(&xas);
	for (i = 0; i < n; i++) {
		if (!erase[i])
			continue;
		xas_set(&xas, indices[i]);
		if (xas_load(&xas) != folios[i]) {
			erase[i] = false;
			continue;
		}
		xas_store(&xas, NULL);
		done++;
	}
	xas_unlock(&xas);
	return done;
}

/*
 * For each of @n folios (@indices ascending), whether the index holds
 * exactly that folio: held[i] set, the others left alone. Returns how many
 * matched. One walk: consecutive indices are the next slot of the node.
 */
unsigned int ss_hold_index_match(struct xarray *xa, const unsigned long *indices,
				 struct folio *const *folios, bool *held, unsigned int n)
{
	XA_STATE(xas, xa, 0);
	unsigned int i, found = 0;
	void *entry;

	rcu_read_lock();
	for (i = 0; i < n; i++) {
		if (i && indices[i] == indices[i - 1] + 1) {
			entry = xas_next(&xas);
		} else {
			xas_set(&xas, indices[i]);
			entry = xas_load(&xas);
		}
		if (xas_retry(&xas, entry)) {
			xas_set(&xas, indices[i]);
			entry = xas_load(&xas);
		}
		if (entry == folios[i]) {
			held[i] = true;
			found++;
		}
	}
	rcu_read_unlock();
	return found;
}

/*
 * How many of the @n buffers from slot @from of a locked pipe's ring, in a
 * row, reference folios that the index holds: a file spliced again and
 * again finds every folio of a call held already, and one pass over the
 * buffers, stepping through the leaf node beside them, tells so. Pages of
 * one folio share its answer. A folio held at some index is held at its
 * own: the next slot is read for a small folio's successor, the slot of
 * its own index after a large folio; a miss ends the prefix (the caller
 * looks at the rest closely).
 */
unsigned int ss_hold_index_held_prefix(struct xarray *xa, const struct pipe_buffer *bufs,
				       unsigned int mask, unsigned int from, unsigned int n)
{
	struct folio *prev = NULL;
	XA_STATE(xas, xa, 0);
	unsigned int i;
	void *entry;

	rcu_read_lock();
	for (i = 0; i < n; i++) {
		struct folio *folio = page_folio(bufs[(from + i) & mask].page);

		if (folio == prev)
			continue;
		if (prev && folio->index == prev->index + 1) {
			entry = xas_next(&xas);
		} else {
			/* The first, or after a large folio: its holds
			 * are at its first page, the slots behind it empty. */
			xas_set(&xas, folio->index);
			entry = xas_load(&xas);
		}
		if (xas_retry(&xas, entry)) {
			xas_set(&xas, folio->index);
			entry = xas_load(&xas);
		}
		if (entry != folio)
			break;
		prev = folio;
	}
	rcu_read_unlock();
	return i;
}

/*
 * Stores @n folios at @indices under one hold of the XArray's lock, without
 * sleeping; the entries they replace in @old. Returns how many, from the
 * first, were stored (no memory for the next one). The loop only stops on
 * an error, so xas_nomem() either allocates for a retry or, without an
 * error, frees what a retry did not use.
 */
unsigned int ss_hold_index_store_all(struct xarray *xa, const unsigned long *indices,
				     struct folio *const *folios, struct folio **old, unsigned int n)
{
	XA_STATE(xas, xa, 0);
	unsigned int i = 0, first;

	do {
		xas_lock(&xas);
		for (first = i; i < n; i++) {
			/*
			 * A chunk's indices are mostly consecutive: step to the
			 * next slot of the node instead of walking from the root.
			 */
			if (i > first && indices[i] == indices[i - 1] + 1)
				xas_next(&xas);
			else
				xas_set(&xas, indices[i]);
			old[i] = xas_store(&xas, folios[i]);
			if (xas_error(&xas))
				break;
		}
		xas_unlock(&xas);
	} while (xas_nomem(&xas, GFP_NOWAIT | __GFP_NOWARN));
	return i;
}
