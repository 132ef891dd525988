// SPDX-License-Identifier: GPL-2.0
/*
 * Folio glue for src/folio.rs and src/hold.rs: static inline mm helpers
 * that Rust cannot call, one line each where possible.
 */

#include <linux/buffer_head.h>
#include <linux/kallsyms.h>
#include <linux/memcontrol.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mm_inline.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>
#include <linux/sched/clock.h>
#include <linux/swap.h>
#include <linux/stable_splice.h>
#include "folio.h"
#include "helpers.h"

void ss_folio_lock(struct folio *folio)
{
	folio_lock(folio);
}

/*
 * How long a stable splice spins for a folio lock before it sleeps: a
 * writer holds it for one write into the folio (a copy from user space,
 * or a break's copy), which takes less than the splicer's sleep and the
 * wake-up sent to it from the other CPU. Spinning longer would be a
 * waste: the holder may be reading the folio from disk.
 */
#define SS_LOCK_SPIN_NS	(10 * NSEC_PER_USEC)

/*
 * Locks @folio, or returns false without the lock once it left @mapping
 * (broken or truncated by whoever holds the lock: its bytes never change
 * again). Spins up to SS_LOCK_SPIN_NS before it sleeps, reading the lock
 * bit and trying the lock only when it looks free (the holder's unlock is
 * an atomic on the same word). May sleep.
 */
bool ss_folio_lock_in(struct folio *folio, struct address_space *mapping)
{
	u64 end;

	if (folio_trylock(folio))
		return true;
	end = local_clock() + SS_LOCK_SPIN_NS;
	do {
		if (READ_ONCE(folio->mapping) != mapping)
			return false;
		if (local_clock() > end) {
			folio_lock(folio);
			return true;
		}
		cpu_relax();
	} while (folio_test_locked(folio) || !folio_trylock(folio));
	return true;
}

struct address_space *ss_folio_mapping(struct folio *folio)
{
	return READ_ONCE(folio->mapping);
}

unsigned long ss_folio_index(struct folio *folio)
{
	return folio->index;
}

unsigned long ss_folio_nr_pages(struct folio *folio)
{
	return folio_nr_pages(folio);
}

bool ss_folio_dirty(struct folio *folio)
{
	return folio_test_dirty(folio);
}

void ss_folio_get(struct folio *folio)
{
	folio_get(folio);
}

void ss_folio_put(struct folio *folio)
{
	folio_put(folio);
}

/* The folio @mapping caches at @index, referenced; NULL if none. */
struct folio *ss_folio_lookup(struct address_space *mapping, unsigned long index)
{
	struct folio *folio = filemap_get_folio(mapping, index);

	return IS_ERR(folio) ? NULL : folio;
}

/*
 * Shared mappings must fault (do_page_mkwrite) before the next store; keep
 * what dirty ptes said in the folio's dirty bit. Folio locked.
 */
void ss_folio_write_protect(struct folio *folio)
{
	if (folio_mapped(folio) && folio_mkclean(folio))
		folio_mark_dirty(folio);
}

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

/*
 * Whether nothing but the page cache, its mappings, private data and @own
 * references of the caller's references the locked @folio, counting one
 * more as the LRU's own when the folio is off the LRU: a folio in a per-CPU
 * LRU add batch (added to the page cache a moment ago, or a break's copy)
 * or isolated from the LRU carries a reference of that batch or isolator,
 * which is not a writer's.
 *
 * Why one reference on a folio off the LRU is never a writer's, in 7.3
 * (mm/folio.c, mm/vmscan.c, mm/compaction.c; re-check when porting):
 * whoever clears PG_lru holds a reference of its own first (the batches;
 * folio_try_get() in isolate_lru_folios(), MGLRU's isolate_folio() and
 * compaction; folio_isolate_lru()'s callers), and passes it on to the add
 * batch before it puts it (folio_putback_lru()); a folio entering the
 * page cache is added to the LRU batch before its creator unlocks it
 * (filemap_add_folio(), migration, a break), and this lock was taken
 * after that unlock; a drain sets PG_lru before it drops the batch's
 * reference. So if PG_lru reads clear before the count (first read) and
 * again after it (second read), the count holds such a reference: one it
 * took before clearing the flag is seen after the first read; one put
 * before the count was read was put after PG_lru was set, which the
 * second read sees. A writer's reference taken after the count was read
 * is the business of the table of files with holds
 * (Holds::writer_may_hold), as always.
 */
bool ss_folio_unshared(struct folio *folio, int own)
{
	bool off_lru = !folio_test_lru(folio);
	int extra;

	smp_rmb();
	extra = ss_folio_extra_refs(folio);
	return folio_extra_refs_are_own(folio, extra, own, off_lru);
}

bool ss_folio_writeback(struct folio *folio)
{
	return folio_test_writeback(folio);
}

/*
 * A report, not a decision: everything is read without the folio lock but
 * the inode number, which is read only while the folio is locked in
 * @mapping (eviction truncates and so waits for the lock: the inode lives).
 */
