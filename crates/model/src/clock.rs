//! The clocks a shell reads, behind one trait so a test can hold time still or move it.
//!
//! Two kinds of time, never mixed: the wall clock ([`Clock::wall`]) for what is stored or sent
//! (record timestamps, retention, commit times), and a monotonic clock ([`Clock::mono_ms`]) for
//! durations the process measures itself (replica lag, ISR retries, group timers), which a
//! wall-clock step must not stretch or shrink. State machines take either as a value; the
//! shells that drive them read one [`Clock`], given to them when they are built.

use crate::Timestamp;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The wall clock now.
    fn wall(&self) -> Timestamp;
    /// Milliseconds since an arbitrary start, never going back.
    fn mono_ms(&self) -> u64;
}

/// The operating system's clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }

    fn mono_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told: both kinds of time advance together.
#[derive(Debug)]
pub struct ManualClock {
    wall_ms: AtomicI64,
    mono_ms: AtomicU64,
}

impl ManualClock {
    /// Starts at wall time `wall`, monotonic time 0.
    pub fn new(wall: Timestamp) -> ManualClock {
        ManualClock {
            wall_ms: AtomicI64::new(wall.get()),
            mono_ms: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, ms: u64) {
        self.mono_ms.fetch_add(ms, Ordering::SeqCst);
        self.wall_ms
            .fetch_add(i64::try_from(ms).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> Timestamp {
        Timestamp(self.wall_ms.load(Ordering::SeqCst))
    }

    fn mono_ms(&self) -> u64 {
        self.mono_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_both_kinds_of_time_only_when_told() {
        let c = ManualClock::new(Timestamp(1_000));
        assert_eq!((c.wall(), c.mono_ms()), (Timestamp(1_000), 0));
        c.advance(250);
        assert_eq!((c.wall(), c.mono_ms()), (Timestamp(1_250), 250));
    }

    #[test]
    fn the_system_clock_is_monotonic_and_near_the_wall() {
        let c = SystemClock::new();
        let a = c.mono_ms();
        assert!(c.mono_ms() >= a);
        assert!((c.wall().get() - Timestamp::now().get()).abs() < 60_000);
    }
}
