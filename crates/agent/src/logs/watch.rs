//! The `awslogs` follower's pure decisions: where shipping resumes ([`Cursor`], [`Dedupe`])
//! and when a follow stream has stalled ([`Watchdog`]).
//!
//! Contract:
//! * a [`Cursor`] says which lines are shipped: every line stamped before `ts_ns` and the
//!   first `at_ts` lines stamped `ts_ns` (the engine may stamp several lines with the same
//!   nanosecond). A follow re-opened at a cursor starts at `ts_ns` itself
//!   ([`Cursor::follow_from`]) and its [`Dedupe`] drops the lines already shipped, so
//!   re-opening loses nothing and repeats nothing. Its text form (stored by the server with
//!   the stream, opaque to it) is `TS_NS/AT_TS`; the older form `TS_NS` (every line at
//!   `TS_NS` shipped) is still read;
//! * a [`Watchdog`] notices a follow that stopped delivering while the container still
//!   writes (Docker 20.10's json-file follower sometimes does under a fast writer, the
//!   container running on): once nothing was heard for [`STALL_AFTER`] it asks for a probe
//!   (the engine's latest line, read without following); the follow has stalled if the
//!   engine holds a line newer than the last one the follow delivered ([`Watchdog::probed`]).
//!   A quiet container is probed at most once per [`STALL_AFTER`].

use std::time::Duration;

use tokio::time::Instant;

/// Nothing heard from a follow for this long: probe the engine.
pub const STALL_AFTER: Duration = Duration::from_secs(3);
/// How often the follower looks at its watchdog.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Which lines of a container's output are shipped (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub ts_ns: i64,
    pub at_ts: u32,
}

impl Cursor {
    /// Reads a stored cursor; anything unreadable (or none) is the start of the output.
    pub fn parse(text: Option<&str>) -> Self {
        let Some(text) = text else { return Self::default() };
        match text.split_once('/') {
            Some((ts, n)) => match (ts.parse(), n.parse()) {
                (Ok(ts_ns), Ok(at_ts)) => Self { ts_ns, at_ts },
                _ => Self::default(),
            },
            None => text.parse().map_or(Self::default(), |ts_ns| Self { ts_ns, at_ts: u32::MAX }),
        }
    }

    /// The text the server stores.
    pub fn text(&self) -> String {
        format!("{}/{}", self.ts_ns, self.at_ts)
    }

    /// The `since_ns` to follow from ([`berth_runtime::Runtime::follow_logs`] delivers lines
    /// after it): the lines stamped `ts_ns` come again.
    pub fn follow_from(&self) -> i64 {
        self.ts_ns.saturating_sub(1)
    }

    /// One more line, stamped `ts_ns`, is shipped (or about to be).
    pub fn advance(&mut self, ts_ns: i64) {
        if ts_ns == self.ts_ns {
            self.at_ts = self.at_ts.saturating_add(1);
        } else {
            *self = Self { ts_ns, at_ts: 1 };
        }
    }
}

/// Drops the lines of a follow opened at a [`Cursor`] that the cursor says are shipped.
#[derive(Debug, Clone)]
pub struct Dedupe {
    ts_ns: i64,
    skip: u32,
}

impl Dedupe {
    pub fn new(at: &Cursor) -> Self {
        Self { ts_ns: at.ts_ns, skip: at.at_ts }
    }

    /// Whether a delivered line stamped `ts_ns` is new.
    pub fn admit(&mut self, ts_ns: i64) -> bool {
        if ts_ns < self.ts_ns {
            return false;
        }
        if ts_ns == self.ts_ns && self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }
}

/// What the follower does at a watchdog check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing to do.
    Wait,
    /// Ask the engine for its latest line ([`berth_runtime::Runtime::last_log_timestamp`]).
    Probe,
}

/// Whether a follow stream still delivers (see the module header).
#[derive(Debug, Clone)]
pub struct Watchdog {
    quiet_since: Instant,
}

impl Watchdog {
    pub fn new(now: Instant) -> Self {
        Self { quiet_since: now }
    }

    /// A line arrived, or the follower was busy (a shipment) rather than waiting on the
    /// follow.
    pub fn heard(&mut self, now: Instant) {
        self.quiet_since = now;
    }

