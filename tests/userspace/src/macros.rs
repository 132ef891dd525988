//! Assertion helpers for test cases: they return `TestErr` instead of
//! panicking so that the message ends up on the `not ok` line.

/// Fail the current case with a formatted reason.
macro_rules! fail {
    ($($t:tt)*) => {
        return Err($crate::util::TestErr::Fail(format!($($t)*)))
    };
}

/// Skip the current case (genuine environment limitation only).
macro_rules! skip {
    ($($t:tt)*) => {
        return Err($crate::util::TestErr::Skip(format!($($t)*)))
    };
}

/// Fail the current case unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            fail!($($t)*);
        }
    };
}
