use super::*;

const R: &str = "us-east-1";

fn store() -> (tempfile::TempDir, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(&dir.path().join("logs.db")).unwrap();
    (dir, s)
}

fn put(s: &LogStore, stream: &str, events: &[(i64, &str)]) {
    s.put_events(R, "g", stream, events, 1_000).unwrap();
}

fn messages(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

#[test]
fn groups_and_streams_are_unique_and_listed_in_order() {
    let (_d, s) = store();
    s.create_group(R, "b", 1, &BTreeMap::new()).unwrap();
    s.create_group(R, "a", 2, &BTreeMap::from([("k".into(), "v".into())])).unwrap();
    s.create_group("eu-west-1", "a", 3, &BTreeMap::new()).unwrap();
    assert!(matches!(
        s.create_group(R, "a", 4, &BTreeMap::new()),
        Err(LogStoreError::AlreadyExists(_))
    ));
    let names: Vec<_> =
        s.describe_groups(R, None, None, 0, 10).unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(s.describe_groups(R, Some("b"), None, 0, 10).unwrap().len(), 1);
    assert_eq!(s.describe_groups(R, None, Some("B"), 0, 10).unwrap().len(), 1);
    assert_eq!(s.describe_groups(R, None, None, 1, 10).unwrap()[0].name, "b");
    assert_eq!(s.group_tags(R, "a").unwrap()["k"], "v");
    s.create_stream(R, "a", "s1", 5).unwrap();
    assert!(matches!(s.create_stream(R, "a", "s1", 5), Err(LogStoreError::AlreadyExists(_))));
    assert!(matches!(s.create_stream(R, "zz", "s1", 5), Err(LogStoreError::NotFound(_))));
    s.delete_group(R, "a").unwrap();
    assert!(s.group(R, "a").unwrap().is_none());
    assert!(s.group("eu-west-1", "a").unwrap().is_some());
    assert!(matches!(s.delete_group(R, "a"), Err(LogStoreError::NotFound(_))));
}

#[test]
fn events_are_stored_sorted_and_paged_with_tokens_as_aws_does() {
    let (_d, s) = store();
    s.create_group(R, "g", 0, &BTreeMap::new()).unwrap();
    s.create_stream(R, "g", "s", 0).unwrap();
    put(&s, "s", &[(30, "c"), (10, "a"), (20, "b")]);
    put(&s, "s", &[(20, "b2"), (40, "d")]);
    let st = &s.describe_streams(R, "g", None, StreamOrder::Name, false, 0, 10).unwrap()[0];
    assert_eq!((st.first_event_ms, st.last_event_ms), (Some(10), Some(40)));
    assert_eq!(st.stored_bytes, 6 + 5 * 26);

    // From the head, two at a time, then the same forward token at the end.
    let mut q = GetQuery { limit: 2, start_from_head: true, ..Default::default() };
    let p1 = s.get_events(R, "g", "s", &q).unwrap();
    assert_eq!(messages(&p1.events), ["a", "b"]);
    q.token = Some(p1.forward_token.clone());
    let p2 = s.get_events(R, "g", "s", &q).unwrap();
    assert_eq!(messages(&p2.events), ["b2", "c"]);
    q.token = Some(p2.forward_token.clone());
    let p3 = s.get_events(R, "g", "s", &q).unwrap();
    assert_eq!(messages(&p3.events), ["d"]);
    q.token = Some(p3.forward_token.clone());
    let p4 = s.get_events(R, "g", "s", &q).unwrap();
    assert!(p4.events.is_empty());
    assert_eq!(p4.forward_token, p3.forward_token, "the same token comes back at the end");
    // Then a new event shows up on the same token.
    put(&s, "s", &[(50, "e")]);
    assert_eq!(messages(&s.get_events(R, "g", "s", &q).unwrap().events), ["e"]);
    // Backward from p4's backward token: what lies before, newest last.
    q.token = Some(p4.backward_token.clone());
    assert_eq!(messages(&s.get_events(R, "g", "s", &q).unwrap().events), ["c", "d"]);

    // Default: the latest events; going backward reaches the start and repeats its token.
    let mut q = GetQuery { limit: 2, ..Default::default() };
    let l1 = s.get_events(R, "g", "s", &q).unwrap();
    assert_eq!(messages(&l1.events), ["d", "e"]);
    q.token = Some(l1.backward_token.clone());
    let l2 = s.get_events(R, "g", "s", &q).unwrap();
    assert_eq!(messages(&l2.events), ["b2", "c"]);
    q.token = Some(l2.backward_token);
    let l3 = s.get_events(R, "g", "s", &q).unwrap();
    assert_eq!(messages(&l3.events), ["a", "b"]);
    q.token = Some(l3.backward_token.clone());
    let l4 = s.get_events(R, "g", "s", &q).unwrap();
    assert!(l4.events.is_empty());
    assert_eq!(l4.backward_token, l3.backward_token);
    // The forward token of an empty backward page reads from the start.
    q.token = Some(l4.forward_token);
    assert_eq!(messages(&s.get_events(R, "g", "s", &q).unwrap().events), ["a", "b"]);

    // A time range: start inclusive, end exclusive.
    let q = GetQuery {
        start_ms: Some(20),
        end_ms: Some(40),
        limit: 100,
        start_from_head: true,
        ..Default::default()
    };
    assert_eq!(messages(&s.get_events(R, "g", "s", &q).unwrap().events), ["b", "b2", "c"]);

    for bad in ["x", "f/1", "f/a/b", "b/1/2/3", "g/1/2"] {
        let q = GetQuery { token: Some(bad.into()), limit: 1, ..Default::default() };
        assert!(
            matches!(s.get_events(R, "g", "s", &q), Err(LogStoreError::InvalidParameter(_))),
            "{bad}"
        );
    }
}

fn refs(v: &[(i64, String)]) -> Vec<(i64, &str)> {
    v.iter().map(|(t, m)| (*t, m.as_str())).collect()
}

#[test]
fn filter_interleaves_streams_and_resumes_from_its_token() {
    let (_d, s) = store();
    s.create_group(R, "g", 0, &BTreeMap::new()).unwrap();
    for st in ["app/a", "app/b", "other"] {
        s.create_stream(R, "g", st, 0).unwrap();
    }
    // Enough rows that the per-stream batches (500) must be merged and cut.
    let a: Vec<(i64, String)> = (0..1200)
        .map(|i| (i * 2, format!("a{i} {}", if i % 3 == 0 { "ERROR" } else { "ok" })))
        .collect();
    let b: Vec<(i64, String)> = (0..700).map(|i| (i * 3 + 1, format!("b{i} ERROR"))).collect();
    put(&s, "app/a", &refs(&a));
    put(&s, "app/b", &refs(&b));
    put(&s, "other", &[(5, "other ERROR")]);

    let all = Pattern::parse("").unwrap();
    let mut expected: Vec<(i64, String)> = a.iter().chain(b.iter()).cloned().collect();
    expected.push((5, "other ERROR".into()));
    expected.sort_by_key(|(t, m)| (*t, !m.starts_with('a')));
    let mut seen = vec![];
    let mut token: Option<String> = None;
    loop {
        let q = FilterQuery {
            stream_names: None,
            stream_prefix: None,
            start_ms: None,
            end_ms: None,
            pattern: &all,
            token: token.as_deref(),
            limit: 333,
        };
        let page = s.filter_events(R, "g", &q).unwrap();
        seen.extend(page.events.into_iter().map(|e| (e.event.timestamp_ms, e.event.message)));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut want_sorted = expected.clone();
    want_sorted.sort();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    assert_eq!(seen_sorted, want_sorted, "every event exactly once");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");

    let errors = Pattern::parse("ERROR").unwrap();
    let q = FilterQuery {
        stream_names: None,
        stream_prefix: Some("app/"),
        start_ms: Some(100),
        end_ms: Some(200),
        pattern: &errors,
        token: None,
        limit: 10_000,
    };
    let page = s.filter_events(R, "g", &q).unwrap();
    let want = expected
        .iter()
        .filter(|(t, m)| (100..=200).contains(t) && m.contains("ERROR") && !m.starts_with("other"))
        .count();
    assert_eq!(page.events.len(), want);
    assert_eq!(page.searched_streams, ["app/a", "app/b"]);
    assert!(page.next_token.is_none());
    let names = ["other".to_string()];
    let q = FilterQuery {
        stream_names: Some(&names),
        stream_prefix: None,
        start_ms: None,
        end_ms: None,
        pattern: &errors,
        token: None,
        limit: 10,
    };
    let page = s.filter_events(R, "g", &q).unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].stream, "other");
}

