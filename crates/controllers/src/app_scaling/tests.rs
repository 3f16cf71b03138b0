use super::*;

const B: Bounds = Bounds { min: 1, max: 10 };

fn tt(target: f64) -> TargetTracking {
    TargetTracking {
        target,
        scale_out_cooldown_ms: 60_000,
        scale_in_cooldown_ms: 300_000,
        disable_scale_in: false,
    }
}

fn input(current: u32, points: &[Option<f64>]) -> TrackingInput<'_> {
    TrackingInput {
        current,
        bounds: B,
        datapoints: points,
        last_scale_out_ms: None,
        last_scale_in_ms: None,
        now_ms: 1_000_000,
        scale_out_suspended: false,
        scale_in_suspended: false,
    }
}

#[test]
fn target_tracking_table() {
    let high = [Some(90.0), Some(95.0), Some(100.0)];
    let low = [Some(10.0); 15];
    let gap = [Some(90.0), None, Some(100.0)];
    let late = [Some(90.0), Some(95.0), Some(100.0), None];
    let mixed = [Some(90.0), Some(20.0), Some(100.0), None, Some(100.0)];
    let cases: Vec<(&str, TrackingInput<'_>, Decision)> = vec![
        (
            "3 periods above: ceil(2 x 100 / 50) = 4",
            input(2, &high),
            Decision::Scale { alarm: Alarm::High, to: 4, metric: 100.0 },
        ),
        ("too few datapoints fire nothing", input(2, &gap), Decision::Ok),
        (
            "a missing newest period is skipped",
            input(2, &late),
            Decision::Scale { alarm: Alarm::High, to: 4, metric: 100.0 },
        ),
        ("one of the newest three is below", input(2, &mixed), Decision::Ok),
        ("two periods are not enough", input(2, &high[1..]), Decision::Ok),
        (
            "clamped to max",
            input(8, &high),
            Decision::Scale { alarm: Alarm::High, to: 10, metric: 100.0 },
        ),
        (
            "at max already",
            input(10, &high),
            Decision::Held { alarm: Alarm::High, reason: Held::AtCapacity, metric: 100.0 },
        ),
        (
            "15 periods below 45: ceil(4 x 10 / 50) = 1",
            input(4, &low),
            Decision::Scale { alarm: Alarm::Low, to: 1, metric: 10.0 },
        ),
        (
            "at min already",
            input(1, &low),
            Decision::Held { alarm: Alarm::Low, reason: Held::AtCapacity, metric: 10.0 },
        ),
        ("14 low periods are not enough", input(4, &low[1..]), Decision::Ok),
        (
            "scale-out cooldown",
            TrackingInput { last_scale_out_ms: Some(990_000), ..input(2, &high) },
            Decision::Held { alarm: Alarm::High, reason: Held::Cooldown, metric: 100.0 },
        ),
        (
            "scale-out cooldown over",
            TrackingInput { last_scale_out_ms: Some(900_000), ..input(2, &high) },
            Decision::Scale { alarm: Alarm::High, to: 4, metric: 100.0 },
        ),
        (
            "scale-in waits out the scale-in cooldown",
            TrackingInput { last_scale_in_ms: Some(800_000), ..input(4, &low) },
            Decision::Held { alarm: Alarm::Low, reason: Held::Cooldown, metric: 10.0 },
        ),
        (
            "scale-in waits after a scale-out too",
            TrackingInput { last_scale_out_ms: Some(800_000), ..input(4, &low) },
            Decision::Held { alarm: Alarm::Low, reason: Held::Cooldown, metric: 10.0 },
        ),
        (
            "a scale-in does not delay a scale-out",
            TrackingInput { last_scale_in_ms: Some(999_000), ..input(2, &high) },
            Decision::Scale { alarm: Alarm::High, to: 4, metric: 100.0 },
        ),
        (
            "scale-out suspended",
            TrackingInput { scale_out_suspended: true, ..input(2, &high) },
            Decision::Held { alarm: Alarm::High, reason: Held::Suspended, metric: 100.0 },
        ),
        (
            "scale-in suspended",
            TrackingInput { scale_in_suspended: true, ..input(4, &low) },
            Decision::Held { alarm: Alarm::Low, reason: Held::Suspended, metric: 10.0 },
        ),
    ];
    for (what, s, want) in cases {
        assert_eq!(target_tracking(&tt(50.0), &s), want, "{what}");
    }
    let no_in = TargetTracking { disable_scale_in: true, ..tt(50.0) };
    assert_eq!(
        target_tracking(&no_in, &input(4, &low)),
        Decision::Held { alarm: Alarm::Low, reason: Held::Suspended, metric: 10.0 },
        "DisableScaleIn"
    );
    // Between 45 and 50 neither alarm fires: no flapping around the target.
    assert_eq!(target_tracking(&tt(50.0), &input(4, &[Some(47.0); 15])), Decision::Ok);
}

