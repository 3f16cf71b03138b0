use super::*;

fn key(dims: &[(&str, &str)]) -> MetricKey {
    let d: Vec<(String, String)> =
        dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    MetricKey::new("App", "Latency", &d)
}

fn sample(k: &MetricKey, at_ms: i64, res: i64, v: f64) -> Sample {
    Sample { key: k.clone(), at_ms, resolution_secs: res, agg: Agg::value(v, 1.0) }
}

#[test]
fn samples_merge_into_buckets_and_periods() {
    let s = MetricStore::in_memory().unwrap();
    let k = key(&[("B", "2"), ("A", "1")]);
    // three standard-resolution values in the first minute, one in the second
    s.put(
        "r",
        &[
            sample(&k, 1_000, 60, 10.0),
            sample(&k, 30_000, 60, 20.0),
            sample(&k, 59_999, 60, 30.0),
            sample(&k, 61_000, 60, 40.0),
        ],
        100,
    )
    .unwrap();
    let b = s.buckets("r", &k, 0, 120_000, 60).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].at_ms, b[0].agg.count, b[0].agg.sum), (0, 3.0, 60.0));
    assert_eq!((b[0].agg.min, b[0].agg.max, b[0].agg.average()), (10.0, 30.0, 20.0));
    assert_eq!(b[0].agg.percentile(50.0), Some(20.0));
    assert_eq!(b[0].agg.percentile(99.0), Some(30.0));
    let b = s.buckets("r", &k, 0, 120_000, 120).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].agg.count, 4.0);
    // the window is half-open and another region is another metric
    assert_eq!(s.buckets("r", &k, 0, 60_000, 60).unwrap().len(), 1);
    assert!(s.buckets("other", &k, 0, 120_000, 60).unwrap().is_empty());
    // dimension order does not matter; a subset is another metric
    assert_eq!(s.buckets("r", &key(&[("A", "1"), ("B", "2")]), 0, 120_000, 60).unwrap().len(), 2);
    assert!(s.buckets("r", &key(&[("A", "1")]), 0, 120_000, 60).unwrap().is_empty());
}

#[test]
fn high_resolution_buckets_serve_short_periods_and_minutes() {
    let s = MetricStore::in_memory().unwrap();
    let k = key(&[]);
    s.put(
        "r",
        &[sample(&k, 1_500, 1, 1.0), sample(&k, 2_500, 1, 3.0), sample(&k, 3_000, 60, 9.0)],
        0,
    )
    .unwrap();
    let b = s.buckets("r", &k, 0, 10_000, 1).unwrap();
    assert_eq!(b.iter().map(|b| b.at_ms).collect::<Vec<_>>(), vec![1_000, 2_000]);
    let b = s.buckets("r", &k, 0, 60_000, 60).unwrap();
    assert_eq!((b.len(), b[0].agg.count, b[0].agg.max), (1, 3.0, 9.0));
}

#[test]
fn statistic_sets_have_no_percentiles() {
    let s = MetricStore::in_memory().unwrap();
    let k = key(&[]);
    let set = Sample {
        key: k.clone(),
        at_ms: 0,
        resolution_secs: 60,
        agg: Agg::set(4.0, 10.0, 1.0, 4.0),
    };
    s.put("r", &[set, sample(&k, 1, 60, 5.0)], 0).unwrap();
    let b = s.buckets("r", &k, 0, 60_000, 60).unwrap();
    assert_eq!((b[0].agg.count, b[0].agg.sum, b[0].agg.max), (5.0, 15.0, 5.0));
    assert_eq!(b[0].agg.percentile(50.0), None);
}

#[test]
fn list_filters_and_recently_active_and_sweep() {
    let s = MetricStore::in_memory().unwrap();
    let a = key(&[("Service", "web")]);
    let b = MetricKey::new("Other", "Errors", &[("Service".into(), "api".into())]);
    s.put("r", &[sample(&a, 0, 60, 1.0)], 1_000).unwrap();
    s.put("r", &[sample(&b, 0, 60, 1.0)], 5_000).unwrap();
    assert_eq!(s.list("r", None, None, &[], None).unwrap().len(), 2);
    assert_eq!(s.list("r", Some("App"), None, &[], None).unwrap()[0].key, a);
    let f = [DimensionFilter { name: "Service".into(), value: Some("api".into()) }];
    assert_eq!(s.list("r", None, None, &f, None).unwrap()[0].key, b);
    let any = [DimensionFilter { name: "Service".into(), value: None }];
    assert_eq!(s.list("r", None, None, &any, None).unwrap().len(), 2);
    assert_eq!(s.list("r", None, None, &[], Some(2_000)).unwrap()[0].key, b);
    assert_eq!(s.sweep(60_000).unwrap(), 2);
    assert!(s.list("r", None, None, &[], None).unwrap().is_empty());
}

#[test]
fn alarms_and_history_round_trip() {
    let s = MetricStore::in_memory().unwrap();
    s.put_alarm("r", "a", "{}").unwrap();
    assert_eq!(s.get_alarm("r", "a").unwrap().as_deref(), Some("{}"));
    assert_eq!(s.alarms(Some("r")).unwrap().len(), 1);
    for t in [1, 2] {
        let item = HistoryItem {
            alarm: "a".into(),
            at_ms: t,
            kind: "StateUpdate".into(),
            body: t.to_string(),
        };
        s.add_history("r", &item).unwrap();
    }
    let h = s.history("r", Some("a"), 0, 10, false).unwrap();
    assert_eq!(h.iter().map(|h| h.at_ms).collect::<Vec<_>>(), vec![2, 1]);
    assert!(s.delete_alarm("r", "a").unwrap());
    assert!(!s.delete_alarm("r", "a").unwrap());
}