#[test]
fn retention_sweep_deletes_old_events_only_in_groups_with_a_policy() {
    let (_d, s) = store();
    let day = ingest::DAY_MS;
    let now = 100 * day;
    for g in ["kept", "swept"] {
        s.create_group(R, g, 0, &BTreeMap::new()).unwrap();
        s.create_stream(R, g, "s", 0).unwrap();
        s.put_events(R, g, "s", &[(now - 3 * day, "old"), (now - day / 2, "new")], now).unwrap();
    }
    s.set_retention(R, "swept", Some(1)).unwrap();
    assert_eq!(s.sweep_retention(now).unwrap(), 1);
    assert_eq!(s.sweep_retention(now).unwrap(), 0);
    let q = GetQuery { limit: 10, start_from_head: true, ..Default::default() };
    assert_eq!(messages(&s.get_events(R, "swept", "s", &q).unwrap().events), ["new"]);
    assert_eq!(messages(&s.get_events(R, "kept", "s", &q).unwrap().events), ["old", "new"]);
    let g = s.group(R, "swept").unwrap().unwrap();
    assert_eq!((g.retention_days, g.stored_bytes), (Some(1), 3 + 26));
    s.set_retention(R, "swept", None).unwrap();
    assert!(matches!(s.set_retention(R, "nope", Some(1)), Err(LogStoreError::NotFound(_))));
}

