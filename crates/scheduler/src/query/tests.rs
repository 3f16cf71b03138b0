//! The cluster query language against a small fleet: every operator in both forms with a true
//! and a false case, the developer guide's examples, the evaluation rules, and errors that
//! point at the offending token; generated and damaged input never panics.

use std::cmp::Ordering;

use super::ast::{DATE_FORMATS, parse_date};
use super::eval::compare_versions;
use super::lexer::Lit;
use super::parser::{OPS, Subject};
use super::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
struct Inst {
    connected: bool,
    version: Option<String>,
    attrs: BTreeMap<String, Option<String>>,
    ec2: Option<String>,
    registered: Option<i64>,
    running: u32,
    groups: Vec<String>,
}

impl QuerySubject for Inst {
    fn agent_connected(&self) -> bool {
        self.connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.version.as_deref()
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attrs.get(name).map(|v| v.as_deref())
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2.as_deref()
    }
    fn registered_at_ms(&self) -> Option<i64> {
        self.registered
    }
    fn running_tasks_count(&self) -> u32 {
        self.running
    }
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.groups.iter().any(|g| f(g))
    }
}

/// 2018-06-18T22:28:28Z
const JUNE_18: i64 = 1_529_360_908_000;
/// 2018-02-12T00:00:00Z
const FEB_12: i64 = 1_518_393_600_000;

fn attrs(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect()
}

/// `a`: connected, t2.small in us-east-1a, tasks of two groups. `b`: disconnected, g2 in
/// us-east-1d, no tasks. `c`: one `database` task, attributes but no values. `bare`:
/// connected and nothing else.
fn fleet() -> BTreeMap<&'static str, Inst> {
    let a = Inst {
        connected: true,
        version: Some("1.14.5".into()),
        attrs: attrs(&[
            ("ecs.instance-type", Some("t2.small")),
            ("ecs.availability-zone", Some("us-east-1a")),
            ("stack", Some("prod")),
            ("cpu", Some("4")),
            ("gpu", None),
        ]),
        ec2: Some("i-abcd1234".into()),
        registered: Some(JUNE_18),
        running: 1,
        groups: vec!["service:production".into(), "database".into()],
    };
    let b = Inst {
        connected: false,
        version: Some("1.14.10".into()),
        attrs: attrs(&[
            ("ecs.instance-type", Some("g2.2xlarge")),
            ("ecs.availability-zone", Some("us-east-1d")),
            ("stack", Some("dev")),
            ("cpu", Some("16")),
        ]),
        ec2: Some("i-wxyx7890".into()),
        registered: Some(FEB_12),
        running: 0,
        groups: vec![],
    };
    let c = Inst {
        connected: true,
        version: Some("1.14".into()),
        attrs: attrs(&[("stack", None), ("cpu", None)]),
        ec2: None,
        registered: Some(FEB_12 + 1),
        running: 3,
        groups: vec!["database".into()],
    };
    let bare = Inst { connected: true, ..Inst::default() };
    BTreeMap::from([("a", a), ("b", b), ("c", c), ("bare", bare)])
}

fn word_form(symbol: &str) -> &'static str {
    OPS.iter().find(|(_, s, _)| *s == symbol).map(|(_, _, w)| *w).expect("known operator")
}