#[test]
fn bounds_clamp() {
    assert_eq!(B.clamp(-3), 1);
    assert_eq!(B.clamp(11), 10);
    assert_eq!(Bounds { min: 0, max: 0 }.clamp(5), 0);
}

fn steps() -> Vec<Step> {
    vec![
        Step { lower: None, upper: Some(-10.0), adjustment: -2 },
        Step { lower: Some(-10.0), upper: Some(0.0), adjustment: -1 },
        Step { lower: Some(0.0), upper: Some(20.0), adjustment: 1 },
        Step { lower: Some(20.0), upper: None, adjustment: 3 },
    ]
}

#[test]
fn step_intervals_follow_aws_inclusivity() {
    let s = steps();
    let adj = |breach| step_for(&s, breach).map(|s| s.adjustment);
    assert_eq!(adj(0.0), Some(1), "at the threshold, above: lower bound inclusive");
    assert_eq!(adj(19.9), Some(1));
    assert_eq!(adj(20.0), Some(3));
    assert_eq!(adj(-10.0), Some(-2), "below: upper bound inclusive, lower exclusive");
    assert_eq!(adj(-9.5), Some(-1));
    assert_eq!(adj(-0.1), Some(-1));
    assert!(check_steps(&s).is_ok());
    let gap = vec![
        Step { lower: Some(0.0), upper: Some(10.0), adjustment: 1 },
        Step { lower: Some(20.0), upper: None, adjustment: 2 },
    ];
    assert!(check_steps(&gap).unwrap_err().contains("gap"));
    let overlap = vec![
        Step { lower: Some(0.0), upper: Some(30.0), adjustment: 1 },
        Step { lower: Some(20.0), upper: None, adjustment: 2 },
    ];
    assert!(check_steps(&overlap).unwrap_err().contains("overlap"));
    assert!(check_steps(&[]).is_err());
}

#[test]
fn adjustments_table() {
    use AdjustmentType::*;
    let cases = [
        (ChangeInCapacity, 2, None, 3, 5),
        (ChangeInCapacity, -5, None, 3, -2),
        (ExactCapacity, 7, None, 3, 7),
        (PercentChangeInCapacity, 50, None, 3, 4), // 1.5 rounds toward zero
        (PercentChangeInCapacity, 10, None, 3, 4), // 0.3 counts as 1
        (PercentChangeInCapacity, -10, None, 3, 2), // -0.3 counts as -1
        (PercentChangeInCapacity, 10, Some(2), 3, 5), // at least MinAdjustmentMagnitude
        (PercentChangeInCapacity, 200, None, 4, 12),
    ];
    for (kind, a, min, current, want) in cases {
        assert_eq!(adjust(kind, a, min, current), want, "{kind:?} {a} {min:?} from {current}");
    }
}

