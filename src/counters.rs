// SPDX-License-Identifier: GPL-2.0

//! Counters that tests and benchmarks read from
//! `/sys/kernel/debug/stable_splice/`, one decimal number per file.

use core::{
    fmt,
    sync::atomic::{AtomicI64, Ordering::Relaxed},
};
use crate::bindings as b;
use kernel::{
    debugfs::{Dir, File, Reader},
    prelude::*,
    uaccess::UserSliceReader,
};

/// One counter. A core atomic: a stable splice counts a few times per call,
/// and a `kernel::sync::atomic` operation is an out-of-line C helper call
/// on kernels built without inlined Rust helpers (GCC builds, Debian's);
/// relaxed, as the debugfs readers need no order.
#[repr(transparent)]
pub(crate) struct Counter(AtomicI64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    pub(crate) fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub(&self, n: i64) {
        self.0.fetch_sub(n, Relaxed);
    }

    /// Raises the counter to `n` if it is below.
    pub(crate) fn max(&self, n: i64) {
        self.0.fetch_max(n, Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// All counters of the module. `ss_counters` to the direct trampolines
/// of the splice entry points (rust/trampolines.S), which read the first
/// two (their offsets are checked below).
#[repr(C)]
pub(crate) struct Counters {
    /// Stable splices in progress: `splice()` calls with the flag, marked
    /// io_uring workers and io_uring requests between prep and cleanup.
    /// Back to 0 when nothing is splicing. Not only a statistic: every
    /// splice asks it first whether it can be a stable one at all
    /// (`Calls::any`, or the direct trampolines), so it is exact and never
    /// reset, and it is counted only while a module reference is held.
    pub(crate) calls_in_flight: Counter,
    /// Processes in the stable mode (each keeps the module loaded).
    pub(crate) mode_processes: Counter,
    /// Stable splice calls that got through to the file system.
    pub(crate) stable_calls: Counter,
    /// Folios currently held zero-copy for stable buffers.
    pub(crate) holds_active: Counter,
    /// Holds taken (new ones; splices that find a folio held already join
    /// that hold).
    pub(crate) holds_taken: Counter,
    /// Holds not taken because somebody else referenced the folio (a
    /// writer between its lookup and its write, a plain splice, a pin, a
    /// per-CPU LRU batch): those buffers were copied.
    pub(crate) holds_refused: Counter,
    /// Bytes put into pipes as references to page-cache folios.
    pub(crate) bytes_zero_copy: Counter,
    /// Bytes copied into private pages while splicing.
    pub(crate) bytes_copied_at_splice: Counter,
    /// Holds broken by a writer: a copy took the folio's place in the page
    /// cache; the old folio stays, unchanged, with its readers.
    pub(crate) breaks: Counter,
    /// Writebacks of dirty held folios that breaks waited for.
    pub(crate) breaks_written_back: Counter,
    /// Breaks of dirty held folios whose file-system state and dirtiness
    /// moved to the copy (no writeback).
    pub(crate) breaks_dirty: Counter,
    /// Breaks of large held folios whose copy went into the page cache as
    /// small folios (later breaks of the range copy a page).
    pub(crate) breaks_split: Counter,
    /// Pages of split copies that a store fault reached before they got
    /// their share of the old folio's state: the share was freed, the page
    /// dirtied through the state its fault gave it.
    pub(crate) split_pages_faulted: Counter,
    /// Pages of split copies that a truncation took out of the page cache
    /// before they got their share (freed, the page not dirtied).
    pub(crate) split_pages_truncated: Counter,
    /// Bytes of the folios that breaks left to the pipes as snapshots.
    pub(crate) snapshot_bytes: Counter,
    /// Breaks without memory for the copy that took the clean held folio
    /// out of the page cache instead (the writer reads the page back).
    pub(crate) breaks_evicted: Counter,
    /// Breaks that found no way to make the copy at first (the held folio
    /// could not be unmapped or released, or it stayed dirty): the writer
    /// let go of the folio, waited a little and tried again, or got
    /// `ENOMEM`. Never a write into the held folio.
    pub(crate) breaks_retried: Counter,
    /// Breaks that could not replace the folio (the writer went ahead in
    /// place); 0 by construction, asserted by the tests.
    pub(crate) break_failures: Counter,
    /// Holds that ended with their file's inode (eviction: unlink and last
    /// close, `drop_caches`, memory pressure).
    pub(crate) holds_evicted: Counter,
    /// Writers (buffered writes, store faults, size changes) that looked
    /// for holds of their file under the registry's lock: only writers of
    /// files with holds do (`src/hold/table.rs`).
    pub(crate) writer_lookups: Counter,
    /// Longest time a writer spent on a held folio, in nanoseconds.
    pub(crate) max_writer_wait_ns: Counter,
    /// Splices into pipes made stable by the mode, not by the flag
    /// (`sendfile()` makes one per pipe-full); also in `stable_calls`.
    pub(crate) mode_splices: Counter,
    /// Children of processes in the mode that were killed before they ran
    /// because there was no memory to record them in the mode.
    pub(crate) mode_fork_failures: Counter,
    /// Of the two writer redirects, how many run through an ftrace
    /// callback instead of a direct call: 2 by default, 0 with
    /// `direct_calls=1` unless a BPF program had a function's direct call
    /// at load.
    pub(crate) writer_redirects_by_callback: Counter,
    /// Of the three splice entry points' redirects (`__x64_sys_splice`,
    /// `do_splice`, `do_splice_read`), how many run through an ftrace
    /// callback instead of a direct call: 3 by default, 0 with
    /// `direct_calls=1` unless a BPF program had a function's direct call
    /// at load.
    pub(crate) splice_redirects_by_callback: Counter,
    /// 1 while the redirects of `do_splice` and `do_splice_read` are out
    /// because no stable splice needs them (`src/entry_gate.rs`), else 0.
    pub(crate) splice_entries_idle: Counter,
    /// How often a stable splice (or an io_uring request with the flag, or
    /// a process entering the mode) put them back.
    pub(crate) splice_entries_rearmed: Counter,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Counters, calls_in_flight) == crate::bindings::SS_COUNTERS_CALLS_IN_FLIGHT as usize);
    assert!(offset_of!(Counters, mode_processes) == crate::bindings::SS_COUNTERS_MODE_PROCESSES as usize);
};

#[export_name = "ss_counters"]
pub(crate) static COUNTERS: Counters = Counters {
    calls_in_flight: Counter::new(),
    mode_processes: Counter::new(),
    stable_calls: Counter::new(),
    holds_active: Counter::new(),
    holds_taken: Counter::new(),
    holds_refused: Counter::new(),
    bytes_zero_copy: Counter::new(),
    bytes_copied_at_splice: Counter::new(),
    breaks: Counter::new(),
    breaks_written_back: Counter::new(),
    breaks_dirty: Counter::new(),
    breaks_split: Counter::new(),
    split_pages_faulted: Counter::new(),
    split_pages_truncated: Counter::new(),
    snapshot_bytes: Counter::new(),
    breaks_evicted: Counter::new(),
    breaks_retried: Counter::new(),
    break_failures: Counter::new(),
    holds_evicted: Counter::new(),
    writer_lookups: Counter::new(),
    max_writer_wait_ns: Counter::new(),
    mode_splices: Counter::new(),
    mode_fork_failures: Counter::new(),
    writer_redirects_by_callback: Counter::new(),
    splice_redirects_by_callback: Counter::new(),
    splice_entries_idle: Counter::new(),
    splice_entries_rearmed: Counter::new(),
};

const COUNT: usize = 27;

/// Every counter with its name (debugfs file, `/dev/stable_splice` line).
fn all() -> [(&'static CStr, &'static Counter); COUNT] {
    let c = &COUNTERS;
    [
        (c"stable_calls", &c.stable_calls),
        (c"holds_active", &c.holds_active),
        (c"holds_taken", &c.holds_taken),
        (c"holds_refused", &c.holds_refused),
        (c"bytes_zero_copy", &c.bytes_zero_copy),
        (c"bytes_copied_at_splice", &c.bytes_copied_at_splice),
        (c"breaks", &c.breaks),
        (c"breaks_written_back", &c.breaks_written_back),
        (c"breaks_dirty", &c.breaks_dirty),
        (c"breaks_split", &c.breaks_split),
        (c"split_pages_faulted", &c.split_pages_faulted),
        (c"split_pages_truncated", &c.split_pages_truncated),
        (c"snapshot_bytes", &c.snapshot_bytes),
        (c"breaks_evicted", &c.breaks_evicted),
        (c"breaks_retried", &c.breaks_retried),
        (c"break_failures", &c.break_failures),
        (c"holds_evicted", &c.holds_evicted),
        (c"writer_lookups", &c.writer_lookups),
        (c"max_writer_wait_ns", &c.max_writer_wait_ns),
        (c"calls_in_flight", &c.calls_in_flight),
        (c"mode_processes", &c.mode_processes),
        (c"mode_splices", &c.mode_splices),
        (c"mode_fork_failures", &c.mode_fork_failures),
        (c"writer_redirects_by_callback", &c.writer_redirects_by_callback),
        (c"splice_redirects_by_callback", &c.splice_redirects_by_callback),
        (c"splice_entries_idle", &c.splice_entries_idle),
        (c"splice_entries_rearmed", &c.splice_entries_rearmed),
    ]
}

/// `policy <cow|block>` and one `name value` line per counter.
pub(crate) fn write_all(out: &mut impl fmt::Write) -> fmt::Result {
    if let Ok(policy) = crate::policy::Policy::from_param() {
        writeln!(out, "policy {:?}", policy)?;
    }
    for (name, counter) in all() {
        writeln!(out, "{} {}", name.to_str().map_err(|_| fmt::Error)?, counter.get())?;
    }
    Ok(())
}

/// What a debugfs file shows: the current value of a static counter.
struct View(&'static Counter);

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.get())
    }
}