void ss_folio_report(struct folio *folio, struct address_space *mapping, struct ss_folio_report *r)
{
	r->index = folio->index;
	r->nr_pages = folio_nr_pages(folio);
	r->in_mapping = READ_ONCE(folio->mapping) == mapping;
	r->locked = folio_test_locked(folio);
	r->dirty = folio_test_dirty(folio);
	r->writeback = folio_test_writeback(folio);
	r->mapped = folio_mapped(folio);
	r->lru = folio_test_lru(folio);
	r->ino = 0;
	if (folio_trylock(folio)) {
		if (folio->mapping == mapping)
			r->ino = mapping->host->i_ino;
		folio_unlock(folio);
	}
	r->refs = folio_ref_count(folio);
	r->expected = folio_expected_ref_count(folio);
}

/* Pages of the largest folio the page cache may hold. */
unsigned long ss_max_folio_pages(void)
{
	return 1UL << MAX_PAGECACHE_ORDER;
}

/*
 * Takes locked @folio out of every page table of @mapping; false if still
 * mapped. Faults map a folio only under its lock: one that is not mapped
 * now stays so, and the walk of the mapping's vmas is not needed.
 */
static bool ss_folio_unmap(struct address_space *mapping, struct folio *folio)
{
	if (folio_mapped(folio))
		unmap_mapping_pages(mapping, folio->index, folio_nr_pages(folio), false);
	return !folio_mapped(folio);
}

/*
 * Whether reclaim counts @old, a folio on the LRU, as active. MGLRU keeps
 * PG_active off the folios on its lists: their generation says it (as
 * lru_gen_del_folio() reads it when it takes a folio off for migration).
 * A hint either way: the folio may move meanwhile.
 */
static bool ss_folio_lru_active(struct folio *old)
{
#ifdef CONFIG_LRU_GEN
	int gen = folio_lru_gen(old);

	if (gen >= 0) {
		bool active;

		rcu_read_lock();	/* folio_lruvec(): its memcg */
		active = lru_gen_is_active(folio_lruvec(old), gen);
		rcu_read_unlock();
		return active;
	}
#endif
	return folio_test_active(old) && !folio_test_unevictable(old);
}

/*
 * What reclaim knew of a held folio, for the copies that take its place:
 * worked out once per break (a split break puts up to 512 on the LRU).
 */
struct ss_lru_standing {
	bool referenced, workingset, active;
	unsigned long refs;	/* MGLRU's read counts, LRU_REFS_MASK bits */
};

static struct ss_lru_standing ss_lru_standing_of(struct folio *old)
{
	return (struct ss_lru_standing) {
		.referenced = folio_test_referenced(old),
		.workingset = folio_test_workingset(old),
		.active = ss_folio_lru_active(old),
#ifdef CONFIG_LRU_GEN
		.refs = READ_ONCE(old->flags.f) & LRU_REFS_MASK,
#endif
	};
}

/*
 * @copy, which took the held folio's place in the page cache, goes on the
 * LRU with what reclaim knew of that folio (@was), as migration moves it
 * (folio_migrate_flags(), folio_migrate_refs()): a page read again and
 * again stays active, in the working set and (MGLRU) with its reads
 * counted, rather than starting over as a page nobody has used, which
 * reclaim takes first and which its next readers activate again
 * (folio_mark_accessed() batching it for the LRU lock, the batch's
 * reference keeping a hold from ending). Set here, not at the copy's
 * allocation: a folio freed with PG_active set is a bad page, and only
 * the LRU clears it. The held folio keeps its flags: it is still on the
 * LRU, where PG_active changes only under the LRU lock.
 */
static void ss_folio_add_lru_as(struct folio *copy, const struct ss_lru_standing *was)
{
	if (was->referenced)
		folio_set_referenced(copy);
	if (was->workingset)
		folio_set_workingset(copy);
	if (was->active)
		folio_set_active(copy);
#ifdef CONFIG_LRU_GEN
	set_mask_bits(&copy->flags.f, LRU_REFS_MASK, was->refs);
#endif
	folio_add_lru(copy);
}

/*
 * A new folio with @old's bytes for @mapping's page cache: locked, in no
 * mapping yet (what replace_page_cache_folio() wants), of @old's size,
 * and uptodate only if @old is. A held folio was uptodate when spliced
 * (pipes take no other), but a hold's entry owns no reference: after its
 * folio left the cache, its memory can come back as a new folio of the
 * same file at the same index that write_begin has not read yet (the
 * writer's lookup made it), and a reference such as the LRU batch's
 * keeps that from looking ended. Marked uptodate, its copy would give the
 * freed folio's old bytes as the file's: write_begin would not read the
 * rest of a partly written block (holds_stale_entry_new_folio; found by
 * holds_exerciser on xfs). Not uptodate, the copy is read as the folio
 * would have been. replace_page_cache_folio() stores the copy in @old's
 * slot of the XArray, the canonical one of a large folio's multi-index
 * entry, whose sibling slots point at it: the copy takes the whole range.
 */
static struct folio *ss_folio_copy_new(struct address_space *mapping, struct folio *old)
{
	unsigned int order = folio_order(old);
	gfp_t gfp = mapping_gfp_constraint(mapping, ~__GFP_FS) | (order ? __GFP_NOWARN : 0);
	struct folio *new = filemap_alloc_folio(gfp, order, NULL);

	if (!new)
		return NULL;
	folio_copy(new, old);
	__folio_set_locked(new);
	if (folio_test_uptodate(old))
		folio_mark_uptodate(new);
	return new;
}

