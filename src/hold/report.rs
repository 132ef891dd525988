// SPDX-License-Identifier: GPL-2.0

//! What is held, for people: debugfs `holds`, one line per file with holds
//! and one per held folio, with the references that keep each hold.
//!
//! A hold owns no reference; each entry's folio is looked up in the page
//! cache for the report, and that lookup's reference is counted in its
//! `extra`: 1 means nobody else (no reader left). An entry whose folio left
//! the page cache shows as `gone`.

use super::{holds, now_ns, Holds};
use crate::{
    bindings as b,
    folio::{FolioRef, Mapping},
};
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
    /// One line per file, then one per entry (`report_folio`, or `gone`).
    /// Each bucket is reported under its lock, which keeps the entries and
    /// the mappings.
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
                    // SAFETY: the registry's entry keeps the mapping (eviction
                    // takes it out first).
                    let cached = unsafe { FolioRef::lookup(mapping as *mut Mapping, index) };
                    match cached.filter(|c| c.as_ptr() == folio && c.index() == index) {
                        None => writeln!(f, "  {index} gone")?,
                        Some(cached) => report_folio(f, index, &cached, mapping)?,
                    }
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

/// One held folio's line: `index ino pages refs expected extra` and flags.
/// The fields are read without the folio lock (see `ss_folio_report`).
fn report_folio(f: &mut fmt::Formatter<'_>, index: usize, folio: &FolioRef, mapping: usize) -> fmt::Result {
    // SAFETY: all fields zero is a valid report.
    let mut r: b::ss_folio_report = unsafe { core::mem::zeroed() };
    // SAFETY: `folio` (a page-cache lookup's reference) keeps the folio alive.
    unsafe { b::ss_folio_report(folio.as_ptr(), mapping as *mut Mapping, &mut r) };
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
    )
}