/// (subject, operator symbol, argument, instance, expected): each case runs with the
/// symbol and with the word form of the operator.
#[rustfmt::skip]
const OPERATOR_CASES: &[(&str, &str, &str, &str, bool)] = &[
    // agentConnected
    ("agentConnected", "==", "true", "a", true),
    ("agentConnected", "==", "TRUE", "b", false),
    ("agentConnected", "==", "false", "b", true),
    ("agentConnected", "!=", "true", "b", true),
    ("agentConnected", "!=", "True", "a", false),
    ("agentConnected", "in", "[true]", "a", true),
    ("agentConnected", "in", "[true]", "b", false),
    ("agentConnected", "in", "[false, TRUE]", "b", true),
    ("agentConnected", "!in", "[false]", "a", true),
    ("agentConnected", "!in", "[false]", "b", false),
    ("agentConnected", "=~", "t.*", "a", true),
    ("agentConnected", "=~", "t.*", "b", false),
    ("agentConnected", "=~", "rue", "a", false),
    ("agentConnected", "!~", "t.*", "b", true),
    ("agentConnected", "!~", "t.*", "a", false),
    // agentVersion
    ("agentVersion", "==", "1.14.5", "a", true),
    ("agentVersion", "==", "1.14.5.0", "a", true),
    ("agentVersion", "==", "1.14.0", "c", true),
    ("agentVersion", "==", "1.14.5", "b", false),
    ("agentVersion", "!=", "1.14.5", "b", true),
    ("agentVersion", "!=", "1.14.5", "a", false),
    ("agentVersion", "!=", "1.14.5", "bare", false),
    ("agentVersion", ">", "1.14.5", "b", true),
    ("agentVersion", ">", "1.14.5", "a", false),
    ("agentVersion", ">=", "1.14.5", "a", true),
    ("agentVersion", ">=", "1.14.6", "a", false),
    ("agentVersion", "<", "1.14.10", "a", true),
    ("agentVersion", "<", "1.14.5", "a", false),
    ("agentVersion", "<", "2", "bare", false),
    ("agentVersion", "<=", "1.14.5", "a", true),
    ("agentVersion", "<=", "1.14.9", "b", false),
    // ec2InstanceId
    ("ec2InstanceId", "==", "i-abcd1234", "a", true),
    ("ec2InstanceId", "==", "i-abcd1234", "b", false),
    ("ec2InstanceId", "==", "i-abcd1234", "bare", false),
    ("ec2InstanceId", "!=", "i-abcd1234", "b", true),
    ("ec2InstanceId", "!=", "i-abcd1234", "a", false),
    ("ec2InstanceId", "!=", "i-abcd1234", "bare", false),
    ("ec2InstanceId", "in", "['i-abcd1234', 'i-wxyx7890']", "b", true),
    ("ec2InstanceId", "in", "[i-abcd1234]", "b", false),
    ("ec2InstanceId", "in", "[i-abcd1234]", "bare", false),
    ("ec2InstanceId", "!in", "[i-abcd1234]", "b", true),
    ("ec2InstanceId", "!in", "[i-abcd1234]", "a", false),
    ("ec2InstanceId", "!in", "[i-abcd1234]", "bare", false),
    ("ec2InstanceId", "=~", "i-ab.*", "a", true),
    ("ec2InstanceId", "=~", "ab.*", "a", false),
    ("ec2InstanceId", "!~", "i-ab.*", "b", true),
    ("ec2InstanceId", "!~", "i-ab.*", "a", false),
    ("ec2InstanceId", "!~", "i-ab.*", "bare", false),
    // registeredAt, all four formats
    ("registeredAt", "==", "2018-06-18T22:28:28+00:00", "a", true),
    ("registeredAt", "==", "2018-06-19T00:28:28+02:00", "a", true),
    ("registeredAt", "==", "2018-06-18T22:28:28Z", "a", true),
    ("registeredAt", "==", "2018-06-18T22:28:28", "a", true),
    ("registeredAt", "==", "'2018-06-18T22:28:28.000Z'", "a", true),
    ("registeredAt", "==", "2018-02-12", "b", true),
    ("registeredAt", "==", "2018-02-12", "c", false),
    ("registeredAt", "!=", "2018-02-12", "c", true),
    ("registeredAt", "!=", "2018-02-12", "b", false),
    ("registeredAt", "!=", "2018-02-12", "bare", false),
    ("registeredAt", ">", "2018-06-18", "a", true),
    ("registeredAt", ">", "2018-06-18T22:28:28Z", "a", false),
    ("registeredAt", ">=", "2018-06-18T22:28:28Z", "a", true),
    ("registeredAt", ">=", "2018-06-18T22:28:29", "a", false),
    ("registeredAt", "<", "2018-02-13", "b", true),
    ("registeredAt", "<", "2018-02-13", "a", false),
    ("registeredAt", "<", "2018-02-13", "bare", false),
    ("registeredAt", "<=", "2018-02-12T00:00:00Z", "b", true),
    ("registeredAt", "<=", "2018-02-12T00:00:00Z", "c", false),
    // runningTasksCount
    ("runningTasksCount", "==", "1", "a", true),
    ("runningTasksCount", "==", "1", "b", false),
    ("runningTasksCount", "!=", "1", "b", true),
    ("runningTasksCount", "!=", "1", "a", false),
    ("runningTasksCount", ">", "0", "a", true),
    ("runningTasksCount", ">", "1", "a", false),
    ("runningTasksCount", ">=", "3", "c", true),
    ("runningTasksCount", ">=", "4", "c", false),
    ("runningTasksCount", "<", "1", "b", true),
    ("runningTasksCount", "<", "1", "a", false),
    ("runningTasksCount", "<=", "0", "bare", true),
    ("runningTasksCount", "<=", "2", "c", false),
    // task:group, "any" semantics
    ("task:group", "==", "service:production", "a", true),
    ("task:group", "==", "database", "a", true),
    ("task:group", "==", "web", "a", false),
    ("task:group", "==", "database", "b", false),
    ("task:group", "!=", "database", "a", true),
    ("task:group", "!=", "database", "c", false),
    ("task:group", "!=", "database", "b", false),
    ("task:group", "in", "[web, database]", "c", true),
    ("task:group", "in", "[web, 'service:x']", "a", false),
    ("task:group", "in", "[web]", "b", false),
    ("task:group", "!in", "[web]", "a", true),
    ("task:group", "!in", "[database, service:production]", "a", false),
    ("task:group", "!in", "[web]", "b", false),
    ("task:group", "=~", "service:.*", "a", true),
    ("task:group", "=~", "service:.*", "c", false),
    ("task:group", "=~", "data", "c", false),
    ("task:group", "!~", "service:.*", "a", true),
    ("task:group", "!~", "service:.*|database", "a", false),
    ("task:group", "!~", "service:.*", "b", false),
    ("task:group", "exists", "", "a", true),
    ("task:group", "exists", "", "b", false),
    ("task:group", "!exists", "", "b", true),
    ("task:group", "!exists", "", "c", false),
    // attribute:NAME
    ("attribute:ecs.instance-type", "==", "t2.small", "a", true),
    ("attribute:ecs.instance-type", "==", "t2.small", "b", false),
    ("attribute:ecs.instance-type", "==", "t2.small", "bare", false),
    ("attribute:ecs.instance-type", "==", "T2.SMALL", "a", false),
    ("attribute:stack", "!=", "prod", "b", true),
    ("attribute:stack", "!=", "prod", "a", false),
    ("attribute:stack", "!=", "prod", "bare", false),
    ("attribute:stack", "!=", "prod", "c", false),
    ("attribute:gpu", "!=", "x", "a", false),
    ("attribute:gpu", "==", "''", "a", false),
    ("attribute:cpu", ">", "9", "b", true),
    ("attribute:cpu", ">", "9", "a", false),
    ("attribute:cpu", ">", "9", "c", false),
    ("attribute:cpu", ">", "3.5", "a", true),
    ("attribute:cpu", ">=", "4", "a", true),
    ("attribute:cpu", ">=", "4.01", "a", false),
    ("attribute:cpu", "<", "1e1", "a", true),
    ("attribute:cpu", "<", "1e1", "b", false),
    ("attribute:cpu", "<=", "16.0", "b", true),
    ("attribute:cpu", "<=", "15", "b", false),
    ("attribute:stack", ">", "dev", "a", true),
    ("attribute:stack", ">", "dev", "b", false),
    ("attribute:stack", ">=", "dev", "b", true),
    ("attribute:stack", "<", "prod", "b", true),
    ("attribute:stack", "<", "prod", "bare", false),
    ("attribute:cpu", "<", "abc", "b", true),
    ("attribute:gpu", "exists", "", "a", true),
    ("attribute:gpu", "exists", "", "b", false),
    ("attribute:stack", "exists", "", "c", true),
    ("attribute:gpu", "!exists", "", "b", true),
    ("attribute:gpu", "!exists", "", "a", false),
    ("attribute:ecs.availability-zone", "in", "[us-east-1a, us-east-1b]", "a", true),
    ("attribute:ecs.availability-zone", "in", "[us-east-1a, us-east-1b]", "b", false),
    ("attribute:ecs.availability-zone", "in", "[us-east-1a]", "bare", false),
    ("attribute:ecs.availability-zone", "!in", "[us-east-1a, us-east-1b]", "b", true),
    ("attribute:ecs.availability-zone", "!in", "[us-east-1a, us-east-1b]", "a", false),
    ("attribute:ecs.availability-zone", "!in", "[us-east-1a]", "bare", false),
    ("attribute:stack", "!in", "[prod]", "c", false),
    ("attribute:ecs.instance-type", "=~", "g2.*", "b", true),
    ("attribute:ecs.instance-type", "=~", "g2.*", "a", false),
    ("attribute:ecs.instance-type", "=~", "2.*", "b", false),
    ("attribute:ecs.instance-type", "=~", "'t2.(micro|small)'", "a", true),
    ("attribute:ecs.instance-type", "!~", "g2.*", "a", true),
    ("attribute:ecs.instance-type", "!~", "g2.*", "b", false),
    ("attribute:ecs.instance-type", "!~", "g2.*", "bare", false),
    ("attribute:stack", "!~", "p.*", "c", false),
];

