//! [`Chain`]: an error with every cause behind it, for logs.
//!
//! `tracing`'s `error = %e` prints only the outermost message, and Weir's errors put their
//! context there ("partition orders-0") and the cause in `source()` ("CRC mismatch", "No space
//! left on device", "Too many open files"). Logging `error = %Chain(&e)` prints them all.

use std::fmt;

/// Displays an error and its sources, outermost first, joined by `": "`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        // Bounded: a cyclic source chain (a bug elsewhere) must not hang a log line.
        let mut depth = 0;
        while let Some(s) = source {
            depth += 1;
            if depth > 32 {
                return write!(f, ": ...");
            }
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("partition c-0")]
    struct Outer(#[source] std::io::Error);

    /// Proves: the cause that `%e` drops (here ENOSPC's message) is in the line.
    #[test]
    fn every_cause_is_printed() {
        let e = Outer(std::io::Error::other("No space left on device"));
        assert_eq!(e.to_string(), "partition c-0");
        assert_eq!(
            Chain(&e).to_string(),
            "partition c-0: No space left on device"
        );
    }
}