/* @new takes @old's place in the page cache (not on the LRU yet). */
static void ss_folio_replace_off_lru(struct folio *old, struct folio *new)
{
	long nr = folio_nr_pages(new);

	replace_page_cache_folio(old, new);
	/*
	 * It moves one page-cache reference, as for the small folios of its
	 * one user (FUSE); the page cache holds one per page
	 * (__filemap_add_folio(), filemap_free_folio()). Without this a
	 * truncate freed a replaced large folio while it still held it
	 * ("Bad page state", seen on Debian's kernel). Both folios are
	 * locked: nothing can take @new out of the cache meanwhile, and
	 * @old is referenced by its readers and the caller.
	 */
	if (nr > 1) {
		folio_ref_add(new, nr - 1);
		folio_put_refs(old, nr - 1);
	}
	/*
	 * It moves NR_FILE_PAGES (and NR_SHMEM), not what the page cache
	 * counts of a PMD-sized folio besides (filemap_unaccount_folio()).
	 */
	if (folio_test_pmd_mappable(new)) {
		lruvec_stat_mod_folio(old, NR_FILE_THPS, -nr);
		lruvec_stat_mod_folio(new, NR_FILE_THPS, nr);
	}
}

/*
 * Whether an integrity writeback (fsync(), sync_file_range(), sync(), an
 * O_SYNC write) has tagged @index of @mapping to be written, and so may
 * hold the folio that was there in its batch, waiting for its lock: it
 * skips a folio that left the page cache meanwhile and never looks at
 * what took its place, and would return before a dirty break's copy is
 * written. Read after the replacement with both folios locked: the tag
 * is set before a writeback takes folios into its batch, stays on the
 * slot through the replacement, and is cleared only by a writeback of
 * the folio in the slot, which needs its lock.
 */
static bool ss_integrity_writeback_pending(struct address_space *mapping, pgoff_t index)
{
	return xa_get_mark(&mapping->i_pages, index, PAGECACHE_TAG_TOWRITE);
}

/*
 * Undoes ss_folio_replace_off_lru(@old, @new): locked @old back in its
 * place; @new, out of the page cache and off the LRU, unlocked and
 * released.
 */
static void ss_folio_unreplace(struct folio *old, struct folio *new)
{
	ss_folio_replace_off_lru(new, old);
	folio_unlock(new);
	folio_put(new);
}

/* Every buffer head of a folio, round the ring from @head; NULL after. */
#define for_each_folio_bh(bh, head) \
	for ((bh) = (head); (bh); (bh) = (bh)->b_this_page != (head) ? (bh)->b_this_page : NULL)

/* Locks every buffer head of @head's folio, or none; false if one was locked. */
static bool ss_buffers_trylock(struct buffer_head *head)
{
	struct buffer_head *bh, *failed;

	for_each_folio_bh(bh, head)
		if (!trylock_buffer(bh))
			break;
	if (!bh)
		return true;
	failed = bh;
	for_each_folio_bh(bh, head) {
		if (bh == failed)
			break;
		unlock_buffer(bh);
	}
	return false;
}

static void ss_buffers_unlock(struct buffer_head *head)
{
	struct buffer_head *bh;

	for_each_folio_bh(bh, head)
		unlock_buffer(bh);
}

/* Whether anybody holds a reference to a buffer head of @head's folio. */
static bool ss_buffers_referenced(struct address_space *mapping, struct buffer_head *head)
{
	struct buffer_head *bh;
	bool busy = false;

	spin_lock(&mapping->i_private_lock);
	for_each_folio_bh(bh, head)
		busy |= atomic_read(&bh->b_count) != 0;
	spin_unlock(&mapping->i_private_lock);
	return busy;
}

/* Locked, unmapped @old's buffer ring, taken off it; NULL if in use. */
static struct buffer_head *ss_buffers_take(struct address_space *mapping, struct folio *old)
{
	struct buffer_head *head = folio_buffers(old);

	if (ss_injected(SS_BUFFERS_BUSY) || !ss_buffers_trylock(head))
		return NULL;
	if (ss_buffers_referenced(mapping, head)) {
		ss_buffers_unlock(head);
		return NULL;
	}
	/* Off the folio nobody can reach them: no lock needed any more. */
	folio_detach_private(old);
	ss_buffers_unlock(head);
	return head;
}

/* Buffer ring @head, taken off a folio of @new's size, becomes @new's. */
static void ss_buffers_give(struct folio *new, struct buffer_head *head)
{
	struct buffer_head *bh;

	for_each_folio_bh(bh, head)
		folio_set_bh(bh, new, bh_offset(bh));
	folio_attach_private(new, head);
}

/*
 * Moves @old's file-system state to @new, its copy: the buffer heads
 * (ext4, as __buffer_migrate_folio() does) or the private pointer (iomap's
 * per-folio state, as filemap_migrate_folio() does). Migration's own
 * helpers freeze @old's reference count first, which a held folio's
 * readers make impossible; the state itself moves the same way. Both
 * locked, @old unmapped and not under writeback. False, nothing changed,
 * for other address space operations and for buffer heads that are
 * locked or referenced (somebody is working on them).
 */