#[test]
fn every_operator_in_both_forms() {
    let fleet = fleet();
    let mut ran = 0;
    for &(subject, symbol, arg, inst, expected) in OPERATOR_CASES {
        for op in [symbol, word_form(symbol)] {
            let src = format!("{subject} {op} {arg}");
            let expr = Expr::parse(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(expr.eval(&fleet[inst]), expected, "{src} on {inst}");
            assert_eq!(expr.source(), src);
            ran += 1;
        }
    }
    assert_eq!(ran, OPERATOR_CASES.len() * 2);
}

#[test]
fn every_valid_subject_operator_pair_is_covered() {
    let subjects: [(&str, Subject<'_>); 7] = [
        ("agentConnected", Subject::AgentConnected),
        ("agentVersion", Subject::AgentVersion),
        ("attribute:", Subject::Attribute("x")),
        ("ec2InstanceId", Subject::Ec2InstanceId),
        ("registeredAt", Subject::RegisteredAt),
        ("runningTasksCount", Subject::RunningTasksCount),
        ("task:group", Subject::TaskGroup),
    ];
    for (prefix, subject) in subjects {
        for op in subject.valid_ops() {
            let (symbol, _) = op.forms();
            let cases: Vec<bool> = OPERATOR_CASES
                .iter()
                .filter(|(s, o, ..)| s.starts_with(prefix) && *o == symbol)
                .map(|c| c.4)
                .collect();
            assert!(
                cases.contains(&true) && cases.contains(&false),
                "{prefix} {symbol} needs a true and a false case"
            );
        }
    }
}

#[test]
fn documentation_examples() {
    let fleet = fleet();
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        ("attribute:ecs.instance-type == t2.small", &["a"]),
        ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", &["a"]),
        ("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", &[]),
        ("attribute:ecs.instance-type =~ g2.* or attribute:ecs.availability-zone != us-east-1d", &["a", "b"]),
        ("task:group == service:production", &["a"]),
        ("not(task:group == database)", &["b", "bare"]),
        ("runningTasksCount == 1", &["a"]),
        ("agentVersion < 1.14.5", &["c"]),
        ("registeredAt < 2018-02-13", &["b", "c"]),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", &["a", "b"]),
        ("attribute:stack != prod", &["b"]),
        ("attribute:ecs.instance-type =~ t2.*", &["a"]),
    ];
    for (src, expected) in cases {
        let expr = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let got: Vec<&str> =
            fleet.iter().filter(|(_, i)| expr.eval(*i)).map(|(name, _)| *name).collect();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{src}");
    }
}

#[test]
fn whole_value_regex() {
    let inst = Inst { attrs: attrs(&[("t", Some("xt2.small"))]), ..Inst::default() };
    assert!(!Expr::parse("attribute:t =~ t2.*").unwrap().eval(&inst));
    assert!(Expr::parse("attribute:t =~ .t2.*").unwrap().eval(&inst));
    // Alternation stays inside the anchors.
    assert!(!Expr::parse("attribute:t =~ 'x|xt2'").unwrap().eval(&inst));
    assert!(Expr::parse("attribute:t =~ 'a|xt2.small'").unwrap().eval(&inst));
    // A pattern cannot break out of the anchoring group.
    let e = Expr::parse("attribute:t =~ 'x)|(.*'").unwrap_err();
    assert_eq!(e.position, 15);
    assert!(e.message.contains("invalid regular expression 'x)|(.*'"), "{}", e.message);
    // Flags stay scoped to the pattern.
    assert!(Expr::parse("attribute:t =~ '(?i)XT2.*'").unwrap().eval(&inst));
}

#[test]
fn versions() {
    let cmp = |a: &str, b: &str| {
        let parts: Vec<Box<str>> = b.split('.').map(Box::from).collect();
        compare_versions(a, &parts)
    };
    assert_eq!(cmp("1.14.5", "1.14.10"), Ordering::Less);
    assert_eq!(cmp("1.14.10", "1.14.5"), Ordering::Greater);
    assert_eq!(cmp("1.14", "1.14.0"), Ordering::Equal);
    assert_eq!(cmp("1.14.0.0", "1.14"), Ordering::Equal);
    assert_eq!(cmp("1.014", "1.14"), Ordering::Equal);
    assert_eq!(cmp("1.14.1", "1.14"), Ordering::Greater);
    assert_eq!(cmp("99999999999999999999999.1", "99999999999999999999998.9"), Ordering::Greater);
    assert_eq!(cmp("1.14.5-beta", "1.14.5"), Ordering::Greater);
    assert_eq!(cmp("1.x", "1.y"), Ordering::Less);
    assert_eq!(cmp("2", "10"), Ordering::Less);
    let empty = Inst { version: Some(String::new()), ..Inst::default() };
    assert!(!Expr::parse("agentVersion != 1.0").unwrap().eval(&empty));
    assert!(!Expr::parse("agentVersion < 1.0").unwrap().eval(&empty));
}

#[test]
fn dates() {
    let ms = |s: &str| parse_date(&Lit { text: s, pos: 0 });
    assert_eq!(ms("2018-06-18T22:28:28+00:00"), Ok(JUNE_18));
    assert_eq!(ms("2018-06-18T22:28:28Z"), Ok(JUNE_18));
    assert_eq!(ms("2018-06-18T22:28:28"), Ok(JUNE_18));
    assert_eq!(ms("2018-06-18T22:28:28.1239"), Ok(JUNE_18 + 123));
    assert_eq!(ms("2018-06-18"), Ok(JUNE_18 - (22 * 3600 + 28 * 60 + 28) * 1000));
    assert_eq!(ms("1969-12-31T23:59:59.9995Z"), Ok(-1));
    for bad in ["2018-06-18 22:28:28", "18-06-18", "2018-13-01", "yesterday", "2018-06-18T25:00"] {
        let e = ms(bad).unwrap_err();
        assert!(e.message.contains(bad) && e.message.contains(DATE_FORMATS), "{}", e.message);
    }
    let inst = Inst { registered: Some(JUNE_18 + 999), ..Inst::default() };
    assert!(Expr::parse("registeredAt > 2018-06-18T22:28:28Z").unwrap().eval(&inst));
    assert!(!Expr::parse("registeredAt < '2018-06-18T22:28:28.9995Z'").unwrap().eval(&inst));
    assert!(Expr::parse("registeredAt == '2018-06-18T22:28:28.999Z'").unwrap().eval(&inst));
}

/// Atoms `t` (true on the fixture) and `f`, `g` (false).
fn logic(src: &str) -> bool {
    let inst = Inst { attrs: attrs(&[("t", Some("1"))]), ..Inst::default() };
    let src = src
        .replace('T', "attribute:t exists")
        .replace('F', "attribute:f exists")
        .replace('G', "attribute:g exists");
    Expr::parse(&src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&inst)
}

#[test]
fn precedence_and_connectives() {
    #[rustfmt::skip]
    let cases: &[(&str, bool)] = &[
        ("T", true),
        ("F", false),
        ("T or F and G", true),          // T or (F and G)
        ("(T or F) and G", false),
        ("F and G or T", true),          // (F and G) or T
        ("F and (G or T)", false),
        ("not F and G", false),          // (not F) and G
        ("not (F and G)", true),
        ("not(F and G)", true),
        ("not not T", true),
        ("not T or T", true),            // (not T) or T
        ("not (T or T)", false),
        ("T && F || T", true),
        ("T && (F || G)", false),
        ("!F && T", true),
        ("! F", true),
        ("!(T)", false),
        ("!!T", true),
        ("! !T", true),
        ("!(F || G) && !F", true),
        ("T and T and T and F", false),
        ("F or F or F or T", true),
        ("((((T))))", true),
        ("( T )and( T )", true),
        ("(T)or(F)", true),
        ("T and not(F)", true),
        ("T\tand\nT", true),
        ("T &&T", true),
        ("T ||F", true),
    ];
    for &(src, expected) in cases {
        assert_eq!(logic(src), expected, "{src}");
    }
}

#[test]
fn lexing_details() {
    let fleet = fleet();
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool)] = &[
        ("runningTasksCount>0", "a", true),
        ("runningTasksCount>=1", "a", true),
        ("attribute:stack!=dev", "a", true),
        ("attribute:stack==prod", "a", true),
        ("attribute:stack=~p.*", "a", true),
        ("attribute:stack!~p.*", "b", true),
        ("attribute:gpu!exists", "b", true),
        ("task:group!in[web]", "a", true),
        ("task:group in[web,database]", "c", true),
        ("task:group in [ 'web' , \"database\" ]", "c", true),
        ("attribute:stack == \"prod\"", "a", true),
        ("attribute:stack == 'pr od'", "a", false),
        ("attribute:stack equals'prod'", "a", true),
        ("attribute:stack in ['and', or, not]", "a", false),
        ("attribute:stack == 'and'", "a", false),
        ("(attribute:stack==prod)", "a", true),
        ("task:group == service:production", "a", true),
        ("not(task:group == database) and runningTasksCount < 5", "b", true),
    ];
    for &(src, inst, expected) in cases {
        let expr = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(expr.eval(&fleet[inst]), expected, "{src} on {inst}");
    }
}

