// SPDX-License-Identifier: GPL-2.0

//! stable_splice: `SPLICE_F_STABLE` for `splice(2)`.
//!
//! With the flag, data spliced from a file into a pipe is a snapshot taken
//! when `splice()` returns: later writes to the file never show through to
//! whoever drains the pipe. See `Documentation/stable-splice.rst`.

use kernel::prelude::*;

mod bindings;
mod calls;
mod control;
mod counters;
mod entry_gate;
mod folio;
mod ftrace;
mod hold;
mod hold_index;
mod layout;
mod mode;
mod policy;
mod registry;
mod splice;
mod stable_buf;
mod uring;
mod writers;

#[cfg(stable_splice_kunit)]
#[path = "../tests/kunit/mod.rs"]
mod kunit;

module! {
    type: StableSplice,
    name: "stable_splice",
    authors: ["stable-splice developers"],
    description: "SPLICE_F_STABLE: splice() from a file as a snapshot",
    license: "GPL",
}

/// How many kernel functions this module takes over.
const REDIRECTS: usize = 12;

/// The kernel functions this module takes over while loaded and where each
/// goes, in the order they are registered: writer choke points first (no
/// hold may exist without them), then the read side, then io_uring's issue
/// before its prep: once an entry point accepts the flag, everything behind
/// it must honour it.
fn redirect_table() -> [(&'static CStr, ftrace::Target); REDIRECTS] {
    use ftrace::Target::{Entry, Replacement, Trampoline};
    let f = |f: *const ()| f as usize;
    [
        (
            c"__filemap_get_folio_mpol",
            Trampoline(f(bindings::ss_direct_get_folio as *const ()), bindings::ss_callback_get_folio),
        ),
        (
            c"do_page_mkwrite",
            Trampoline(f(bindings::ss_direct_page_mkwrite as *const ()), bindings::ss_callback_page_mkwrite),
        ),
        (
            c"notify_change",
            Replacement(f(writers::notify_change as *const ()), &writers::NOTIFY_CHANGE, Some(writers::notify_change_wants)),
        ),
        (
            c"vfs_fallocate",
            Replacement(f(writers::fallocate as *const ()), &writers::FALLOCATE, Some(writers::fallocate_wants)),
        ),
        (
            c"truncate_inode_pages_range",
            Replacement(
                f(writers::truncate_inode_pages_range as *const ()),
                &writers::TRUNCATE_RANGE,
                Some(writers::truncate_range_wants),
            ),
        ),
        (
            c"truncate_inode_pages_final",
            Replacement(
                f(writers::truncate_inode_pages_final as *const ()),
                &writers::TRUNCATE_FINAL,
                Some(writers::truncate_final_wants),
            ),
        ),
        (
            c"do_splice_read",
            Entry(
                f(bindings::ss_direct_do_splice_read as *const ()),
                f(splice::do_splice_read as *const ()),
                &splice::DO_SPLICE_READ,
                splice::do_splice_read_wants,
            ),
        ),
        (
            c"do_splice",
            Entry(
                f(bindings::ss_direct_do_splice as *const ()),
                f(splice::do_splice as *const ()),
                &splice::DO_SPLICE,
                splice::do_splice_wants,
            ),
        ),
        (
            c"io_splice_cleanup",
            Replacement(f(uring::io_splice_cleanup as *const ()), &uring::IO_SPLICE_CLEANUP, Some(uring::io_splice_wants)),
        ),
        (c"io_splice", Replacement(f(uring::io_splice as *const ()), &uring::IO_SPLICE, Some(uring::io_splice_wants))),
        (
            c"io_splice_prep",
            Replacement(f(uring::io_splice_prep as *const ()), &uring::IO_SPLICE_PREP, Some(uring::io_splice_prep_wants)),
        ),
        (
            c"__x64_sys_splice",
            Entry(
                f(bindings::ss_direct_sys_splice as *const ()),
                f(splice::sys_splice as *const ()),
                &splice::SYS_SPLICE,
                splice::sys_splice_wants,
            ),
        ),
    ]
}

/// The redirects of [`redirect_table`], pinned, held in the reverse order
/// of the table: an array drops from its first element on, so the entry
/// points go first and the writer choke points that protect holds last.
#[pin_data]
struct Redirects {
    #[pin]
    reversed: [ftrace::Redirect; REDIRECTS],
}

impl Redirects {
    fn new() -> impl PinInit<Self> {
        let table = redirect_table();
        pin_init!(Self {
            reversed <- pin_init::pin_init_array_from_fn(|i| ftrace::Redirect::new(table[REDIRECTS - 1 - i].1)),
        })
    }

    /// Registers them in the table's order, once page-cache buffers can
    /// be told apart: the functions are looked up in one batch, the
    /// redirected ones and [`stable_buf::PAGE_CACHE_CONFIRM`] last.
    fn register(self: Pin<&Self>) -> Result {
        let mut names = [stable_buf::PAGE_CACHE_CONFIRM; REDIRECTS + 1];
        for (name, (redirected, _)) in names.iter_mut().zip(redirect_table()) {
            *name = redirected;
        }
        let addrs = ftrace::lookup(&names)?;
        stable_buf::learn_page_cache_bufs(addrs[REDIRECTS]);
        // Optional: a kernel without transparent hugepages has no splitter
        // (and no large page-cache folios to split).
        // SAFETY: no preconditions; before any redirect can break a hold.
        unsafe { bindings::ss_folio_learn_split() };
        for ((redirect, name), addr) in self.in_order().zip(names).zip(addrs) {
            redirect.register(name, addr)?;
        }
        Ok(())
    }

    /// The redirects in the table's order.
    fn in_order(self: Pin<&Self>) -> impl Iterator<Item = Pin<&ftrace::Redirect>> {
        // SAFETY: projections of a pinned field's elements, which never move.
        self.get_ref().reversed.iter().rev().map(|r| unsafe { Pin::new_unchecked(r) })
    }

    pub(crate) fn all_registered(self: Pin<&Self>) -> bool {
        self.in_order().all(|r| r.is_registered())
    }

    /// The redirects of `do_splice` and `do_splice_read`, which only
    /// stable splices need ([`entry_gate`]).
    fn gated(self: Pin<&Self>) -> [Option<Pin<&ftrace::Redirect>>; entry_gate::GATED] {
        [c"do_splice", c"do_splice_read"]
            .map(|gated| self.in_order().zip(redirect_table()).find(|(_, (name, _))| *name == gated).map(|(r, _)| r))
    }

    /// Of the redirects of `kind`, which would be direct calls, how many
    /// are callbacks.
    fn by_callback(self: Pin<&Self>, kind: ftrace::DirectCapable) -> usize {
        self.in_order().filter(|r| r.direct_capable() == Some(kind) && r.via() == Some(ftrace::Via::Callback)).count()
    }
}

/// The loaded module. Fields drop in declaration order: the debugfs files
/// go (their removal waits for reads and writes in progress, such as a
/// `reap` walking the holds), nobody can enter the mode, then no redirect
/// sends calls to us any more, then the probes go, then the replacements
/// still running are waited for, and only then the state they use.
struct StableSplice {
    _debugfs: counters::DebugFs,
    _control: Pin<KBox<control::ControlDevice>>,
    _gate: Pin<KBox<entry_gate::EntryGate>>,
    _redirects: Pin<KBox<Redirects>>,
    _tracking: mode::Tracking,
    _published: Published,
    _modes: Pin<KBox<mode::Modes>>,
    _calls: Pin<KBox<calls::Calls>>,
    _holds: KBox<hold::Holds>,
    _zero_copy_decisions: stable_buf::ZeroCopyDecisions,
}

/// Set while the redirects are in place (for the KUnit suite).
static LOADED: kernel::sync::atomic::Atomic<bool> = kernel::sync::atomic::Atomic::new(false);

#[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
pub(crate) fn hooks_installed() -> bool {
    LOADED.load(kernel::sync::atomic::Relaxed)
}

/// The holds and calls the replacements see, and the count of direct
/// calls in flight. Dropped after the redirects are gone (also when init
/// fails half way): the direct calls still running are waited for, the
/// state is unpublished, and the replacements that ran have left module
/// text.
struct Published {
    _direct_calls: ftrace::DirectCalls,
    _unpublish: Unpublish,
}

struct Unpublish;

impl Published {
    /// # Safety
    ///
    /// `holds` and `calls` outlive the returned value.
    unsafe fn new(direct_calls: ftrace::DirectCalls, holds: &hold::Holds, calls: &calls::Calls) -> Self {
        // SAFETY: per the caller; dropping `Unpublish` ends it, after the
        // direct calls drained.
        unsafe {
            hold::publish(holds);
            splice::CALLS.publish(calls);
        }
        Self { _direct_calls: direct_calls, _unpublish: Unpublish }
    }
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        splice::CALLS.unpublish();
        hold::unpublish();
        // SAFETY: no preconditions.
        unsafe { bindings::ss_wait_for_module_code() };
    }
}