static bool ss_folio_move_private(struct address_space *mapping, struct folio *old, struct folio *new)
{
#ifdef CONFIG_MIGRATION
	typeof(mapping->a_ops->migrate_folio) move = mapping->a_ops->migrate_folio;
	struct buffer_head *head;

	if (!folio_get_private(old))
		return true;
	if (move == filemap_migrate_folio) {
		/* iomap's per-folio state: one pointer, nothing points back. */
		folio_attach_private(new, folio_detach_private(old));
		return true;
	}
	if (move != buffer_migrate_folio || !(head = ss_buffers_take(mapping, old)))
		return false;
	ss_buffers_give(new, head);
	return true;
#else
	return false;
#endif
}

/*
 * A break: @new, locked @old's copy (ss_folio_copy_new(), @old unmapped),
 * takes @old's place in @mapping's page cache together with its
 * file-system state, and @old stays with its readers, without private
 * data, out of the cache. @old not under writeback; @dirty: it is dirty,
 * and its dirtiness moves too (accounted off @old, on the copy, with no
 * writeback). A clean folio whose state cannot move has it released
 * instead (the copy gets new state from the writer's write_begin, at the
 * cost of looking its blocks up again). Returns @new; or, @new freed and
 * nothing changed but a clean folio's released state, ERR_PTR(-EBUSY)
 * where the state could neither move nor be released, ERR_PTR(-EAGAIN)
 * where an integrity writeback may be waiting for dirty @old (a dirty
 * folio is then written back and broken clean).
 */
static struct folio *ss_folio_replace_with(struct address_space *mapping, struct folio *old,
					   struct folio *new, bool dirty)
{
	struct ss_lru_standing was;

	/* try_to_free_buffers() refuses busy buffers, as tests inject. */
	if (!ss_folio_move_private(mapping, old, new) &&
	    (dirty || (folio_buffers(old) && ss_injected(SS_BUFFERS_BUSY)) ||
	     !filemap_release_folio(old, GFP_NOFS))) {
		__folio_clear_locked(new);
		folio_put(new);
		return ERR_PTR(-EBUSY);
	}
	/* Off @old with its accounting; the XArray's dirty mark stays. */
	dirty = dirty && folio_clear_dirty_for_io(old);
	ss_folio_replace_off_lru(old, new);
	/* Back, state and dirtiness too, unless the state cannot move back. */
	if (dirty && ss_integrity_writeback_pending(mapping, new->index) &&
	    ss_folio_move_private(mapping, new, old)) {
		ss_folio_unreplace(old, new);
		filemap_dirty_folio(mapping, old);
		return ERR_PTR(-EAGAIN);
	}
	was = ss_lru_standing_of(old);
	ss_folio_add_lru_as(new, &was);
	if (dirty)
		filemap_dirty_folio(mapping, new);
	return new;
}

/*
 * __split_huge_page_to_list_to_order(), which is not exported: found by
 * name at load; NULL where the kernel has none (no transparent hugepages,
 * hence no large page-cache folios to split).
 */
static int (*ss_split_to_order)(struct page *page, struct list_head *list, unsigned int new_order);

/*
 * __mem_cgroup_charge(), which filemap_add_folio() charges a new page-cache
 * folio with (not exported): a one-step split break charges its copies
 * the same way. NULL without memory cgroups, or where it is not found
 * (the break then keeps a dirty copy with buffer heads whole).
 */
static int (*ss_memcg_charge)(struct folio *folio, struct mm_struct *mm, gfp_t gfp);

void ss_folio_learn_split(void)
{
	static const char *const name[] = { "__split_huge_page_to_list_to_order" };
	unsigned long addr;

	if (!ss_lookup_functions(name, &addr, 1))
		ss_split_to_order = (void *)ss_func_start(addr);
#ifdef CONFIG_MEMCG
	{
		static const char *const charge[] = { "__mem_cgroup_charge" };

		if (!ss_lookup_functions(charge, &addr, 1))
			ss_memcg_charge = (void *)ss_func_start(addr);
	}
#endif
}

/*
 * filemap_add_folio()'s charge of a new page-cache folio, to the writer's
 * memory cgroup; but at its limit after one reclaim pass it fails instead
 * of calling the cgroup's OOM killer (__GFP_NORETRY): the split only
 * spares later copies, and the whole copy it falls back to is charged
 * without a limit, as replace_page_cache_folio() charges it. A writer at
 * its memory.max was killed for the split before this
 * (holds_split_over_memory_limit).
 */
static int ss_charge_copy(struct folio *folio, gfp_t gfp)
{
	if (mem_cgroup_disabled())
		return 0;
	return ss_memcg_charge ? ss_memcg_charge(folio, NULL, gfp | __GFP_NORETRY) : -ENOMEM;
}

/* How a split break gives a large folio's file-system state to its pages. */
enum ss_split_state {
	SS_SPLIT_NO,		/* it cannot: the copy stays whole */
	SS_SPLIT_BARE,		/* no state */
	SS_SPLIT_RELEASE,	/* released once clean (iomap's per-folio state, see below) */
	SS_SPLIT_BUFFERS,	/* buffer heads: each page gets its own blocks' */
	SS_SPLIT_ONE_STEP,	/* dirty, with buffer heads: small copies put in at once */
};

/*
 * Whether the buffer ring @head covers its folio of @nr pages block by
 * block from offset 0, and none is on an inode's list of associated
 * buffers (which free_buffer_head() must not see).
 */
