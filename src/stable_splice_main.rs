// SPDX-License-Identifier: GPL-2.0

//! stable_splice: `SPLICE_F_STABLE` for `splice(2)`.
//!
//! With the flag, data spliced from a file into a pipe is a snapshot taken
//! when `splice()` returns: later writes to the file never show through to
//! whoever drains the pipe. See `Documentation/stable-splice.rst`.

use kernel::prelude::*;

mod bindings;
mod calls;
mod counters;
mod ftrace;
mod layout;
mod splice;
mod stable_buf;
mod uring;

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
/// go first, the `splice_read`s that honour it last (the reverse of
/// [`Redirects::register`]).
#[pin_data]
struct Redirects {
    #[pin]
    sys_splice: ftrace::Redirect,
    #[pin]
    io_splice_prep: ftrace::Redirect,
    #[pin]
    io_splice: ftrace::Redirect,
    #[pin]
    shmem_splice_read: ftrace::Redirect,
    #[pin]
    filemap_splice_read: ftrace::Redirect,
}

impl Redirects {
    fn new() -> impl PinInit<Self> {
        pin_init!(Self {
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

    /// Read side first, then io_uring's issue before its prep: once an
    /// entry point accepts the flag, everything behind it must honour it.
    fn register(self: Pin<&Self>) -> Result {
        for (redirect, name) in self.in_order() {
            redirect.register(name)?;
        }
        Ok(())
    }

    fn in_order(self: Pin<&Self>) -> [(Pin<&ftrace::Redirect>, &'static CStr); 5] {
        let this = self.get_ref();
        // SAFETY: projections of pinned fields, which never move.
        unsafe {
            [
                (Pin::new_unchecked(&this.filemap_splice_read), c"filemap_splice_read"),
                (Pin::new_unchecked(&this.shmem_splice_read), c"shmem_file_splice_read"),
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
    redirects: Option<Pin<KBox<Redirects>>>,
    _calls: Pin<KBox<calls::Calls>>,
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
        let debugfs = counters::DebugFs::new()?;
        let calls = KBox::pin_init(calls::Calls::new(), GFP_KERNEL)?;
        // SAFETY: `calls` outlives the redirects: `drop` unregisters them and
        // waits for every replacement before `calls` goes.
        unsafe { splice::publish(&*calls) };
        let redirects = KBox::pin_init(Redirects::new(), GFP_KERNEL)
            .and_then(|r| r.as_ref().register().map(|()| r))
            .inspect_err(|_| teardown())?;
        LOADED.store(redirects.as_ref().all_registered(), kernel::sync::atomic::Relaxed);
        pr_info!(
            "stable_splice: SPLICE_F_STABLE ({:#x}) enabled\n",
            splice::SPLICE_F_STABLE
        );
        Ok(Self {
            redirects: Some(redirects),
            _calls: calls,
            _debugfs: debugfs,
        })
    }
}

/// After the redirects are gone: no replacement starts any more, and the
/// ones that ran have left module text.
fn teardown() {
    splice::unpublish();
    // SAFETY: no preconditions.
    unsafe { bindings::ss_wait_for_module_code() };
}

impl Drop for StableSplice {
    fn drop(&mut self) {
        LOADED.store(false, kernel::sync::atomic::Relaxed);
        drop(self.redirects.take());
        teardown();
        pr_info!("stable_splice: unloaded\n");
    }
}
