//! Application Auto Scaling's decisions (issue #15), pure: a scalable target's capacity, its
//! bounds, a policy and the metric as the caller read it in; the new capacity (or why not)
//! out. The server's controller reads the store and the metrics, calls these, and changes the
//! ECS service's desired count through UpdateService's path.
//!
//! Contract:
//! * time is epoch milliseconds passed in (`now_ms`); nothing here reads a clock;
//! * every result lies within the target's `[min, max]` ([`Bounds::clamp`]);
//! * target tracking ([`target_tracking`]) behaves as AWS's two alarms would: `AlarmHigh`
//!   fires when the newest [`HIGH_DATAPOINTS`] datapoints are all above the target,
//!   `AlarmLow` when the newest [`LOW_DATAPOINTS`] are all below [`LOW_FACTOR`] x target;
//!   missing periods are skipped within [`evaluation_range`] (CloudWatch's `missing`
//!   treatment: a late report does not reset an alarm), and too few datapoints fire neither. The new
//!   capacity is `ceil(current x metric / target)` (proportional), never lower than current
//!   on a scale-out nor higher on a scale-in. Scale-out waits out the scale-out cooldown after
//!   the last scale-out; scale-in waits out both cooldowns after the last scale-out and the
//!   scale-in cooldown after the last scale-in (so a scale-out is never undone at once);
//! * step scaling ([`step_scaling`]) picks the step whose interval holds `metric - threshold`
//!   (AWS's rule: above the threshold the lower bound is inclusive, below it the upper bound
//!   is), applies ChangeInCapacity / PercentChangeInCapacity (rounded toward zero, at least
//!   one, at least `MinAdjustmentMagnitude`) / ExactCapacity, within its cooldown;
//! * schedules ([`Schedule`]) are `at(yyyy-mm-ddThh:mm:ss)`, `rate(N unit)` and AWS's
//!   six-field `cron(min hour day-of-month month day-of-week year)`, `at` and `cron` in an IANA
//!   time zone (UTC by default); [`Schedule::latest_fire`] answers the last time the schedule
//!   fired within a window, so a pass that runs late still fires once, never twice.

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A scalable target's capacity bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

impl Bounds {
    /// `n` within the bounds (`min` wins should `min > max`).
    pub fn clamp(self, n: i64) -> u32 {
        n.min(i64::from(self.max)).max(i64::from(self.min)).max(0) as u32
    }
}

/// Consecutive periods above the target that fire `AlarmHigh` (AWS: 3 of 1 minute).
pub const HIGH_DATAPOINTS: usize = 3;
/// Consecutive periods below [`LOW_FACTOR`] x target that fire `AlarmLow` (AWS: 15).
pub const LOW_DATAPOINTS: usize = 15;
/// `AlarmLow`'s threshold as a fraction of the target (AWS: 90%).
pub const LOW_FACTOR: f64 = 0.9;

/// A target tracking policy's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetTracking {
    pub target: f64,
    pub scale_out_cooldown_ms: i64,
    pub scale_in_cooldown_ms: i64,
    pub disable_scale_in: bool,
}

/// What target tracking reads at one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackingInput<'a> {
    pub current: u32,
    pub bounds: Bounds,
    /// The metric of each evaluation period, oldest first, the newest last (`None`: no data);
    /// [`evaluation_range`]`(`[`LOW_DATAPOINTS`]`)` of them suffice.
    pub datapoints: &'a [Option<f64>],
    pub last_scale_out_ms: Option<i64>,
    pub last_scale_in_ms: Option<i64>,
    pub now_ms: i64,
    /// SuspendedState's DynamicScalingOutSuspended / DynamicScalingInSuspended.
    pub scale_out_suspended: bool,
    pub scale_in_suspended: bool,
}

/// Which of target tracking's two alarms is in ALARM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    High,
    Low,
}