#[test]
fn acknowledged_events_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    {
        let s = LogStore::open(&path).unwrap();
        s.create_group(R, "g", 0, &BTreeMap::new()).unwrap();
        s.create_stream(R, "g", "s", 0).unwrap();
        s.put_events(R, "g", "s", &[(1, "kept")], 2).unwrap();
        // Dropped without any shutdown step, as a killed process would be.
        std::mem::forget(s);
    }
    let s = LogStore::open(&path).unwrap();
    let q = GetQuery { limit: 10, start_from_head: true, ..Default::default() };
    assert_eq!(messages(&s.get_events(R, "g", "s", &q).unwrap().events), ["kept"]);
}

#[test]
fn the_drivers_shipments_store_events_and_cursor_together() {
    let (_d, s) = store();
    let now = 10 * ingest::DAY_MS;
    assert!(matches!(
        s.ship(R, "g", "p/c/t", false, true, &[], None, now),
        Err(LogStoreError::NotFound(_))
    ));
    assert_eq!(s.ship(R, "g", "p/c/t", true, true, &[], None, now).unwrap(), None);
    let stored = s
        .ship(R, "g", "p/c/t", false, true, &[(now, "one"), (now + 1, "two")], Some("c2"), now)
        .unwrap();
    assert_eq!(stored.as_deref(), Some("c2"));
    assert_eq!(
        s.ship(R, "g", "p/c/t", false, true, &[], None, now).unwrap().as_deref(),
        Some("c2")
    );
    // Too old for CloudWatch: dropped, the cursor still moves on.
    s.ship(R, "g", "p/c/t", false, true, &[(now - 15 * ingest::DAY_MS, "old")], Some("c3"), now)
        .unwrap();
    let q = GetQuery { limit: 10, start_from_head: true, ..Default::default() };
    assert_eq!(messages(&s.get_events(R, "g", "p/c/t", &q).unwrap().events), ["one", "two"]);
    // A stream deleted while its container writes stays deleted: the driver's later
    // shipments (without create_stream) are refused and store nothing.
    s.delete_stream(R, "g", "p/c/t").unwrap();
    assert!(matches!(
        s.ship(R, "g", "p/c/t", false, false, &[(now + 2, "three")], Some("c4"), now),
        Err(LogStoreError::NotFound(_))
    ));
    assert!(matches!(s.get_events(R, "g", "p/c/t", &q), Err(LogStoreError::NotFound(_))));
}

fn filter(name: &str, pattern: &str, metric: &str) -> MetricFilter {
    MetricFilter {
        name: name.into(),
        pattern: pattern.into(),
        transformation: Transformation {
            metric_name: metric.into(),
            metric_namespace: "App".into(),
            metric_value: "1".into(),
            default_value: None,
            dimensions: BTreeMap::from([("Code".into(), "$.status".into())]),
            unit: Some("Count".into()),
        },
        created_ms: 7,
    }
}

