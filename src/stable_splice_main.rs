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
mod folio;
mod ftrace;
mod hold;
mod hold_index;
mod layout;
mod mode;
mod policy;
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

/// The functions this module takes over while loaded.
///
/// Fields drop in declaration order: the entry points that accept the flag
/// go first, then the `splice_read`s that honour it, and the writer choke
/// points that protect holds last (the reverse of [`Redirects::register`]).
#[pin_data]
struct Redirects {
    #[pin]
    sys_splice: ftrace::Redirect,
    #[pin]
    io_splice_prep: ftrace::Redirect,
    #[pin]
    io_splice: ftrace::Redirect,
    #[pin]
    io_splice_cleanup: ftrace::Redirect,
    #[pin]
    do_splice: ftrace::Redirect,
    #[pin]
    shmem_splice_read: ftrace::Redirect,
    #[pin]
    filemap_splice_read: ftrace::Redirect,
    #[pin]
    truncate_range: ftrace::Redirect,
    #[pin]
    fallocate: ftrace::Redirect,
    #[pin]
    notify_change: ftrace::Redirect,
    #[pin]
    page_mkwrite: ftrace::Redirect,
    #[pin]
    get_folio: ftrace::Redirect,
}

impl Redirects {
    fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            get_folio <- ftrace::Redirect::direct(bindings::ss_direct_get_folio as *const () as usize),
            page_mkwrite <- ftrace::Redirect::direct(bindings::ss_direct_page_mkwrite as *const () as usize),
            notify_change <- ftrace::Redirect::new(
                writers::notify_change as *const () as usize,
                &writers::NOTIFY_CHANGE,
            ),
            truncate_range <- ftrace::Redirect::new(
                writers::truncate_inode_pages_range as *const () as usize,
                &writers::TRUNCATE_RANGE,
            ),
            fallocate <- ftrace::Redirect::new(
                writers::fallocate as *const () as usize,
                &writers::FALLOCATE,
            ),
            do_splice <- ftrace::Redirect::new(
                splice::do_splice as *const () as usize,
                &splice::DO_SPLICE,
            ),
            io_splice_cleanup <- ftrace::Redirect::new(
                uring::io_splice_cleanup as *const () as usize,
                &uring::IO_SPLICE_CLEANUP,
            ),
            filemap_splice_read <- ftrace::Redirect::new(
                splice::filemap_splice_read as *const () as usize,
                &splice::FILEMAP_SPLICE_READ,
            ),
            shmem_splice_read <- ftrace::Redirect::new(
                splice::shmem_splice_read as *const () as usize,
                &splice::SHMEM_SPLICE_READ,
            ),
            io_splice <- ftrace::Redirect::new(
                uring::io_splice as *const () as usize,
                &uring::IO_SPLICE,
            ),
            io_splice_prep <- ftrace::Redirect::new(
                uring::io_splice_prep as *const () as usize,
                &uring::IO_SPLICE_PREP,
            ),
            sys_splice <- ftrace::Redirect::new(
                splice::sys_splice as *const () as usize,
                &splice::SYS_SPLICE,
            ),
        })
    }

    /// Writer choke points first (no hold may exist without them), then the
    /// read side, then io_uring's issue before its prep: once an entry
    /// point accepts the flag, everything behind it must honour it.
    fn register(self: Pin<&Self>) -> Result {
        let order = self.in_order();
        let addrs = ftrace::lookup(&order.map(|(_, name)| name))?;
        for ((redirect, name), addr) in order.into_iter().zip(addrs) {
            redirect.register(name, addr)?;
        }
        Ok(())
    }

    fn in_order(self: Pin<&Self>) -> [(Pin<&ftrace::Redirect>, &'static CStr); 12] {
        let this = self.get_ref();
        // SAFETY: projections of pinned fields, which never move.
        unsafe {
            [
                (Pin::new_unchecked(&this.get_folio), c"__filemap_get_folio_mpol"),
                (Pin::new_unchecked(&this.page_mkwrite), c"do_page_mkwrite"),
                (Pin::new_unchecked(&this.notify_change), c"notify_change"),
                (Pin::new_unchecked(&this.fallocate), c"vfs_fallocate"),
                (Pin::new_unchecked(&this.truncate_range), c"truncate_inode_pages_range"),
                (Pin::new_unchecked(&this.filemap_splice_read), c"filemap_splice_read"),
                (Pin::new_unchecked(&this.shmem_splice_read), c"shmem_file_splice_read"),
                (Pin::new_unchecked(&this.do_splice), c"do_splice"),
                (Pin::new_unchecked(&this.io_splice_cleanup), c"io_splice_cleanup"),
                (Pin::new_unchecked(&this.io_splice), c"io_splice"),
                (Pin::new_unchecked(&this.io_splice_prep), c"io_splice_prep"),
                (Pin::new_unchecked(&this.sys_splice), c"__x64_sys_splice"),
            ]
        }
    }

    pub(crate) fn all_registered(self: Pin<&Self>) -> bool {
        self.in_order().iter().all(|(r, _)| r.is_registered())
    }
}