/// Why an alarm in ALARM changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Already at the capacity the metric asks for (or at a bound).
    AtCapacity,
    /// Within a cooldown.
    Cooldown,
    /// DisableScaleIn, or the target's scaling is suspended in that direction.
    Suspended,
}

/// A target tracking (or step scaling) evaluation's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// No alarm in ALARM.
    Ok,
    /// An alarm fired and the capacity changes to `to`; `metric` is the value that fired it.
    Scale { alarm: Alarm, to: u32, metric: f64 },
    /// An alarm fired and nothing changes.
    Held { alarm: Alarm, reason: Held, metric: f64 },
}

/// Periods an alarm of `n` datapoints looks back over to find them (CloudWatch's evaluation
/// range with missing data treated as `missing`: missing periods are skipped, not breaching).
pub fn evaluation_range(n: usize) -> usize {
    2 * n
}

/// The newest `n` present datapoints within the last [`evaluation_range`] periods, all
/// satisfying `f`: their newest value. Fewer than `n` present: `None` (insufficient data).
fn breached(points: &[Option<f64>], n: usize, f: impl Fn(f64) -> bool) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let range = &points[points.len().saturating_sub(evaluation_range(n))..];
    let newest: Vec<f64> = range.iter().rev().flatten().copied().take(n).collect();
    (newest.len() == n && newest.iter().all(|v| f(*v))).then(|| newest[0])
}

/// Target tracking (see the module contract).
pub fn target_tracking(p: &TargetTracking, s: &TrackingInput<'_>) -> Decision {
    let target = p.target;
    if target <= 0.0 || !target.is_finite() {
        return Decision::Ok;
    }
    let proportional = |metric: f64| -> i64 {
        (f64::from(s.current) * metric / target).ceil().clamp(0.0, 1e9) as i64
    };
    if let Some(metric) = breached(s.datapoints, HIGH_DATAPOINTS, |v| v > target) {
        let held = |reason| Decision::Held { alarm: Alarm::High, reason, metric };
        if s.scale_out_suspended {
            return held(Held::Suspended);
        }
        if s.last_scale_out_ms.is_some_and(|t| s.now_ms < t + p.scale_out_cooldown_ms) {
            return held(Held::Cooldown);
        }
        let to = s.bounds.clamp(proportional(metric).max(i64::from(s.current)));
        return if to > s.current {
            Decision::Scale { alarm: Alarm::High, to, metric }
        } else {
            held(Held::AtCapacity)
        };
    }
    if let Some(metric) = breached(s.datapoints, LOW_DATAPOINTS, |v| v < target * LOW_FACTOR) {
        let held = |reason| Decision::Held { alarm: Alarm::Low, reason, metric };
        if p.disable_scale_in || s.scale_in_suspended {
            return held(Held::Suspended);
        }
        let in_cooldown = s.last_scale_in_ms.is_some_and(|t| s.now_ms < t + p.scale_in_cooldown_ms)
            || s.last_scale_out_ms.is_some_and(|t| {
                s.now_ms < t + p.scale_out_cooldown_ms.max(p.scale_in_cooldown_ms)
            });
        if in_cooldown {
            return held(Held::Cooldown);
        }
        let to = s.bounds.clamp(proportional(metric).min(i64::from(s.current)));
        return if to < s.current {
            Decision::Scale { alarm: Alarm::Low, to, metric }
        } else {
            held(Held::AtCapacity)
        };
    }
    Decision::Ok
}

/// StepScaling's AdjustmentType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustmentType {
    ChangeInCapacity,
    PercentChangeInCapacity,
    ExactCapacity,
}

/// One step: `lower <= breach < upper` (see the module contract), relative to the alarm's
/// threshold; `None` is unbounded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i32,
}

/// A step scaling policy's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPolicy {
    pub adjustment_type: AdjustmentType,
    pub steps: Vec<Step>,
    pub min_adjustment_magnitude: Option<i32>,
    pub cooldown_ms: i64,
}