static bool ss_buffers_in_order(struct buffer_head *head, long nr)
{
	struct buffer_head *bh;
	unsigned long off = 0;

	for_each_folio_bh(bh, head) {
		if (bh_offset(bh) != off || bh->b_size > PAGE_SIZE || !list_empty(&bh->b_assoc_buffers))
			return false;
		off += bh->b_size;
	}
	return off == nr * PAGE_SIZE;
}

/*
 * Whether locked, large @old can be broken into a copy in small folios,
 * and how its state goes. Only within EOF: the split drops pages beyond
 * it; and only an uptodate one, whose pages need no per-block uptodate
 * bits. An iomap folio's state (per-block uptodate and dirty bits) is
 * released: a small folio without it is wholly uptodate and, if dirty,
 * wholly dirty, which is what iomap_dirty_folio() would set up. A @dirty
 * one with buffer heads does not go through the kernel's split: its pages
 * could be dirty only once they have their buffers, which they would get
 * after the split, and a data-integrity sync that reached one clean in
 * between would skip bytes written before it (tested:
 * holds_split_window_sync); ss_folio_break_small() puts its copies in
 * with their buffers, locked, at once.
 */
static enum ss_split_state ss_split_state(struct address_space *mapping, struct folio *old, bool dirty)
{
	long nr = folio_nr_pages(old);

	if (!ss_split_to_order || nr == 1 || mapping_min_folio_order(mapping))
		return SS_SPLIT_NO;
	if (!folio_test_uptodate(old))
		return SS_SPLIT_NO;
	if (old->index + nr > DIV_ROUND_UP(i_size_read(mapping->host), PAGE_SIZE))
		return SS_SPLIT_NO;
	if (!folio_get_private(old))
		return SS_SPLIT_BARE;
#ifdef CONFIG_MIGRATION
	if (mapping->a_ops->migrate_folio == filemap_migrate_folio)
		return SS_SPLIT_RELEASE;
	if (mapping->a_ops->migrate_folio == buffer_migrate_folio &&
	    ss_buffers_in_order(folio_buffers(old), nr))
		return dirty ? SS_SPLIT_ONE_STEP : SS_SPLIT_BUFFERS;
#endif
	return SS_SPLIT_NO;
}

/*
 * The buffers of locked @small, the next page of a split, cut from the
 * ring's remainder at *@cur (blocks in order, ss_buffers_in_order()) into
 * a ring of their own; *@cur moves on to the next page's. They are freed
 * instead where @small has buffers already (a store fault gave it its own
 * between the split and this lock: the file system knows its blocks, and
 * @small is dirtied through its address space operations) or left the
 * page cache (truncated meanwhile, @mine false). Returns whether @small
 * got ours.
 */
static bool ss_buffers_share_out(struct folio *small, struct buffer_head **cur, bool mine)
{
	struct buffer_head *first = *cur, *bh = first, *next;
	unsigned int n = PAGE_SIZE / first->b_size;

	mine = mine && !folio_get_private(small);

	while (n--) {
		unsigned long off = bh_offset(bh) & ~PAGE_MASK;

		next = bh->b_this_page;
		if (!n)
			bh->b_this_page = first;
		if (mine) {
			folio_set_bh(bh, small, off);
		} else {
			bh->b_this_page = NULL;
			free_buffer_head(bh);
		}
		bh = next;
	}
	*cur = bh;
	if (mine)
		folio_attach_private(small, first);
	return mine;
}

/*
 * A break of locked, large, dirty, held @old with buffer heads (ext4)
 * into small copies in one step: the kernel's split unlocks every page
 * before this code could give it its buffers, and a page of ext4 that is
 * dirty without buffers is dropped by its writeback, one that is clean
 * skipped by a data-integrity sync. Here the copies are made outside the
 * page cache, locked, and go in together under the XArray's lock, each
 * with its share of @old's buffer ring, and are dirtied before they are
 * unlocked: a writeback that reaches one waits for its lock and finds it
 * dirty with its buffers. The multi-index entry of @old is split into
 * order-0 slots (xas_split() gives every slot the entry's marks, DIRTY
 * among them), and the page cache's references and NR_FILE_PAGES move
 * from @old to the copies, as replace_page_cache_folio() moves them for
 * one. Returns the copy at @at, locked, referenced; ERR_PTR(-ENOMEM),
 * nothing changed: no memory for the copies, their charge or the XArray
 * nodes (the caller keeps the copy whole); ERR_PTR(-EBUSY), nothing
 * changed: the buffers are in use; ERR_PTR(-EAGAIN), nothing changed: an
 * integrity writeback tagged @old's range (ss_integrity_writeback_pending()).
 */
static struct folio *ss_folio_break_small(struct address_space *mapping, struct folio *old, pgoff_t at)
{
	long i, made = 0, nr = folio_nr_pages(old);
	gfp_t gfp = mapping_gfp_constraint(mapping, ~__GFP_FS) | __GFP_NOWARN;
	/*
	 * Slab memory (the array, XArray nodes): no page-cache zone bits.
	 * The nodes are charged to the writer's cgroup (the page cache's
	 * XArray is XA_FLAGS_ACCOUNT): at its limit they fail, as the
	 * copies' charge does (ss_charge_copy()), rather than call its OOM
	 * killer.
	 */
	gfp_t slab_gfp = GFP_NOFS | __GFP_NOWARN | __GFP_NORETRY;
	XA_STATE(xas, &mapping->i_pages, old->index);
	struct buffer_head *bufs, *cur;
	struct folio **copies, *ret;
	struct ss_lru_standing was;
	bool moved, pending;