impl kernel::Module for StableSplice {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        layout::check()?;
        let policy = policy::Policy::from_param()?;
        let zero_copy_decisions = stable_buf::ZeroCopyDecisions::new()?;
        let direct_calls = ftrace::DirectCalls::new()?;
        let holds = KBox::new(hold::Holds::new(policy)?, GFP_KERNEL)?;
        let calls = KBox::pin_init(calls::Calls::new(), GFP_KERNEL)?;
        let modes = KBox::pin_init(mode::Modes::new(), GFP_KERNEL)?;
        // SAFETY: `modes` outlives `tracking` (declared later here and
        // earlier in `StableSplice`: dropped first either way).
        let tracking = unsafe { mode::Tracking::start(&modes)? };
        // SAFETY: `holds` and `calls` outlive `published`, as `modes`
        // outlives `tracking`.
        let published = unsafe { Published::new(direct_calls, &holds, &calls) };
        let redirects = KBox::pin_init(Redirects::new(), GFP_KERNEL)?;
        redirects.as_ref().register()?;
        let by_callback = redirects.as_ref().by_callback(ftrace::DirectCapable::Writer);
        counters::COUNTERS.writer_redirects_by_callback.add(by_callback as i64);
        let entries_by_callback = redirects.as_ref().by_callback(ftrace::DirectCapable::SpliceEntry);
        counters::COUNTERS.splice_redirects_by_callback.add(entries_by_callback as i64);
        // SAFETY: the redirects are registered and pinned, and outlive the
        // gate (declared before them in `StableSplice`, and dropped first
        // here if init fails below).
        let gate = unsafe { entry_gate::EntryGate::start(redirects.as_ref().gated())? };
        // Last: once a process can enter the mode, everything honours it.
        let control = KBox::pin_init(control::ControlDevice::register(), GFP_KERNEL)
            .inspect_err(|_| pr_err!("stable_splice: cannot register /dev/stable_splice\n"))?;
        // After the state its files read and walk, so that it goes first.
        let debugfs = counters::DebugFs::new(policy)?;
        LOADED.store(redirects.as_ref().all_registered(), kernel::sync::atomic::Relaxed);
        pr_info!(
            "stable_splice: SPLICE_F_STABLE ({:#x}) enabled, policy {:?}, writer redirects: {} of 2 through ftrace callbacks, splice entry points: {} of 3\n",
            splice::SPLICE_F_STABLE,
            policy,
            by_callback,
            entries_by_callback
        );
        Ok(Self {
            _debugfs: debugfs,
            _control: control,
            _gate: gate,
            _redirects: redirects,
            _tracking: tracking,
            _published: published,
            _modes: modes,
            _calls: calls,
            _holds: holds,
            _zero_copy_decisions: zero_copy_decisions,
        })
    }
}

impl Drop for StableSplice {
    fn drop(&mut self) {
        LOADED.store(false, kernel::sync::atomic::Relaxed);
        pr_info!("stable_splice: unloading\n");
    }
}