/// Checks a policy's steps as AWS does: at most one unbounded below and one above, no
/// overlaps, no gaps, each lower bound under its upper bound. The message names the fault.
pub fn check_steps(steps: &[Step]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("StepAdjustments must contain at least one step adjustment.".into());
    }
    let mut sorted: Vec<Step> = steps.to_vec();
    sorted.sort_by(|a, b| {
        a.lower.unwrap_or(f64::NEG_INFINITY).total_cmp(&b.lower.unwrap_or(f64::NEG_INFINITY))
    });
    for s in &sorted {
        if s.lower.is_none() && s.upper.is_none() && sorted.len() > 1 {
            return Err("Only one step adjustment may be unbounded on both sides.".into());
        }
        if let (Some(l), Some(u)) = (s.lower, s.upper)
            && l >= u
        {
            return Err(format!(
                "Step adjustment has a lower bound ({l}) that is not less than its upper bound ({u})."
            ));
        }
    }
    for w in sorted.windows(2) {
        let (a, b) = (w[0], w[1]);
        match (a.upper, b.lower) {
            (Some(u), Some(l)) if u == l => {}
            (Some(u), Some(l)) if u < l => {
                return Err(format!("There is a gap between step adjustments at {u} and {l}."));
            }
            _ => return Err("Step adjustments overlap.".into()),
        }
    }
    if sorted.iter().filter(|s| s.lower.is_none()).count() > 1
        || sorted.iter().filter(|s| s.upper.is_none()).count() > 1
    {
        return Err("Step adjustments overlap.".into());
    }
    Ok(())
}

/// The step `breach` (metric minus the alarm's threshold) falls in.
pub fn step_for(steps: &[Step], breach: f64) -> Option<Step> {
    steps.iter().copied().find(|s| {
        let above = breach >= 0.0;
        let lower_ok = match s.lower {
            None => true,
            Some(l) if above => breach >= l,
            Some(l) => breach > l,
        };
        let upper_ok = match s.upper {
            None => true,
            Some(u) if above => breach < u,
            Some(u) => breach <= u,
        };
        lower_ok && upper_ok
    })
}

/// The capacity a step asks for from `current`, before the bounds.
pub fn adjust(
    kind: AdjustmentType,
    adjustment: i32,
    min_magnitude: Option<i32>,
    current: u32,
) -> i64 {
    let current = i64::from(current);
    match kind {
        AdjustmentType::ChangeInCapacity => current + i64::from(adjustment),
        AdjustmentType::ExactCapacity => i64::from(adjustment),
        AdjustmentType::PercentChangeInCapacity => {
            let raw = current as f64 * f64::from(adjustment) / 100.0;
            let mut change = raw.trunc() as i64;
            if change == 0 && raw != 0.0 {
                change = raw.signum() as i64;
            }
            if let Some(m) = min_magnitude.filter(|m| *m > 0)
                && change != 0
                && change.abs() < i64::from(m)
            {
                change = change.signum() * i64::from(m);
            }
            current + change
        }
    }
}

/// Step scaling for an alarm in ALARM whose metric breaches its threshold by `breach`;
/// `last_scaling_ms` is this policy's last change; `suspended` is (scale-out, scale-in).
#[allow(clippy::too_many_arguments)] // each is one reading of the evaluation; a struct adds nothing
pub fn step_scaling(
    p: &StepPolicy,
    current: u32,
    bounds: Bounds,
    breach: f64,
    metric: f64,
    last_scaling_ms: Option<i64>,
    now_ms: i64,
    suspended: (bool, bool),
) -> Decision {
    let Some(step) = step_for(&p.steps, breach) else { return Decision::Ok };
    let want = adjust(p.adjustment_type, step.adjustment, p.min_adjustment_magnitude, current);
    let to = bounds.clamp(want);
    let alarm = if want >= i64::from(current) { Alarm::High } else { Alarm::Low };
    let held = |reason| Decision::Held { alarm, reason, metric };
    if (alarm == Alarm::High && suspended.0) || (alarm == Alarm::Low && suspended.1) {
        return held(Held::Suspended);
    }
    if last_scaling_ms.is_some_and(|t| now_ms < t + p.cooldown_ms) {
        return held(Held::Cooldown);
    }
    if to == current { held(Held::AtCapacity) } else { Decision::Scale { alarm, to, metric } }
}