/// The debugfs file `reap`: any write ends the holds nobody reads any
/// more at once (see [`crate::hold::reap_now`]).
struct Reap;

impl Reader for Reap {
    fn read_from_slice(&self, _reader: &mut UserSliceReader) -> Result {
        crate::hold::reap_now();
        Ok(())
    }
}

/// The debugfs file `idle`: any write takes the redirects of `do_splice`
/// and `do_splice_read` out at once if no stable splice needs them (see
/// [`crate::entry_gate::idle`]), as they are after an idle spell.
struct Idle;

impl Reader for Idle {
    fn read_from_slice(&self, _reader: &mut UserSliceReader) -> Result {
        crate::entry_gate::idle(true);
        Ok(())
    }
}

/// The race windows that tests hold open, in the debugfs directory
/// (`split_window_before`, `split_window_after`, rust/race_window.c:
/// kernels with fault injection); removed when dropped.
struct RaceWindows;

impl RaceWindows {
    fn new(dir_name: &CStr) -> Self {
        // SAFETY: the directory is ours and exists; the files are removed
        // when `Self` drops, before it.
        unsafe { b::ss_race_windows_create(dir_name.as_char_ptr()) };
        Self
    }
}

impl Drop for RaceWindows {
    fn drop(&mut self) {
        // SAFETY: no preconditions (nothing to remove without fault injection).
        unsafe { b::ss_race_windows_remove() };
    }
}

