// SPDX-License-Identifier: GPL-2.0

//! The writer policy on contention (`policy` module parameter).

use crate::bindings as b;
use kernel::prelude::*;

/// Writer policy on contention, from the `policy` module parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Writers put a copy in the page cache and go on (the default).
    Cow,
    /// Writers wait until the hold ends, for splicers that could write the
    /// file themselves; everybody else still gets `Cow`.
    Block,
}

impl core::fmt::Debug for Policy {
    /// As the parameter spells it (also the debugfs file `policy`).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Cow => "cow",
            Self::Block => "block",
        })
    }
}

impl Policy {
    /// The policy the module was loaded with.
    pub(crate) fn from_param() -> Result<Self> {
        // SAFETY: no preconditions.
        match unsafe { b::ss_policy() } {
            0 => Ok(Self::Cow),
            1 => Ok(Self::Block),
            _ => {
                pr_err!("stable_splice: policy must be \"cow\" or \"block\"\n");
                Err(EINVAL)
            }
        }
    }
}