#[test]
fn quoted_values_may_hold_anything() {
    let inst = Inst { attrs: attrs(&[("n", Some("a (b), [c] and 'd'"))]), ..Inst::default() };
    assert!(Expr::parse(r#"attribute:n == "a (b), [c] and 'd'""#).unwrap().eval(&inst));
    assert!(Expr::parse(r#"attribute:n in ["x", "a (b), [c] and 'd'"]"#).unwrap().eval(&inst));
    let uni = Inst { attrs: attrs(&[("名", Some("値 ✓"))]), ..Inst::default() };
    assert!(Expr::parse("attribute:名 == '値 ✓'").unwrap().eval(&uni));
}

#[test]
fn static_expressions() {
    for (src, expected) in [
        ("attribute:a exists", true),
        ("agentConnected == true and agentVersion > 1.0", true),
        ("ec2InstanceId == i-1 or registeredAt < 2018-01-01", true),
        ("not(task:group == database)", false),
        ("attribute:a exists and runningTasksCount == 0", false),
        ("attribute:a exists or (not (task:group exists))", false),
    ] {
        assert_eq!(Expr::parse(src).unwrap().is_static(), expected, "{src}");
    }
}

/// (expression, error position, text the message must contain)
#[rustfmt::skip]
const ERRORS: &[(&str, usize, &str)] = &[
    ("", 0, "empty expression"),
    ("   \t\n", 0, "empty expression"),
    ("attribute:ecs.instance-type equal t2.small", 28,
     "expected an operator after subject 'attribute:ecs.instance-type', found 'equal'"),
    ("attribute:ecs.instance-type", 27, "found end of expression"),
    ("attribute:x = y", 12, "did you mean '=='?"),
    ("attribute:x and y", 12, "found 'and'"),
    ("attribute:x == a and", 17, "unexpected 'and' at end of expression"),
    ("attribute:x == a or  ", 17, "unexpected 'or' at end of expression"),
    ("attribute:x == a &&", 17, "unexpected '&&' at end of expression"),
    ("attribute:x == a and )", 21, "expected a condition after 'and', found ')'"),
    ("not", 0, "unexpected 'not' at end of expression"),
    ("attribute:x exists and !", 23, "unexpected '!' at end of expression"),
    ("and attribute:x exists", 0, "expected a condition, found 'and'"),
    ("|| attribute:x exists", 0, "expected a condition, found '||'"),
    ("(attribute:x exists", 0, "unbalanced parenthesis"),
    ("((((", 3, "unbalanced parenthesis"),
    ("attribute:x exists)", 18, "unbalanced parenthesis: ')' has no matching '('"),
    ("()", 1, "empty parentheses"),
    (")", 0, "expected a condition, found ')'"),
    ("(attribute:x exists attribute:y exists)", 20, "expected 'and', 'or' or ')', found 'attribute:y'"),
    ("attribute:x exists attribute:y exists", 19, "expected 'and', 'or' or end of expression, found 'attribute:y'"),
    ("attribute:x exists AND attribute:y exists", 19, "keywords are lowercase"),
    ("NOT attribute:x exists", 0, "unknown subject 'NOT' (keywords are lowercase"),
    ("instanceType == t2", 0, "unknown subject 'instanceType'"),
    ("instanceType == t2", 0, "valid subjects: agentConnected, agentVersion, attribute:NAME"),
    ("taskGroup == x", 0, "unknown subject 'taskGroup'"),
    ("agentconnected == true", 0, "subjects are case-sensitive: 'agentConnected'"),
    ("Attribute:x exists", 0, "subjects are case-sensitive: 'attribute:'"),
    ("attribute: exists", 0, "expected an attribute name after 'attribute:'"),
    ("== x", 0, "expected a condition, found '=='"),
    ("!= x", 0, "expected a condition, found '!='"),
    ("'attribute:x' exists", 0, "expected a subject, found the quoted string ''attribute:x''"),
    ("runningTasksCount in [1]", 18, "operator 'in' is not valid for subject 'runningTasksCount'"),
    ("runningTasksCount matches 1", 18, "valid operators: == (equals), != (not_equals), > (greater_than)"),
    ("ec2InstanceId > i-1", 14, "operator '>' is not valid for subject 'ec2InstanceId'"),
    ("ec2InstanceId exists", 14, "operator 'exists' is not valid for subject 'ec2InstanceId'"),
    ("agentConnected >= true", 15, "operator '>=' is not valid for subject 'agentConnected'"),
    ("agentVersion =~ 1.*", 13, "operator '=~' is not valid for subject 'agentVersion'"),
    ("registeredAt not_in [x]", 13, "operator 'not_in' is not valid for subject 'registeredAt'"),
    ("task:group < x", 11, "operator '<' is not valid for subject 'task:group'"),
    ("task:group ==! x", 11, "found '==!'"),
    ("task:group === x", 11, "found '==='"),
    ("attribute:x ==", 14, "expected a value after '==', found end of expression"),
    ("attribute:x == )", 15, "expected a value after '==', found ')'"),
    ("attribute:x == (a)", 15, "quote values that contain parentheses"),
    ("attribute:x == and", 15, "found 'and' (quote it"),
    ("attribute:x == [a]", 15, "operator '==' takes a single value, found a list"),
    ("attribute:x in a", 15, "operator 'in' takes a list such as [a, b], found 'a'"),
    ("attribute:x not_in", 18, "operator 'not_in' takes a list such as [a, b], found end of expression"),
    ("attribute:x in []", 16, "empty list"),
    ("attribute:x in [a,]", 18, "trailing comma in list"),
    ("attribute:x in [a b]", 18, "expected ',' or ']' in list, found 'b'"),
    ("attribute:x in [a, (b)]", 19, "expected a value in list, found '('"),
    ("attribute:x in [a, [b]]", 19, "expected a value in list, found '['"),
    ("attribute:x in [a, b", 15, "unclosed '['"),
    ("attribute:x == 'abc", 15, "unclosed quote: ' is never closed"),
    ("attribute:x in [\"abc]", 16, "unclosed quote: \" is never closed"),
    ("attribute:x exists x", 19, "found 'x'"),
    ("attribute:x =~ '('", 15, "invalid regular expression '('"),
    ("attribute:x =~ a(", 15, "quote values"),
    ("attribute:x =~ '(?<=a)b'", 15, "invalid regular expression"),
    ("agentConnected == yes", 18, "agentConnected compares with true or false, found 'yes'"),
    ("agentConnected in [true, 1]", 25, "found '1'"),
    ("agentVersion > 1..2", 15, "invalid version '1..2'"),
    ("agentVersion > ''", 15, "invalid version ''"),
    ("runningTasksCount > -1", 20, "non-negative integer, found '-1'"),
    ("runningTasksCount > 1.5", 20, "non-negative integer, found '1.5'"),
    ("runningTasksCount > +1", 20, "non-negative integer, found '+1'"),
    ("runningTasksCount > 99999999999999999999999", 20, "non-negative integer"),
    ("registeredAt > 2018/06/18", 15, "invalid date '2018/06/18' for registeredAt; expected one of"),
    ("attribute:é == 'x' and é", 24, "unknown subject 'é'"),
];

#[test]
fn errors_point_at_the_offending_token() {
    for &(src, position, needle) in ERRORS {
        let e = match Expr::parse(src) {
            Ok(expr) => panic!("{src:?} parsed: {expr:?}"),
            Err(e) => e,
        };
        assert!(e.message.contains(needle), "{src:?}: {:?} lacks {needle:?}", e.message);
        assert_eq!(e.position, position, "{src:?}: {}", e.message);
        assert!(src.is_char_boundary(e.position));
        assert!(e.to_string().contains(&format!("(at character {})", position + 1)));
    }
}

#[test]
fn length_and_depth_limits() {
    let atom = "attribute:x exists";
    let ok = format!("{atom}{}", " ".repeat(MAX_LEN - atom.len()));
    assert!(Expr::parse(&ok).is_ok());
    let long = format!("{ok} ");
    let e = Expr::parse(&long).unwrap_err();
    assert_eq!(e.position, MAX_LEN);
    assert!(e.message.contains("too long"), "{}", e.message);
    // Characters, not bytes.
    let wide = format!("attribute:x == '{}'", "é".repeat(1900));
    assert!(Expr::parse(&wide).is_ok());
    let e = Expr::parse(&"(".repeat(10_000)).unwrap_err();
    assert!(e.message.contains("too long"), "{}", e.message);

    let nested = |n: usize| format!("{}{atom}{}", "(".repeat(n), ")".repeat(n));
    assert!(Expr::parse(&nested(MAX_DEPTH)).is_ok());
    let e = Expr::parse(&nested(MAX_DEPTH + 1)).unwrap_err();
    assert_eq!(e.position, MAX_DEPTH);
    assert!(e.message.contains("nested too deeply"), "{}", e.message);
    let e = Expr::parse(&"(".repeat(1500)).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{}", e.message);
    for prefix in ["not ", "!", "! ", "not("] {
        let deep = format!("{}{atom}", prefix.repeat(MAX_DEPTH + 1));
        let e = Expr::parse(&deep).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{deep}: {}", e.message);
    }
    let ok = format!("{}{atom}", "not ".repeat(MAX_DEPTH));
    // An even number of negations of a false condition.
    assert!(!Expr::parse(&ok).unwrap().eval(&Inst::default()));
    // Depth is nesting, not count: many siblings are fine.
    let wide = vec!["(attribute:x exists)"; 80].join(" or ");
    assert!(Expr::parse(&wide).is_ok());
}

/// A tiny deterministic generator (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const CONDITIONS: &[&str] = &[
    "attribute:x == a",
    "attribute:stack != prod",
    "attribute:cpu > 9",
    "attribute:gpu exists",
    "attribute:ecs.availability-zone not_in [us-east-1a, 'us-east-1b']",
    "attribute:ecs.instance-type =~ g2.*",
    "task:group in [database, web]",
    "task:group !~ 'service:.*'",
    "task:group not_exists",
    "runningTasksCount <= 1",
    "agentVersion >= 1.14.5",
    "agentConnected == true",
    "registeredAt < 2018-03-01",
    "ec2InstanceId matches i-ab.*",
];

/// A random valid expression.
fn generate(rng: &mut Rng, depth: usize, out: &mut String) {
    match rng.below(if depth >= 4 { 1 } else { 5 }) {
        0 | 1 => out.push_str(CONDITIONS[rng.below(CONDITIONS.len())]),
        2 => {
            out.push_str(["not ", "!", "! ", "not"][rng.below(4)]);
            out.push('(');
            generate(rng, depth + 1, out);
            out.push(')');
        }
        3 => {
            out.push('(');
            generate(rng, depth + 1, out);
            out.push(')');
        }
        _ => {
            generate(rng, depth + 1, out);
            out.push_str([" and ", " or ", " && ", " || "][rng.below(4)]);
            generate(rng, depth + 1, out);
        }
    }
}

#[test]
fn generated_expressions_parse_and_evaluate_consistently() {
    let fleet = fleet();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..1_000 {
        let mut src = String::new();
        generate(&mut rng, 0, &mut src);
        let expr = Expr::parse(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let negated = Expr::parse(&format!("not ({src})")).unwrap();
        let doubled = Expr::parse(&format!("({src}) and ({src}) or ({src})")).unwrap();
        for inst in fleet.values() {
            let v = expr.eval(inst);
            assert_eq!(negated.eval(inst), !v, "{src}");
            assert_eq!(doubled.eval(inst), v, "{src}");
        }
    }
}

#[test]
fn never_panics_on_odd_input() {
    const PIECES: &[&str] = &[
        "attribute:x",
        "attribute:",
        "task:group",
        "agentConnected",
        "agentVersion",
        "ec2InstanceId",
        "registeredAt",
        "runningTasksCount",
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        "(",
        ")",
        "[",
        "]",
        ",",
        "'",
        "\"",
        "==",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "=~",
        "!~",
        "!",
        "!in",
        "!exists",
        "in",
        "not_in",
        "exists",
        "not_exists",
        "matches",
        "equals",
        "not",
        "and",
        "or",
        "&&",
        "||",
        "AND",
        "a",
        "t2.*",
        "1",
        "1.14.5",
        "-1",
        "true",
        "2018-06-18",
        "2018-06-18T22:28:28Z",
        "é",
        "日本",
        "\u{0}",
        "\u{200b}",
        "\u{3000}",
        "🦀",
        "=",
        "~",
        "(?",
        ")*",
        "\\",
        "{9999}",
        ".",
        ":",
        "*",
    ];
    let fleet = fleet();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for round in 0..30_000 {
        let src = match round % 3 {
            // Arbitrary characters, biased toward ASCII.
            0 => (0..rng.below(40))
                .map(|_| match rng.below(4) {
                    0 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?'),
                    _ => char::from(b' ' + rng.below(95) as u8),
                })
                .collect::<String>(),
            // Random pieces of the language.
            1 => (0..rng.below(24)).map(|_| PIECES[rng.below(PIECES.len())]).collect(),
            // A valid expression, damaged a little.
            _ => {
                let mut src = String::new();
                generate(&mut rng, 0, &mut src);
                for _ in 0..=rng.below(3) {
                    let boundaries: Vec<usize> =
                        (0..=src.len()).filter(|&i| src.is_char_boundary(i)).collect();
                    let at = boundaries[rng.below(boundaries.len())];
                    if rng.below(2) == 0 {
                        src.insert_str(at, PIECES[rng.below(PIECES.len())]);
                    } else {
                        let end = boundaries[rng.below(boundaries.len())].max(at);
                        src.replace_range(at..end, "");
                    }
                }
                src
            }
        };
        match Expr::parse(&src) {
            Ok(expr) => {
                parsed += 1;
                for inst in fleet.values() {
                    expr.eval(inst);
                }
            }
            Err(e) => {
                assert!(e.position <= src.len(), "{src:?}: {e:?}");
                assert!(src.is_char_boundary(e.position), "{src:?}: {e:?}");
                assert!(!e.message.is_empty());
            }
        }
    }
    // Some damaged expressions still parse, so evaluation is exercised too.
    assert!(parsed > 1_000, "only {parsed} parsed");
    for src in ["'", "\"", "'''", "[", "]", ",", "!", "!!", "&&", "(((()))", "é", "\u{0}"] {
        assert!(Expr::parse(src).is_err(), "{src:?}");
    }
}

#[test]
fn expr_is_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Expr>();
    let e = Expr::parse("attribute:a =~ x.*").unwrap();
    let c = e.clone();
    assert_eq!(c.source(), e.source());
}

/// Each documented form, with a 2-, 3- or 4-byte character (or a quote) inserted at every char
/// boundary: parsing never panics and every error points at a char boundary.
#[test]
fn multi_byte_characters_at_every_offset() {
    let fleet = fleet();
    for base in CONDITIONS.iter().copied().chain([
        "attribute:x == 'a b' and not (task:group in ['x', \"y\"])",
        "attribute:é =~ 日.* || ec2InstanceId != i-𐐷",
    ]) {
        for c in ['é', '日', '𐐷', '\u{3000}', '\'', '"', '[', '!'] {
            for at in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
                let mut src = base.to_string();
                src.insert(at, c);
                match Expr::parse(&src) {
                    Ok(expr) => {
                        for inst in fleet.values() {
                            expr.eval(inst);
                        }
                    }
                    Err(e) => assert!(src.is_char_boundary(e.position), "{src:?}: {e:?}"),
                }
            }
        }
    }
}
