//! The methods compared and the sinks they write to.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Method {
    Plain,
    Stable,
    ReadWrite,
    KernelCopy,
}

pub(crate) const METHODS: [Method; 4] = [Method::Plain, Method::Stable, Method::ReadWrite, Method::KernelCopy];

impl Method {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Method::Plain => "plain_splice",
            Method::Stable => "stable_splice",
            Method::ReadWrite => "read_write",
            Method::KernelCopy => "kernel_copy_odirect_splice",
        }
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            Method::Plain => "plain splice",
            Method::Stable => "stable splice",
            Method::ReadWrite => "read()+write()",
            Method::KernelCopy => "kernel copy (O_DIRECT splice)",
        }
    }
    pub(crate) fn short(self) -> &'static str {
        match self {
            Method::Plain => "plain splice",
            Method::Stable => "stable splice",
            Method::ReadWrite => "read+write",
            Method::KernelCopy => "kcopy O_DIRECT",
        }
    }
    pub(crate) fn color(self) -> &'static str {
        match self {
            Method::Plain => "#1f77b4",
            Method::Stable => "#d62728",
            Method::ReadWrite => "#2ca02c",
            Method::KernelCopy => "#ff7f0e",
        }
    }
    pub(crate) fn idx(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    DevNull,
    Tcp,
}

pub(crate) const SINKS: [Sink; 2] = [Sink::DevNull, Sink::Tcp];

impl Sink {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Sink::DevNull => "devnull",
            Sink::Tcp => "tcp",
        }
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            Sink::DevNull => "/dev/null",
            Sink::Tcp => "loopback TCP",
        }
    }
}