    /// At a periodic check.
    pub fn check(&self, now: Instant) -> Check {
        if now.saturating_duration_since(self.quiet_since) >= STALL_AFTER {
            Check::Probe
        } else {
            Check::Wait
        }
    }

    /// The probe's answer: the engine's latest line is stamped `engine_latest_ns`, the follow
    /// delivered lines up to `received_ns`. True: the follow has stalled (re-open it). False:
    /// the container is quiet; the next probe is one [`STALL_AFTER`] away.
    pub fn probed(
        &mut self,
        now: Instant,
        received_ns: i64,
        engine_latest_ns: Option<i64>,
    ) -> bool {
        self.quiet_since = now;
        engine_latest_ns.is_some_and(|t| t > received_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_and_write_both_forms() {
        let table: [(Option<&str>, Cursor); 6] = [
            (None, Cursor { ts_ns: 0, at_ts: 0 }),
            (Some("17/2"), Cursor { ts_ns: 17, at_ts: 2 }),
            (Some("17"), Cursor { ts_ns: 17, at_ts: u32::MAX }),
            (Some("x/2"), Cursor::default()),
            (Some("17/-1"), Cursor::default()),
            (Some("garbage"), Cursor::default()),
        ];
        for (text, want) in table {
            assert_eq!(Cursor::parse(text), want, "{text:?}");
        }
        let c = Cursor { ts_ns: 1_700_000_000_123_456_789, at_ts: 3 };
        assert_eq!(Cursor::parse(Some(&c.text())), c);
        assert_eq!(c.follow_from(), 1_700_000_000_123_456_788);
    }

    /// Lines stamped (ts, n-th at that ts); a follow re-opened at the cursor after each
    /// prefix delivers exactly the rest.
    #[test]
    fn reopening_at_the_cursor_loses_nothing_and_repeats_nothing() {
        let stamps = [5, 7, 7, 7, 9, 9, 12];
        for shipped in 0..=stamps.len() {
            let mut cursor = Cursor::default();
            for ts in &stamps[..shipped] {
                cursor.advance(*ts);
            }
            // What a follow from `follow_from` delivers: lines after it.
            let delivered = stamps.iter().filter(|ts| **ts > cursor.follow_from());
            let mut dedupe = Dedupe::new(&cursor);
            let admitted: Vec<i64> = delivered.copied().filter(|ts| dedupe.admit(*ts)).collect();
            assert_eq!(admitted, stamps[shipped..], "after {shipped} shipped");
        }
        // The older cursor form: every line at its timestamp is shipped.
        let mut d = Dedupe::new(&Cursor::parse(Some("7")));
        let admitted: Vec<i64> = stamps.iter().copied().filter(|ts| d.admit(*ts)).collect();
        assert_eq!(admitted, [9, 9, 12]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_is_probed_after_a_quiet_spell_and_reopened_only_if_the_engine_has_more() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(t0);
        // (advance by, heard a line?, check wanted)
        let table = [
            (Duration::from_millis(2900), false, Check::Wait),
            (Duration::from_millis(100), false, Check::Probe),
            (Duration::from_millis(0), true, Check::Wait),
            (STALL_AFTER - Duration::from_millis(1), false, Check::Wait),
            (Duration::from_millis(1), false, Check::Probe),
        ];
        for (i, (by, heard, want)) in table.into_iter().enumerate() {
            tokio::time::advance(by).await;
            if heard {
                w.heard(Instant::now());
            }
            assert_eq!(w.check(Instant::now()), want, "step {i}");
        }
        // (received up to, engine's latest, stalled?)
        let probes = [
            (100, Some(100), false),
            (100, None, false),
            (100, Some(99), false),
            (100, Some(101), true),
        ];
        for (received, latest, want) in probes {
            let mut w = Watchdog::new(t0);
            assert_eq!(w.probed(Instant::now(), received, latest), want, "{received} {latest:?}");
            // A probe restarts the quiet spell: a quiet container is not probed at every check.
            assert_eq!(w.check(Instant::now()), Check::Wait);
            tokio::time::advance(STALL_AFTER).await;
            assert_eq!(w.check(Instant::now()), Check::Probe);
        }
    }
}