/// The debugfs directory; removed when dropped.
pub(crate) struct DebugFs {
    _windows: RaceWindows,
    _files: KVec<Pin<KBox<File<View>>>>,
    _policy: Pin<KBox<File<crate::policy::Policy>>>,
    _reap: Pin<KBox<File<Reap>>>,
    _idle: Pin<KBox<File<Idle>>>,
    _holds: Pin<KBox<File<crate::hold::HoldsReport>>>,
    _dir: Dir,
}

impl DebugFs {
    pub(crate) fn new(policy: crate::policy::Policy) -> Result<Self> {
        const NAME: &CStr = c"stable_splice";
        let dir = Dir::new(NAME);
        let mut files = KVec::with_capacity(COUNT, GFP_KERNEL)?;
        for (name, counter) in all() {
            files.push(
                KBox::pin_init(dir.read_only_file(name, View(counter)), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        let policy = KBox::pin_init(dir.read_only_file(c"policy", policy), GFP_KERNEL)?;
        let reap = KBox::pin_init(dir.write_only_file(c"reap", Reap), GFP_KERNEL)?;
        let idle = KBox::pin_init(dir.write_only_file(c"idle", Idle), GFP_KERNEL)?;
        let holds = KBox::pin_init(dir.read_only_file(c"holds", crate::hold::HoldsReport), GFP_KERNEL)?;
        let windows = RaceWindows::new(NAME);
        Ok(Self { _windows: windows, _files: files, _policy: policy, _reap: reap, _idle: idle, _holds: holds, _dir: dir })
    }
}