struct StableSplice {
    control: Option<Pin<KBox<control::ControlDevice>>>,
    redirects: Option<Pin<KBox<Redirects>>>,
    direct_calls: Option<ftrace::DirectCalls>,
    tracking: Option<mode::Tracking>,
    _modes: Pin<KBox<mode::Modes>>,
    _calls: Pin<KBox<calls::Calls>>,
    _holds: KBox<hold::Holds>,
    _zero_copy_decisions: stable_buf::ZeroCopyDecisions,
    _debugfs: counters::DebugFs,
}

/// Set while the redirects are in place (for the KUnit suite).
static LOADED: kernel::sync::atomic::Atomic<bool> = kernel::sync::atomic::Atomic::new(false);

#[cfg_attr(not(stable_splice_kunit), allow(dead_code))]
pub(crate) fn hooks_installed() -> bool {
    LOADED.load(kernel::sync::atomic::Relaxed)
}

impl kernel::Module for StableSplice {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        layout::check()?;
        let policy = policy::Policy::from_param()?;
        let debugfs = counters::DebugFs::new(policy)?;
        let zero_copy_decisions = stable_buf::ZeroCopyDecisions::new()?;
        let direct_calls = ftrace::DirectCalls::new()?;
        let holds = KBox::new(hold::Holds::new(policy)?, GFP_KERNEL)?;
        let calls = KBox::pin_init(calls::Calls::new(), GFP_KERNEL)?;
        let modes = KBox::pin_init(mode::Modes::new(), GFP_KERNEL)?;
        // SAFETY: `modes` outlives `tracking` (dropped first in `drop`).
        let tracking = unsafe { mode::Tracking::start(&modes)? };
        // SAFETY: as for `calls` below.
        unsafe { hold::publish(&*holds) };
        // SAFETY: `calls` outlives the redirects: `drop` unregisters them and
        // waits for every replacement before `calls` goes.
        unsafe { splice::publish(&*calls) };
        let redirects = match KBox::pin_init(Redirects::new(), GFP_KERNEL)
            .and_then(|r| r.as_ref().register().map(|()| r))
        {
            Ok(r) => r,
            Err(e) => {
                teardown(direct_calls);
                return Err(e);
            }
        };
        // Last: once a process can enter the mode, everything honours it.
        let control = match KBox::pin_init(control::ControlDevice::register(), GFP_KERNEL) {
            Ok(c) => c,
            Err(e) => {
                pr_err!("stable_splice: cannot register /dev/stable_splice\n");
                drop(redirects);
                teardown(direct_calls);
                return Err(e);
            }
        };
        LOADED.store(redirects.as_ref().all_registered(), kernel::sync::atomic::Relaxed);
        pr_info!(
            "stable_splice: SPLICE_F_STABLE ({:#x}) enabled, policy {:?}\n",
            splice::SPLICE_F_STABLE,
            policy
        );
        Ok(Self {
            control: Some(control),
            redirects: Some(redirects),
            direct_calls: Some(direct_calls),
            tracking: Some(tracking),
            _modes: modes,
            _calls: calls,
            _holds: holds,
            _zero_copy_decisions: zero_copy_decisions,
            _debugfs: debugfs,
        })
    }
}

/// After the redirects are gone: no replacement starts any more, the direct
/// ones still running are waited for, and the ones that ran have left
/// module text.
fn teardown(direct_calls: ftrace::DirectCalls) {
    drop(direct_calls);
    splice::unpublish();
    hold::unpublish();
    // SAFETY: no preconditions.
    unsafe { bindings::ss_wait_for_module_code() };
}

impl Drop for StableSplice {
    fn drop(&mut self) {
        LOADED.store(false, kernel::sync::atomic::Relaxed);
        drop(self.control.take());
        drop(self.redirects.take());
        drop(self.tracking.take());
        if let Some(direct_calls) = self.direct_calls.take() {
            teardown(direct_calls);
        }
        pr_info!("stable_splice: unloaded\n");
    }
}
