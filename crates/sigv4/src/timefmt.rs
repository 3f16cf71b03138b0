//! `X-Amz-Date` (`yyyymmddThhmmssZ`) and HTTP `Date` timestamps.

use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Formats `t` (converted to UTC) as `yyyymmddThhmmssZ`.
pub fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `yyyymmddThhmmssZ` strictly (exactly 16 characters, a valid
/// calendar date and time of day). Returns `None` otherwise.
pub fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range]
            .iter()
            .try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let hour = u8::try_from(digits(9..11)?).ok()?;
    let minute = u8::try_from(digits(11..13)?).ok()?;
    let second = u8::try_from(digits(13..15)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Parses an HTTP `Date` header in the IMF-fixdate form
/// `Sun, 30 Aug 2015 12:36:00 GMT`.
pub(crate) fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(s.trim(), fmt).ok().map(PrimitiveDateTime::assume_utc)
}

/// `5 min` / `90 sec`, as AWS words the skew in expiry messages.
pub(crate) fn describe_skew(skew: time::Duration) -> String {
    let secs = skew.whole_seconds();
    if secs % 60 == 0 { format!("{} min", secs / 60) } else { format!("{secs} sec") }
}