/// A scheduled action's schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `at(...)`: once, at this local time.
    At(DateTime),
    /// `rate(N unit)`: every this many milliseconds from the action's start.
    Rate(i64),
    /// `cron(...)`.
    Cron(Cron),
}

/// AWS's six cron fields, each as the set of values it allows.
#[derive(Clone, Debug, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    /// 0 = Sunday.
    weekdays: Vec<bool>,
    /// `None`: any year.
    years: Option<(i16, i16, i16)>,
    /// `?` or `*` in day-of-month / day-of-week (the other one decides).
    any_day: bool,
    any_weekday: bool,
}

/// Why a schedule or time zone is refused (the message is AWS's ValidationException's).
pub type ScheduleError = String;

impl Schedule {
    /// Parses `at(...)`, `rate(...)` or `cron(...)`.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let expr = expr.trim();
        let inner = |prefix: &str| {
            expr.strip_prefix(prefix).and_then(|r| r.strip_suffix(')')).map(str::trim)
        };
        if let Some(at) = inner("at(") {
            let dt: DateTime = at.parse().map_err(|_| {
                format!("Invalid at expression: at({at}); use at(yyyy-mm-ddThh:mm:ss).")
            })?;
            return Ok(Schedule::At(dt));
        }
        if let Some(rate) = inner("rate(") {
            let bad = || {
                format!(
                    "Invalid rate expression: rate({rate}); use rate(value unit) with a positive value and a unit of minute(s), hour(s) or day(s)."
                )
            };
            let (n, unit) = rate.split_once(' ').ok_or_else(bad)?;
            let n: i64 = n.trim().parse().map_err(|_| bad())?;
            if n <= 0 {
                return Err(bad());
            }
            let unit_ms = match unit.trim() {
                "minute" | "minutes" => 60_000,
                "hour" | "hours" => 3_600_000,
                "day" | "days" => 86_400_000,
                _ => return Err(bad()),
            };
            if (n == 1) == unit.trim().ends_with('s') {
                return Err(bad());
            }
            return Ok(Schedule::Rate(n * unit_ms));
        }
        if let Some(cron) = inner("cron(") {
            return Cron::parse(cron).map(Schedule::Cron);
        }
        Err(format!(
            "Invalid schedule expression: {expr}; use at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(fields)."
        ))
    }

    /// The latest time in `(after_ms, until_ms]` (and within `[start_ms, end_ms]`) at which
    /// the schedule fires, in time zone `tz`; `anchor_ms` is where a rate starts counting
    /// (the action's StartTime, else its creation).
    pub fn latest_fire(
        &self,
        tz: &TimeZone,
        anchor_ms: i64,
        window: (i64, i64),
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> Option<i64> {
        let lo = window.0.max(start_ms.map(|s| s - 1).unwrap_or(i64::MIN));
        let hi = window.1.min(end_ms.unwrap_or(i64::MAX));
        if hi <= lo {
            return None;
        }
        match self {
            Schedule::At(dt) => {
                let t = tz.to_ambiguous_timestamp(*dt).compatible().ok()?.as_millisecond();
                (t > lo && t <= hi).then_some(t)
            }
            Schedule::Rate(every) => {
                if hi < anchor_ms + every {
                    return None;
                }
                let k = (hi - anchor_ms) / every;
                let t = anchor_ms + k * every;
                (t > lo).then_some(t)
            }
            Schedule::Cron(c) => {
                // Minute granularity, newest first; at most two days are looked at (a pass
                // only needs the latest firing).
                let floor = lo.max(hi - 2 * 86_400_000);
                let mut t = hi - hi.rem_euclid(60_000);
                while t > floor {
                    let ts = Timestamp::from_millisecond(t).ok()?;
                    if c.matches(ts.to_zoned(tz.clone()).datetime()) {
                        return Some(t);
                    }
                    t -= 60_000;
                }
                None
            }
        }
    }
}

