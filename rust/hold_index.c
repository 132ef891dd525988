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
unsigned int ss_hold_index_gather(struct xarray *xa, unsigned long from,
				  struct ss_index_entry *entries, unsigned int max)
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
		entries[n].index = xas.xa_index;
		entries[n].folio = entry;
		entries[n].ended = false;
		if (++n == max)
			break;
	}
	rcu_read_unlock();
	return n;
}

/*
 * Erases, under one hold of the XArray's lock, each of @n entries with
 * ->ended set if the index still holds its folio there; clears ->ended
 * where it did not. Returns how many were erased; their references are the
 * caller's. @entries are in ascending index order (ss_hold_index_gather()):
 * one walk over them, as page_cache_delete_batch() erases the page cache's
 * (a walk from the root per entry was a third of the reaper's time).
 */
unsigned int ss_hold_index_erase_all(struct xarray *xa, struct ss_index_entry *entries,
				     unsigned int n)
{
	unsigned int i = 0, done = 0;
	void *entry;

	while (i < n && !entries[i].ended)
		i++;
	if (i == n)
		return 0;
	{
		XA_STATE(xas, xa, entries[i].index);

		xas_lock(&xas);
		xas_for_each(&xas, entry, entries[n - 1].index) {
			/* Entries the walk passed without finding them: gone. */
			for (; i < n && entries[i].index < xas.xa_index; i++)
				entries[i].ended = false;
			if (i == n)
				break;
			if (entries[i].index != xas.xa_index)
				continue;
			if (entries[i].ended) {
				if (entry == entries[i].folio) {
					xas_store(&xas, NULL);
					done++;
				} else {
					entries[i].ended = false;
				}
			}
			i++;
		}
		xas_unlock(&xas);
	}
	for (; i < n; i++)
		entries[i].ended = false;
	return done;
}

/*
 * For each of @n runs (ascending indices), whether the index holds exactly
 * the run's folio at the run's index: ->held set, the others left alone.
 * With @prefix, stops at the first that is not held. Returns how many were
 * held. One walk: a small folio's successor is the next slot of the node;
 * after a large folio, whose hold is at its first page with the slots
 * behind it empty, the walk goes to the next run's own index.
 */
unsigned int ss_hold_index_match(struct xarray *xa, struct ss_folio_run *runs, unsigned int n,
				 bool prefix)
{
	XA_STATE(xas, xa, 0);
	unsigned int i, found = 0;
	void *entry;

	if (!n)
		return 0;
	if (!prefix) {
		/*
		 * A chunk of a file served once has no entry in its range: one
		 * search says so, instead of a load per run.
		 */
		unsigned long first = runs[0].index, last = runs[0].index;

		for (i = 1; i < n; i++) {
			first = min(first, runs[i].index);
			last = max(last, runs[i].index);
		}
		if (!xa_find(xa, &first, last, XA_PRESENT))
			return 0;
	}
	rcu_read_lock();
	for (i = 0; i < n; i++) {
		struct ss_folio_run *r = &runs[i];

		if (i && r->index == runs[i - 1].index + 1) {
			entry = xas_next(&xas);
		} else {
			xas_set(&xas, r->index);
			entry = xas_load(&xas);
		}
		if (xas_retry(&xas, entry)) {
			xas_set(&xas, r->index);
			entry = xas_load(&xas);
		}
		if (entry == r->folio) {
			r->held = true;
			found++;
		} else if (prefix) {
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

/*
 * Stores @n entries (->folio at ->index) under one hold of the XArray's
 * lock, without sleeping; ->old gets the entry each replaced. Returns how
 * many, from the first, were stored (no memory for the next one). The loop
 * only stops on an error, so xas_nomem() either allocates for a retry or,
 * without an error, frees what a retry did not use.
 */
unsigned int ss_hold_index_store_all(struct xarray *xa, struct ss_index_store *stores,
				     unsigned int n)
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
			if (i > first && stores[i].index == stores[i - 1].index + 1)
				xas_next(&xas);
			else
				xas_set(&xas, stores[i].index);
			stores[i].old = xas_store(&xas, stores[i].folio);
			if (xas_error(&xas))
				break;
		}
		xas_unlock(&xas);
	} while (xas_nomem(&xas, GFP_NOWAIT | __GFP_NOWARN));
	return i;
}