	copies = kmalloc_array(nr, sizeof(*copies), slab_gfp);
	if (!copies)
		return ERR_PTR(-ENOMEM);
	ret = ERR_PTR(-ENOMEM);
	for (; made < nr; made++) {
		struct folio *copy = filemap_alloc_folio(gfp, 0, NULL);

		if (!copy)
			goto free;
		if (ss_charge_copy(copy, gfp)) {
			folio_put(copy);
			goto free;
		}
		copy_highpage(&copy->page, folio_page(old, made));
		__folio_set_locked(copy);
		__folio_mark_uptodate(copy);
		copies[made] = copy;
	}
	xas_set_order(&xas, old->index, 0);
	xas_split_alloc(&xas, old, folio_order(old), slab_gfp);
	if (xas_error(&xas))
		goto free;
	ret = ERR_PTR(-EBUSY);
	bufs = ss_buffers_take(mapping, old);
	if (!bufs)
		goto free_nodes;
	/* Off @old with its accounting, onto the copies below. */
	moved = folio_clear_dirty_for_io(old);
	ss_race_window(SS_SPLIT_WINDOW_BEFORE);
	xas_lock_irq(&xas);
	xas_reset(&xas);
	pending = xas_load(&xas) != old || xas_get_mark(&xas, PAGECACHE_TAG_TOWRITE);
	if (!pending) {
		xas_split(&xas, old, folio_order(old));
		for (i = 0, cur = bufs; i < nr; i++) {
			struct folio *copy = copies[i];

			ss_buffers_share_out(copy, &cur, true);
			copy->mapping = mapping;
			copy->index = old->index + i;
			folio_ref_inc(copy);	/* the page cache's */
			xas_set(&xas, copy->index);
			xas_store(&xas, copy);
			lruvec_stat_mod_folio(copy, NR_FILE_PAGES, 1);
		}
		lruvec_stat_mod_folio(old, NR_FILE_PAGES, -nr);
		if (folio_test_pmd_mappable(old))
			lruvec_stat_mod_folio(old, NR_FILE_THPS, -nr);
		old->mapping = NULL;
	}
	xas_unlock_irq(&xas);
	if (pending) {
		ss_buffers_give(old, bufs);
		if (moved)
			filemap_dirty_folio(mapping, old);
		ret = ERR_PTR(-EAGAIN);
		goto free_nodes;
	}
	/* The page cache's references of @old; ours and its readers' stay. */
	folio_put_refs(old, nr);
	ss_race_window(SS_SPLIT_WINDOW_AFTER);
	ret = NULL;
	was = ss_lru_standing_of(old);
	for (i = 0; i < nr; i++) {
		struct folio *copy = copies[i];

		if (moved)
			filemap_dirty_folio(mapping, copy);
		ss_folio_add_lru_as(copy, &was);
		if (copy->index == at) {
			ret = copy;
			continue;
		}
		folio_unlock(copy);
		folio_put(copy);
	}
	kfree(copies);
	return ret;

free_nodes:
	xas_destroy(&xas);
free:
	while (made--) {
		if (folio_test_locked(copies[made]))
			__folio_clear_locked(copies[made]);
		folio_put(copies[made]);
	}
	kfree(copies);
	return ret;
}

/*
 * A break of locked, large, held @old whose copy is split: the writer
 * that broke it is likely to write this range again, and a later hold of
 * it would cost that writer a copy of the whole folio per write (and a
 * splicer refused for the writer's reference one per splice); in small
 * folios every later break copies a page. A dirty folio with buffer heads
 * is broken by ss_folio_break_small(). Otherwise the copy takes @old's
 * place as a whole, then the kernel splits it as it splits any page-cache
 * folio (the copy is locked, unmapped and without state while it does,
 * and dirty if @old was, which only a folio without buffer heads can be
 * here); each page then gets its share of @old's buffer heads, if any.
 * Returns the page at @at, locked, referenced (it was unlocked a moment
 * when it is not the first: the caller must check it again for a hold).
 * @raced counts the pages that a store fault or a truncation reached
 * between the split and their lock (see ss_buffers_share_out()).
 * Where @old is small or cannot be split, or the split fails (a reader's
 * reference on the new copy), the copy stays whole: what
 * ss_folio_replace_with() returns. ERR_PTR(-EBUSY), nothing changed:
 * @old could not be unmapped; ERR_PTR(-ENOMEM), @old unmapped but
 * otherwise unchanged: no copy could be allocated; ERR_PTR(-EAGAIN), @old
 * unmapped, its state released or moved back, otherwise unchanged: it is
 * dirty and an integrity writeback may be waiting for it (see
 * ss_integrity_writeback_pending()), the writer writes it back first.
 */
struct folio *ss_folio_break_copy(struct address_space *mapping, struct folio *old, bool dirty, pgoff_t at,
				   struct ss_split_races *raced)
{
	enum ss_split_state state = ss_split_state(mapping, old, dirty);
	struct buffer_head *bufs = NULL;
	struct folio *copy, *small, *ret = NULL;
	struct ss_lru_standing was;
	bool moved = false;
	LIST_HEAD(tails);
	int err, tries = 0;

