// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note
//! `include/uapi/linux/stable_splice.h` for Rust user space: the flag, the
//! device and its ioctls, the module's counters; and the part of Linux's
//! io_uring ABI that the tests and the bench drive on raw syscalls. One
//! copy for the tool, the tests and the bench; `cargo test` here checks
//! the numbers against the C header.

#![no_std]

pub mod io_uring;

/// `SPLICE_F_STABLE`: the next free bit after `SPLICE_F_GIFT`.
pub const SPLICE_F_STABLE: u32 = 0x10;

/// The stable mode's device; reading it gives the policy and counters.
pub const DEVICE: &str = "/dev/stable_splice";

/// The module's counters in debugfs, a file each.
pub const COUNTER_DIR: &str = "/sys/kernel/debug/stable_splice";

/// `STABLE_SPLICE_IOC_MAGIC`.
pub const IOC_MAGIC: u64 = 0xB5;

/// `_IO(IOC_MAGIC, nr)`: no direction, no size.
const fn io(nr: u64) -> u64 {
    IOC_MAGIC << 8 | nr
}

/// `STABLE_SPLICE_SET_MODE`: argument 1 enters the stable mode, 0 leaves it.
pub const SET_MODE: u64 = io(1);
/// `STABLE_SPLICE_GET_MODE`: 1 if the caller is in the mode, else 0.
pub const GET_MODE: u64 = io(2);
/// `STABLE_SPLICE_FILE_INFO`: argument a descriptor; how a stable splice
/// from it gets its snapshot (one of the kinds below, or'ed with
/// [`LARGE_FOLIOS`]).
pub const FILE_INFO: u64 = io(3);

/// Zero copy: the pipe keeps the page-cache pages (ext4, xfs).
pub const HELD: i32 = 0;
/// Copied at splice time: ext4 journals the file's data.
pub const COPY_JOURNALLED: i32 = 1;
/// Copied at splice time: a file system the module does not intercept.
pub const COPY_FS: i32 = 2;
/// Copied at splice time: DAX.
pub const COPY_DAX: i32 = 3;
/// The file's page cache may hold large folios (held like small ones).
pub const LARGE_FOLIOS: i32 = 0x100;

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    /// The value of `#define NAME ...` in the C header, as written.
    fn define(header: &str, name: &str) -> String {
        header
            .lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with([' ', '\t'])))
            .unwrap_or_else(|| panic!("{name} not in the header"))
            .trim()
            .into()
    }

    fn number(v: &str) -> u64 {
        let v = v.trim_matches(|c| c == '(' || c == ')');
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => v.parse().unwrap(),
        }
    }

    #[test]
    fn matches_the_c_header() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/uapi/linux/stable_splice.h");
        let h = std::fs::read_to_string(path).unwrap();
        assert_eq!(number(&define(&h, "SPLICE_F_STABLE")), super::SPLICE_F_STABLE as u64);
        assert_eq!(number(&define(&h, "STABLE_SPLICE_IOC_MAGIC")), super::IOC_MAGIC);
        for (name, nr, ours) in
            [("STABLE_SPLICE_SET_MODE", 1, super::SET_MODE), ("STABLE_SPLICE_GET_MODE", 2, super::GET_MODE), ("STABLE_SPLICE_FILE_INFO", 3, super::FILE_INFO)]
        {
            assert_eq!(define(&h, name), std::format!("_IO(STABLE_SPLICE_IOC_MAGIC, {nr})"), "{name}");
            assert_eq!(ours, super::IOC_MAGIC << 8 | nr, "{name}");
        }
        for (name, ours) in [
            ("STABLE_SPLICE_HELD", super::HELD),
            ("STABLE_SPLICE_COPY_JOURNALLED", super::COPY_JOURNALLED),
            ("STABLE_SPLICE_COPY_FS", super::COPY_FS),
            ("STABLE_SPLICE_COPY_DAX", super::COPY_DAX),
            ("STABLE_SPLICE_LARGE_FOLIOS", super::LARGE_FOLIOS),
        ] {
            assert_eq!(number(&define(&h, name)), ours as u64, "{name}");
        }
    }
}
