// SPDX-License-Identifier: GPL-2.0

//! What is held, for people: debugfs `holds`, one line per file with holds
//! and one per held folio, with the references that keep each hold.
//!
//! A hold ends when nothing but the page cache, its mappings, the folio's
//! private data and the hold reference its folio (`extra` 1). A hold that
//! outlives its readers shows here what still references its folio.

use super::{holds, now_ns, Holds};
use crate::{bindings as b, folio::Mapping};
use core::fmt;

/// Held folios listed per file; the rest of a file's holds are counted.
const FOLIOS_PER_FILE: usize = 64;

/// The debugfs file `holds`.
pub(crate) struct HoldsReport;

impl fmt::Debug for HoldsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match holds() {
            Some(holds) => holds.report(f),
            None => Ok(()),
        }
    }
}

impl Holds {
    /// One line per file, then per folio: `index nr_pages refs expected
    /// extra` and flags. Each bucket is reported under its lock, which
    /// keeps the entries and their folio references; the folio fields are
    /// read without the folio lock (see `ss_folio_report`).
    fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = now_ns();
        for bucket in self.buckets.iter() {
            let b = bucket.lock();
            for (&mapping, file) in b.files.iter() {
                writeln!(
                    f,
                    "file {mapping:#x} holds {} idle_ms {} block {}",
                    file.count,
                    now.saturating_sub(file.used) / 1_000_000,
                    file.block
                )?;
                let mut from = 0;
                let mut listed = 0;
                while let Some((index, folio)) = file.index.next(from, usize::MAX) {
                    if listed == FOLIOS_PER_FILE {
                        writeln!(f, "  ... {} more", file.count - listed)?;
                        break;
                    }
                    // SAFETY: all fields zero is a valid report.
                    let mut r: b::ss_folio_report = unsafe { core::mem::zeroed() };
                    // SAFETY: the entry's reference keeps the folio alive
                    // while the bucket lock keeps the entry.
                    unsafe { b::ss_folio_report(folio, mapping as *mut Mapping, &mut r) };
                    writeln!(
                        f,
                        "  {index} ino {} pages {} refs {} expected {} extra {}{}{}{}{}{}{}",
                        r.ino,
                        r.nr_pages,
                        r.refs,
                        r.expected,
                        r.refs - r.expected,
                        if r.in_mapping { "" } else { " gone" },
                        if r.locked { " locked" } else { "" },
                        if r.dirty { " dirty" } else { "" },
                        if r.writeback { " writeback" } else { "" },
                        if r.mapped { " mapped" } else { "" },
                        if r.lru { "" } else { " off-lru" },
                    )?;
                    listed += 1;
                    if index == usize::MAX {
                        break;
                    }
                    from = index + 1;
                }
            }
        }
        Ok(())
    }
}
