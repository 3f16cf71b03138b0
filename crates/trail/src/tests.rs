use super::*;

fn event(i: i64, name: &str, user: &str, read_only: bool, resource: Option<&str>) -> Event {
    Event {
        id: format!("id-{i:04}"),
        time_ms: 1_000_000 + i * 1000,
        region: "us-east-1".into(),
        name: name.into(),
        source: "ecs.amazonaws.com".into(),
        username: Some(user.into()),
        access_key_id: Some(format!("AKIA{user}")),
        read_only,
        resources: resource
            .map(|r| vec![Resource { kind: "AWS::ECS::Cluster".into(), name: r.into() }])
            .unwrap_or_default(),
        record: format!("{{\"eventName\":\"{name}\"}}"),
    }
}

fn query(filter: Option<(Attribute, &str)>, limit: usize) -> Query {
    Query {
        region: "us-east-1".into(),
        filter: filter.map(|(a, v)| (a, v.to_string())),
        start_ms: 0,
        end_ms: i64::MAX,
        limit,
        token: None,
    }
}

fn names(p: &Page) -> Vec<&str> {
    p.events.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn events_are_found_newest_first_by_each_attribute_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let t = Trail::open(&dir.path().join("trail.db")).unwrap();
    t.record(event(1, "CreateCluster", "alice", false, Some("prod")));
    t.record(event(2, "DescribeClusters", "bob", true, Some("prod")));
    t.record(event(3, "DescribeClusters", "alice", true, Some("dev")));
    t.record(event(4, "RunTask", "bob", false, None));
    let mut other = event(5, "RunTask", "bob", false, None);
    other.region = "eu-west-1".into();
    t.record(other);
    t.flush().unwrap();

    let all = t.lookup(&query(None, 50)).unwrap();
    assert_eq!(names(&all), ["id-0004", "id-0003", "id-0002", "id-0001"], "region-scoped");
    assert_eq!(all.next_token, None);
    assert_eq!(all.events[1].resources[0].name, "dev");

    // (filter, expected ids)
    let table: [(Attribute, &str, &[&str]); 9] = [
        (Attribute::EventName, "DescribeClusters", &["id-0003", "id-0002"]),
        (Attribute::Username, "bob", &["id-0004", "id-0002"]),
        (Attribute::ReadOnly, "true", &["id-0003", "id-0002"]),
        (Attribute::ReadOnly, "false", &["id-0004", "id-0001"]),
        (Attribute::ResourceName, "prod", &["id-0002", "id-0001"]),
        (Attribute::ResourceType, "AWS::ECS::Cluster", &["id-0003", "id-0002", "id-0001"]),
        (Attribute::EventId, "id-0003", &["id-0003"]),
        (Attribute::AccessKeyId, "AKIAalice", &["id-0003", "id-0001"]),
        (Attribute::EventSource, "ecr.amazonaws.com", &[]),
    ];
    for (a, v, want) in table {
        assert_eq!(names(&t.lookup(&query(Some((a, v)), 50)).unwrap()), want, "{a:?} = {v}");
    }

    // Pages of two resume strictly after the last event, also among equal times.
    let mut q = query(None, 2);
    let first = t.lookup(&q).unwrap();
    assert_eq!(names(&first), ["id-0004", "id-0003"]);
    q.token = first.next_token.clone();
    let second = t.lookup(&q).unwrap();
    assert_eq!(names(&second), ["id-0002", "id-0001"]);
    assert_eq!(second.next_token, None);

    // The time window is inclusive.
    let mut q = query(None, 50);
    q.start_ms = 1_002_000;
    q.end_ms = 1_003_000;
    assert_eq!(names(&t.lookup(&q).unwrap()), ["id-0003", "id-0002"]);

    q.token = Some("garbage".into());
    assert!(matches!(t.lookup(&q), Err(TrailError::InvalidToken(_))));
}

#[test]
fn equal_times_page_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let t = Trail::open(&dir.path().join("trail.db")).unwrap();
    for i in 0..7 {
        let mut e = event(i, "ListTasks", "alice", true, None);
        e.time_ms = 5_000;
        t.record(e);
    }
    t.flush().unwrap();
    let mut q = query(None, 3);
    let mut seen = Vec::new();
    loop {
        let p = t.lookup(&q).unwrap();
        seen.extend(p.events.iter().map(|e| e.id.clone()));
        match p.next_token {
            Some(tok) => q.token = Some(tok),
            None => break,
        }
    }
    let mut want: Vec<String> = (0..7).map(|i| format!("id-{i:04}")).collect();
    want.reverse();
    assert_eq!(seen, want);
}

#[test]
fn the_sweep_deletes_old_events_and_what_they_named_and_events_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trail.db");
    {
        let t = Trail::open(&path).unwrap();
        t.record(event(1, "CreateCluster", "alice", false, Some("prod")));
        t.record(event(9, "DeleteCluster", "alice", false, Some("prod")));
        t.flush().unwrap();
    }
    let t = Trail::open(&path).unwrap();
    assert_eq!(t.lookup(&query(None, 50)).unwrap().events.len(), 2);
    assert_eq!(t.sweep(1_005_000).unwrap(), 1);
    let left = t.lookup(&query(Some((Attribute::ResourceName, "prod")), 50)).unwrap();
    assert_eq!(names(&left), ["id-0009"]);
}

#[test]
fn a_burst_is_committed_in_few_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let t = Trail::open(&dir.path().join("trail.db")).unwrap();
    for i in 0..2_000 {
        t.record(event(i, "DescribeTasks", "bob", true, None));
    }
    t.flush().unwrap();
    let mut q = query(Some((Attribute::EventName, "DescribeTasks")), 50);
    q.start_ms = 0;
    let p = t.lookup(&q).unwrap();
    assert_eq!(p.events.len(), 50);
    assert_eq!(p.events[0].id, "id-1999");
}
