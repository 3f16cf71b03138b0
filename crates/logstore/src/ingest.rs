//! PutLogEvents' acceptance rules, pure (the clock comes in as `now_ms`).
//!
//! Contract ([`check_batch`]), as CloudWatch Logs documents them:
//! * a batch holds 1 to 10,000 events, at most 1,048,576 bytes counted as each message's UTF-8
//!   length plus 26 bytes, and spans at most 24 hours: otherwise the whole batch is refused
//!   with an `InvalidParameterException` message naming the rule;
//! * an event more than 2 hours in the future is rejected (`tooNewLogEventStartIndex`: the
//!   first such index), one older than the group's retention is rejected as expired
//!   (`expiredLogEventEndIndex`: the last such index), one older than 14 days as too old
//!   (`tooOldLogEventEndIndex`), and the others are accepted. The indices are the request's:
//!   the events need not be in chronological order any more (they are stored sorted).

/// The most events one PutLogEvents call may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// The largest batch, in bytes (messages' UTF-8 length plus [`EVENT_OVERHEAD`] each).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What each event adds to a batch's size.
pub const EVENT_OVERHEAD: usize = 26;
/// The longest time a batch may span.
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
/// How far in the future an event may be.
pub const MAX_FUTURE_MS: i64 = 2 * 3600 * 1000;
/// How old an event may be.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// A day, in milliseconds.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// The retention periods PutRetentionPolicy accepts, in days.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// The outcome of a batch that may be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Indices (into the request) of the events to store.
    pub accepted: Vec<usize>,
    pub too_new_start: Option<usize>,
    pub too_old_end: Option<usize>,
    pub expired_end: Option<usize>,
}

/// Decides a batch of `(timestamp_ms, message)`; `Err` is the whole batch refused (the
/// message for an `InvalidParameterException`).
pub fn check_batch(
    events: &[(i64, &str)],
    retention_days: Option<i32>,
    now_ms: i64,
) -> Result<Verdict, String> {
    if events.is_empty() {
        return Err("logEvents: a PutLogEvents batch holds at least one event.".into());
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(format!(
            "logEvents: {} events exceed the {MAX_BATCH_EVENTS} a PutLogEvents batch may hold.",
            events.len()
        ));
    }
    let bytes: usize = events.iter().map(|(_, m)| m.len() + EVENT_OVERHEAD).sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(format!(
            "logEvents: the batch is {bytes} bytes (each message plus {EVENT_OVERHEAD}); the maximum is {MAX_BATCH_BYTES}."
        ));
    }
    let min = events.iter().map(|e| e.0).min().unwrap_or(0);
    let max = events.iter().map(|e| e.0).max().unwrap_or(0);
    if max.saturating_sub(min) > MAX_SPAN_MS {
        return Err(
            "logEvents: the log events in a single PutLogEvents request cannot span more than 24 hours."
                .into(),
        );
    }
    let mut v = Verdict::default();
    let retention_cut = retention_days.map(|d| now_ms.saturating_sub(i64::from(d) * DAY_MS));
    for (i, (ts, _)) in events.iter().enumerate() {
        if *ts > now_ms.saturating_add(MAX_FUTURE_MS) {
            v.too_new_start.get_or_insert(i);
        } else if retention_cut.is_some_and(|cut| *ts < cut) {
            v.expired_end = Some(i);
        } else if *ts < now_ms.saturating_sub(MAX_AGE_MS) {
            v.too_old_end = Some(i);
        } else {
            v.accepted.push(i);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3600 * 1000;

    #[test]
    fn batches_are_judged_by_cloudwatchs_rules() {
        let big = "x".repeat(MAX_BATCH_BYTES);
        let many: Vec<(i64, &str)> = (0..=MAX_BATCH_EVENTS).map(|_| (NOW, "m")).collect();
        let refused: &[(&[(i64, &str)], &str)] = &[
            (&[], "at least one"),
            (&many, "10000"),
            (&[(NOW, big.as_str())], "bytes"),
            (&[(NOW - 25 * H, "a"), (NOW, "b")], "24 hours"),
        ];
        for (batch, why) in refused {
            let e = check_batch(batch, None, NOW).unwrap_err();
            assert!(e.contains(why), "{e} should say {why}");
        }
        // Exactly at the limits passes.
        let fits = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD);
        assert!(check_batch(&[(NOW, fits.as_str())], None, NOW).is_ok());
        assert!(check_batch(&[(NOW - 24 * H, "a"), (NOW, "b")], None, NOW).is_ok());

        type Case = (&'static [i64], Option<i32>, Verdict);
        let table: &[Case] = &[
            (&[NOW, NOW + H], None, Verdict { accepted: vec![0, 1], ..Default::default() }),
            (
                &[NOW + H, NOW + 3 * H, NOW + 2 * H + 1],
                None,
                Verdict { accepted: vec![0], too_new_start: Some(1), ..Default::default() },
            ),
            (
                &[NOW - 14 * 24 * H - H, NOW - 14 * 24 * H - 1, NOW - 14 * 24 * H + 10 * H],
                None,
                Verdict { accepted: vec![2], too_old_end: Some(1), ..Default::default() },
            ),
            (
                &[NOW - 24 * H - 1, NOW - 20 * H, NOW - H],
                Some(1),
                Verdict { accepted: vec![1, 2], expired_end: Some(0), ..Default::default() },
            ),
            // Out of order is fine now.
            (
                &[NOW, NOW - H, NOW - 2 * H],
                None,
                Verdict { accepted: vec![0, 1, 2], ..Default::default() },
            ),
        ];
        for (ts, retention, want) in table {
            let batch: Vec<(i64, &str)> = ts.iter().map(|t| (*t, "m")).collect();
            assert_eq!(&check_batch(&batch, *retention, NOW).unwrap(), want, "{ts:?}");
        }
    }
}