	raced->faulted = raced->truncated = 0;
	ss_race_window(SS_BREAK_WINDOW);
	if (at - old->index >= folio_nr_pages(old))
		at = old->index;
	if (!ss_folio_unmap(mapping, old))
		return ERR_PTR(-EBUSY);
	if (state == SS_SPLIT_ONE_STEP) {
		copy = ss_folio_break_small(mapping, old, at);
		if (copy != ERR_PTR(-ENOMEM))
			return copy;
		/* No memory for the copies: one copy, whole, state moved. */
		state = SS_SPLIT_NO;
	}
	copy = ss_folio_copy_new(mapping, old);
	if (!copy)
		return ERR_PTR(-ENOMEM);
	if (state == SS_SPLIT_NO)
		return ss_folio_replace_with(mapping, old, copy, dirty);
	if (state == SS_SPLIT_BUFFERS && !(bufs = ss_buffers_take(mapping, old)))
		goto whole;
	/* Off @old with its accounting, onto the copy below. */
	moved = dirty && folio_clear_dirty_for_io(old);
	if (state == SS_SPLIT_RELEASE && !filemap_release_folio(old, GFP_NOFS)) {
		if (moved)
			filemap_dirty_folio(mapping, old);
		goto whole;
	}
	ss_folio_replace_off_lru(old, copy);
	if (moved && ss_integrity_writeback_pending(mapping, copy->index)) {
		/* Its iomap state was released: made again at writeback. */
		ss_folio_unreplace(old, copy);
		filemap_dirty_folio(mapping, old);
		return ERR_PTR(-EAGAIN);
	}
	/*
	 * Without buffers the pages need no state of their own: dirty from
	 * before the split (it gives every page the flag), each is dirty from
	 * the moment anyone can reach it.
	 */
	if (moved)
		filemap_dirty_folio(mapping, copy);
	ss_race_window(SS_SPLIT_WINDOW_BEFORE);
	/* -EAGAIN: a reader's reference on the copy, gone in a moment. */
	do
		err = ss_split_to_order(&copy->page, &tails, 0);
	while (err == -EAGAIN && ++tries < 4);
	was = ss_lru_standing_of(old);
	if (err) {
		if (bufs)
			ss_buffers_give(copy, bufs);
		ss_folio_add_lru_as(copy, &was);
		return copy;
	}
	ss_race_window(SS_SPLIT_WINDOW_AFTER);
	/*
	 * @copy is its first page now, locked, with our reference; the others
	 * are on @tails in order, unlocked, not on the LRU, each with a
	 * reference of ours, which keeps invalidation from evicting them
	 * before they have their state. Taking their locks in order after the
	 * first's is the page cache's order.
	 */
	for (small = copy; small;) {
		/* Truncated between the split and this lock (not under i_rwsem). */
		bool cached = small->mapping == mapping, own = cached;

		if (bufs)
			own = ss_buffers_share_out(small, &bufs, cached);
		else if (folio_get_private(small))
			own = false;
		if (!cached)
			raced->truncated++;
		else if (!own)
			raced->faulted++;
		ss_folio_add_lru_as(small, &was);
		if (!ret && at >= small->index && at < small->index + folio_nr_pages(small)) {
			ret = small;
		} else {
			folio_unlock(small);
			folio_put(small);
		}
		small = list_first_entry_or_null(&tails, struct folio, lru);
		if (small) {
			list_del(&small->lru);
			folio_lock(small);
		}
	}
	/* Never NULL: @at lies in the copy's range, and every page was seen. */
	return ret ?: ERR_PTR(-EAGAIN);

whole:
	return ss_folio_replace_with(mapping, old, copy, dirty);
}

/*
 * A break without a copy (ss_folio_break_copy() could not allocate one:
 * a large folio's order on fragmented memory; it had unmapped @old and
 * left its state alone): locked, clean, unmapped @old leaves @mapping's
 * page cache, its file-system state released, as memory-failure takes a
 * page out (generic_error_remove_folio: a clean folio's bytes are the
 * file's, so the next lookup reads them back). @old stays with its
 * readers, unchanged, out of the cache: no writer can reach it. False,
 * with nothing changed but released state, where it is dirty or mapped
 * or its state cannot be released.
 */
bool ss_folio_evict(struct address_space *mapping, struct folio *old)
{
	if (folio_test_dirty(old) || folio_test_writeback(old) || folio_mapped(old))
		return false;
	if (!filemap_release_folio(old, GFP_NOFS))
		return false;
	return !generic_error_remove_folio(mapping, old);
}

void ss_folio_wait_writeback(struct folio *folio)
{
	folio_wait_writeback(folio);
}

/*
 * Whether @addr is the function @name. A function of a module prints as
 * "name [module]": ext4 and xfs are modules on distribution kernels.
 */
static bool ss_symbol_is(unsigned long addr, const char *name)
{
	char sym[KSYM_SYMBOL_LEN];
	size_t len = strlen(name);

	sprint_symbol_no_offset(sym, addr);
	return !strncmp(sym, name, len) && (sym[len] == '\0' || sym[len] == ' ');
}