#[test]
fn step_scaling_decides_within_bounds_and_cooldown() {
    let p = StepPolicy {
        adjustment_type: AdjustmentType::ChangeInCapacity,
        steps: steps(),
        min_adjustment_magnitude: None,
        cooldown_ms: 60_000,
    };
    let d = step_scaling(&p, 2, B, 25.0, 75.0, None, 1_000_000, (false, false));
    assert_eq!(d, Decision::Scale { alarm: Alarm::High, to: 5, metric: 75.0 });
    let d = step_scaling(&p, 2, B, 25.0, 75.0, Some(990_000), 1_000_000, (false, false));
    assert_eq!(d, Decision::Held { alarm: Alarm::High, reason: Held::Cooldown, metric: 75.0 });
    let d = step_scaling(&p, 1, B, -15.0, 35.0, None, 1_000_000, (false, false));
    assert_eq!(d, Decision::Held { alarm: Alarm::Low, reason: Held::AtCapacity, metric: 35.0 });
    let d = step_scaling(&p, 2, B, 25.0, 75.0, None, 1_000_000, (true, false));
    assert_eq!(d, Decision::Held { alarm: Alarm::High, reason: Held::Suspended, metric: 75.0 });
}

fn ms(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_millisecond()
}

#[test]
fn schedules_parse_and_refuse_with_reasons() {
    assert!(matches!(Schedule::parse("at(2026-12-02T10:00:00)"), Ok(Schedule::At(_))));
    assert_eq!(Schedule::parse("rate(5 minutes)"), Ok(Schedule::Rate(300_000)));
    assert_eq!(Schedule::parse("rate(1 hour)"), Ok(Schedule::Rate(3_600_000)));
    for bad in [
        "rate(1 minutes)",
        "rate(0 minutes)",
        "rate(5 fortnights)",
        "at(tomorrow)",
        "cron(0 10 * * * *)",
        "cron(0 10 * *)",
        "cron(0 25 * * ? *)",
        "cron(0 10 L * ? *)",
        "every day",
    ] {
        assert!(Schedule::parse(bad).is_err(), "{bad} must be refused");
    }
    assert!(time_zone(Some("Not/AZone")).is_err());
}

#[test]
fn schedules_fire_once_in_their_window() {
    let utc = time_zone(None).unwrap();
    let at = Schedule::parse("at(2026-12-02T10:00:00)").unwrap();
    let t = ms("2026-12-02T10:00:00Z");
    assert_eq!(at.latest_fire(&utc, 0, (t - 1000, t + 1000), None, None), Some(t));
    assert_eq!(at.latest_fire(&utc, 0, (t, t + 5000), None, None), None, "already fired");
    // In a time zone: 10:00 in New York is 15:00 UTC in December.
    let ny = time_zone(Some("America/New_York")).unwrap();
    let t_ny = ms("2026-12-02T15:00:00Z");
    assert_eq!(at.latest_fire(&ny, 0, (t_ny - 1000, t_ny), None, None), Some(t_ny));

    let weekdays = Schedule::parse("cron(30 9 ? * MON-FRI *)").unwrap();
    // 2026-12-02 is a Wednesday; 2026-12-05 a Saturday.
    let wed = ms("2026-12-02T09:30:00Z");
    assert_eq!(weekdays.latest_fire(&utc, 0, (wed - 60_000, wed + 10_000), None, None), Some(wed));
    let sat = ms("2026-12-05T09:30:00Z");
    assert_eq!(weekdays.latest_fire(&utc, 0, (sat - 60_000, sat + 10_000), None, None), None);
    // A late pass still finds the latest firing, once.
    assert_eq!(
        weekdays.latest_fire(&utc, 0, (wed - 60_000, wed + 3_600_000), None, None),
        Some(wed)
    );
    // EndTime before the firing: nothing.
    assert_eq!(weekdays.latest_fire(&utc, 0, (wed - 60_000, wed), None, Some(wed - 1)), None);
    let every_15 = Schedule::parse("cron(0/15 * * * ? *)").unwrap();
    let q = ms("2026-12-02T09:45:00Z");
    assert_eq!(every_15.latest_fire(&utc, 0, (q - 600_000, q + 60_000), None, None), Some(q));

    let rate = Schedule::parse("rate(5 minutes)").unwrap();
    let anchor = ms("2026-12-02T09:00:00Z");
    assert_eq!(
        rate.latest_fire(&utc, anchor, (anchor + 290_000, anchor + 310_000), None, None),
        Some(anchor + 300_000)
    );
    assert_eq!(rate.latest_fire(&utc, anchor, (anchor, anchor + 299_000), None, None), None);
}