/// An IANA time zone name (`None`: UTC), as the system's zoneinfo knows it.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name {
        None | Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| {
            format!("Invalid timezone: {n}; use an IANA time zone name such as America/New_York.")
        }),
    }
}

fn field(
    text: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    what: &str,
) -> Result<Vec<bool>, ScheduleError> {
    let mut set = vec![false; hi as usize + 1];
    let bad = || format!("Invalid cron expression: '{text}' is not a valid {what} field.");
    let value = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(lo + i as u32);
        }
        let v: u32 = s.parse().map_err(|_| bad())?;
        if v < lo || v > hi { Err(bad()) } else { Ok(v) }
    };
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && names.iter().all(|n| !part.contains(n)) {
            return Err(format!(
                "Invalid cron expression: '{part}': the L, W and # forms are not supported by Berth yet."
            ));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| bad())?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(bad());
        }
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(bad());
        }
        let mut v = a;
        while v <= b {
            set[v as usize] = true;
            v += step;
        }
    }
    Ok(set)
}

impl Cron {
    /// The six fields of `cron(...)`.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() != 6 {
            return Err(format!(
                "Invalid cron expression: cron({text}) must have six fields: minutes hours day-of-month month day-of-week year."
            ));
        }
        const MONTHS: [&str; 12] =
            ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
        const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        let any_day = f[2] == "?" || f[2] == "*";
        let any_weekday = f[4] == "?" || f[4] == "*";
        if f[2] != "?" && f[4] != "?" {
            return Err(format!(
                "Invalid cron expression: cron({text}): one of day-of-month and day-of-week must be '?'."
            ));
        }
        // AWS numbers weekdays 1 (SUN) to 7 (SAT).
        let wd = field(f[4], 1, 7, &DAYS, "day-of-week")?;
        let years = match f[5] {
            "*" | "?" => None,
            y => {
                let parse = |s: &str| {
                    s.parse::<i16>().map_err(|_| {
                        format!("Invalid cron expression: '{y}' is not a valid year field.")
                    })
                };
                let (range, step) = match y.split_once('/') {
                    Some((r, s)) => (r, parse(s)?),
                    None => (y, 1),
                };
                let (a, b) = match range.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => {
                        let v = parse(range)?;
                        (v, if y.contains('/') { 2199 } else { v })
                    }
                };
                Some((a, b, step.max(1)))
            }
        };
        Ok(Cron {
            minutes: field(f[0], 0, 59, &[], "minutes")?,
            hours: field(f[1], 0, 23, &[], "hours")?,
            days: field(f[2], 1, 31, &[], "day-of-month")?,
            months: field(f[3], 1, 12, &MONTHS, "month")?,
            weekdays: (0..7).map(|d| wd[d + 1]).collect(),
            years,
            any_day,
            any_weekday,
        })
    }

    /// Whether the schedule fires at this local minute.
    pub fn matches(&self, t: DateTime) -> bool {
        let ok = |set: &[bool], v: i64| {
            usize::try_from(v).ok().and_then(|i| set.get(i)).copied() == Some(true)
        };
        let weekday = i64::from(t.weekday().to_sunday_zero_offset());
        let day_ok = match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => ok(&self.weekdays, weekday),
            (false, true) => ok(&self.days, i64::from(t.day())),
            (false, false) => ok(&self.days, i64::from(t.day())) && ok(&self.weekdays, weekday),
        };
        let year_ok = self.years.is_none_or(|(a, b, s)| {
            let y = t.year();
            y >= a && y <= b && (y - a) % s == 0
        });
        ok(&self.minutes, i64::from(t.minute()))
            && ok(&self.hours, i64::from(t.hour()))
            && ok(&self.months, i64::from(t.month()))
            && day_ok
            && year_ok
    }
}
