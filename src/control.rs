// SPDX-License-Identifier: GPL-2.0

//! `/dev/stable_splice`: how a process enters the stable mode (ioctls, see
//! `include/uapi/linux/stable_splice.h`), how it learns what a stable splice
//! of a file gets (zero copy or a copy, and why), and where anybody reads
//! the module's policy and counters.
//!
//! The node is world-usable (0666): the ioctls act only on the calling
//! process, so the device gives nobody a way to reach another process, and
//! the counters hold no secrets (debugfs has the same numbers for root).

use crate::{bindings as ss, counters, mode::modes};
use core::fmt::Write;
use kernel::{
    bindings,
    error::to_result,
    fs::{File, Kiocb, LocalFile},
    iov::IovIterDest,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    types::Opaque,
};

/// The registered device; deregistered when dropped.
#[pin_data(PinnedDrop)]
pub(crate) struct ControlDevice {
    #[pin]
    inner: Opaque<bindings::miscdevice>,
}

// SAFETY: `misc_deregister` may run on any thread; nothing else touches
// `inner` after registration.
unsafe impl Send for ControlDevice {}
// SAFETY: as above.
unsafe impl Sync for ControlDevice {}

impl ControlDevice {
    /// Registers `/dev/stable_splice`. This is `MiscDeviceRegistration::
    /// register` with a mode: the abstraction leaves the node root-only,
    /// and a service that runs as its own user must be able to enter the
    /// mode itself.
    pub(crate) fn register() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inner <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut raw = MiscDeviceOptions { name: c"stable_splice" }.into_raw::<Control>();
                raw.mode = 0o666;
                // SAFETY: `slot` is ours to initialise and pinned; it is
                // deregistered in `drop` before the memory goes. The
                // Rust file operations cast the miscdevice pointer to a
                // `MiscDeviceRegistration<Control>`, which is
                // `repr(transparent)` over the same `Opaque<miscdevice>`.
                unsafe {
                    slot.write(raw);
                    to_result(bindings::misc_register(slot))
                }
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for ControlDevice {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered in `register` (a failed init never drops).
        unsafe { bindings::misc_deregister(self.inner.get()) };
    }
}

/// An open `/dev/stable_splice`; no state of its own.
pub(crate) struct Control;

#[vtable]
impl MiscDevice for Control {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(Control, GFP_KERNEL)?)
    }

    fn ioctl(_me: &Control, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let modes = modes().ok_or(ENODEV)?;
        match cmd {
            ss::SS_SET_MODE => match arg {
                0 | 1 => modes.set_current(arg == 1).map(|()| 0),
                _ => Err(EINVAL),
            },
            ss::SS_GET_MODE => Ok(isize::from(modes.current())),
            ss::SS_FILE_INFO => {
                let fd = u32::try_from(arg).map_err(|_| EBADF)?;
                let file = LocalFile::fget(fd).map_err(|_| EBADF)?;
                // SAFETY: the reference from `fget` keeps the file alive.
                let kind = unsafe { ss::ss_file_stable_kind(file.as_ptr().cast()) };
                to_result(kind).map(|()| kind as isize)
            }
            _ => Err(ENOTTY),
        }
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let mut text = Text(KVec::new());
        counters::write_all(&mut text).map_err(|_| ENOMEM)?;
        iov.simple_read_from_buffer(kiocb.ki_pos_mut(), &text.0)
    }
}

/// A growing text buffer for `core::fmt`.
struct Text(KVec<u8>);

impl Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}