#[test]
fn metric_filters_live_with_their_group_and_meter_both_ingest_paths() {
    let (_d, s) = store();
    assert!(matches!(
        s.put_metric_filter(R, "g", &filter("f", "{ $.status = 500 }", "Errors")),
        Err(LogStoreError::NotFound(_))
    ));
    s.create_group(R, "g", 1, &BTreeMap::new()).unwrap();
    s.create_stream(R, "g", "s", 1).unwrap();
    s.put_metric_filter(R, "g", &filter("f", "{ $.status = 500 }", "Errors")).unwrap();
    // Replacing keeps the creation time.
    let mut again = filter("f", "{ $.status >= 500 }", "Errors");
    again.created_ms = 99;
    s.put_metric_filter(R, "g", &again).unwrap();
    let listed = s.describe_metric_filters(R, Some("g"), "", None, 0, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1.pattern, "{ $.status >= 500 }");
    assert_eq!(listed[0].1.created_ms, 7);
    assert_eq!(listed[0].1.transformation, again.transformation);

    let now = 10 * ingest::DAY_MS;
    let (_, data) = s
        .put_events_metered(
            R,
            "g",
            "s",
            &[(now, r#"{"status":503}"#), (now + 1, r#"{"status":200}"#)],
            now,
        )
        .unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!((data[0].timestamp_ms, data[0].value), (now, 1.0));
    assert_eq!(data[0].dimensions, [("Code".to_string(), "503".to_string())]);
    // The driver's path meters only what it stored (the old event is dropped).
    let (_, data) = s
        .ship_metered(
            R,
            "g",
            "s",
            false,
            false,
            &[(now - 15 * ingest::DAY_MS, r#"{"status":500}"#), (now, r#"{"status":501}"#)],
            None,
            now,
        )
        .unwrap();
    let codes: Vec<&str> = data.iter().map(|d| d.dimensions[0].1.as_str()).collect();
    assert_eq!(codes, ["501"]);

    // 100 per group; replacing one at the limit is fine.
    for i in 1..100 {
        s.put_metric_filter(R, "g", &filter(&format!("f{i:03}"), "ERROR", "Other")).unwrap();
    }
    assert_eq!(s.metric_filter_count(R, "g").unwrap(), 100);
    assert!(matches!(
        s.put_metric_filter(R, "g", &filter("one-more", "ERROR", "Other")),
        Err(LogStoreError::LimitExceeded(_))
    ));
    s.put_metric_filter(R, "g", &filter("f050", "WARN", "Other")).unwrap();

    // Listing: by prefix, by metric across groups, in pages.
    s.create_group(R, "h", 1, &BTreeMap::new()).unwrap();
    s.put_metric_filter(R, "h", &filter("f", "ERROR", "Errors")).unwrap();
    let names = |v: Vec<(String, MetricFilter)>| -> Vec<String> {
        v.into_iter().map(|(g, f)| format!("{g}:{}", f.name)).collect()
    };
    assert_eq!(
        names(s.describe_metric_filters(R, Some("g"), "f00", None, 0, 5).unwrap()),
        ["g:f001", "g:f002", "g:f003", "g:f004", "g:f005"]
    );
    assert_eq!(
        names(s.describe_metric_filters(R, Some("g"), "f00", None, 5, 50).unwrap()),
        ["g:f006", "g:f007", "g:f008", "g:f009"]
    );
    assert_eq!(
        names(s.describe_metric_filters(R, None, "", Some(("Errors", "App")), 0, 50).unwrap()),
        ["g:f", "h:f"]
    );
    assert_eq!(
        names(s.describe_metric_filters(R, None, "", Some(("Errors", "App")), 1, 50).unwrap()),
        ["h:f"]
    );
    assert!(
        s.describe_metric_filters(R, None, "", Some(("Errors", "Other")), 0, 50)
            .unwrap()
            .is_empty()
    );

    assert!(matches!(s.delete_metric_filter(R, "g", "nope"), Err(LogStoreError::NotFound(_))));
    s.delete_metric_filter(R, "g", "f").unwrap();
    assert_eq!(s.metric_filter_count(R, "g").unwrap(), 99);
    // Deleting the group deletes its filters: a new group of that name starts with none.
    s.delete_group(R, "g").unwrap();
    s.create_group(R, "g", 1, &BTreeMap::new()).unwrap();
    assert_eq!(s.metric_filter_count(R, "g").unwrap(), 0);
}