/*
 * How stable splices from files with these address_space_operations get
 * their snapshot: held (STABLE_SPLICE_HELD) where every writer passes the
 * module's choke points before it changes a folio, outside any journal
 * handle (see Documentation/stable-splice.rst, "Which files get zero
 * copy"); ext4's journalled aops (data=journal, chattr +j) write data
 * inside the journal; other file systems are not known to. Told by the
 * name of a function the ops point at: the ops themselves are static data,
 * in kallsyms only with CONFIG_KALLSYMS_ALL.
 */
static int aops_kind(const struct address_space_operations *a_ops, const char *fs)
{
	if (!strcmp(fs, "ext4") && a_ops->write_end) {
		if (ss_symbol_is((unsigned long)a_ops->write_end, "ext4_write_end") ||
		    ss_symbol_is((unsigned long)a_ops->write_end, "ext4_da_write_end"))
			return STABLE_SPLICE_HELD;
		if (ss_symbol_is((unsigned long)a_ops->write_end, "ext4_journalled_write_end"))
			return STABLE_SPLICE_COPY_JOURNALLED;
	}
	if (!strcmp(fs, "xfs") && a_ops->dirty_folio &&
	    ss_symbol_is((unsigned long)a_ops->dirty_folio, "iomap_dirty_folio"))
		return STABLE_SPLICE_HELD;
	return STABLE_SPLICE_COPY_FS;
}

static bool aops_zero_copy_uncached(const struct address_space_operations *a_ops,
				    const char *fs)
{
	return aops_kind(a_ops, fs) == STABLE_SPLICE_HELD;
}

/*
 * The answer per ops table, cached: one word per entry, the table's address
 * with the answer in bit 0 (the tables are word aligned), so a reader never
 * sees one table's address with another's answer. A file system module
 * that goes away takes its entries along (ss_aops_cache_going): another
 * module's table may later sit at the same address.
 */
#define SS_AOPS_CACHE 8
#define SS_AOPS_ZERO_COPY 1UL
static unsigned long aops_cache[SS_AOPS_CACHE];
static DEFINE_SPINLOCK(aops_cache_lock);

static bool mapping_zero_copy(struct address_space *mapping)
{
	const struct address_space_operations *a_ops = READ_ONCE(mapping->a_ops);
	unsigned long key = (unsigned long)a_ops, entry;
	bool zero_copy;
	int i;

	if (IS_DAX(mapping->host) || mapping_inaccessible(mapping))
		return false;
	for (i = 0; i < SS_AOPS_CACHE; i++) {
		entry = READ_ONCE(aops_cache[i]);
		if ((entry & ~SS_AOPS_ZERO_COPY) == key)
			return entry & SS_AOPS_ZERO_COPY;
	}
	zero_copy = aops_zero_copy_uncached(a_ops, mapping->host->i_sb->s_type->name);
	spin_lock(&aops_cache_lock);
	for (i = 0; i < SS_AOPS_CACHE; i++) {
		entry = aops_cache[i];
		if ((entry & ~SS_AOPS_ZERO_COPY) == key)
			break;
		if (!entry) {
			WRITE_ONCE(aops_cache[i], key | (zero_copy ? SS_AOPS_ZERO_COPY : 0));
			break;
		}
	}
	spin_unlock(&aops_cache_lock);
	return zero_copy;
}

/* The mapping of @file, open, in *@mapping, and whether it gets zero copy. */
bool ss_file_zero_copy(struct file *file, struct address_space **mapping)
{
	*mapping = file->f_mapping;
	return mapping_zero_copy(*mapping);
}

/* STABLE_SPLICE_FILE_INFO of @file (include/uapi/linux/stable_splice.h). */
int ss_file_stable_kind(struct file *file)
{
	struct address_space *mapping = file->f_mapping;
	struct inode *inode = file_inode(file);
	int kind;

	if (!S_ISREG(inode->i_mode))
		return -EINVAL;
	if (IS_DAX(inode))
		kind = STABLE_SPLICE_COPY_DAX;
	else if (mapping_inaccessible(mapping))
		kind = STABLE_SPLICE_COPY_FS;
	else
		kind = aops_kind(READ_ONCE(mapping->a_ops), inode->i_sb->s_type->name);
	if (mapping_large_folio_support(mapping))
		kind |= STABLE_SPLICE_LARGE_FOLIOS;
	return kind;
}

static int ss_aops_cache_going(struct notifier_block *nb, unsigned long state, void *data)
{
	struct module *mod = data;
	int i;

	if (state != MODULE_STATE_GOING)
		return NOTIFY_DONE;
	spin_lock(&aops_cache_lock);
	for (i = 0; i < SS_AOPS_CACHE; i++) {
		if (within_module(aops_cache[i] & ~SS_AOPS_ZERO_COPY, mod))
			WRITE_ONCE(aops_cache[i], 0);
	}
	spin_unlock(&aops_cache_lock);
	return NOTIFY_DONE;
}

static struct notifier_block ss_aops_cache_nb = {
	.notifier_call = ss_aops_cache_going,
};

int ss_aops_cache_init(void)
{
	return register_module_notifier(&ss_aops_cache_nb);
}

void ss_aops_cache_exit(void)
{
	unregister_module_notifier(&ss_aops_cache_nb);
}
