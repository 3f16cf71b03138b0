//! Evaluation of a compiled tree against one instance (the "Evaluation" rules of the module
//! documentation). Absent means false: a comparison on a subject the instance lacks is false
//! whatever the operator. `and`/`or` short-circuit left to right. Nothing here allocates,
//! parses or compiles: it runs on the scheduler's hot path.

use std::cmp::Ordering;

use super::QuerySubject;
use super::ast::{AttrTest, Cmp, Cond, GroupTest, Node, Operand, StrTest};

impl Node {
    pub(super) fn eval<S: QuerySubject + ?Sized>(&self, s: &S) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|n| n.eval(s)),
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(s)),
            Node::Not(node) => !node.eval(s),
            Node::Cond(cond) => cond.eval(s),
        }
    }
}

impl Cond {
    fn eval<S: QuerySubject + ?Sized>(&self, s: &S) -> bool {
        match self {
            Cond::AgentConnected { if_connected, if_disconnected } => {
                if s.agent_connected() {
                    *if_connected
                } else {
                    *if_disconnected
                }
            }
            Cond::AgentVersion(cmp, version) => match s.agent_version() {
                Some(v) if !v.is_empty() => cmp.holds(compare_versions(v, &version.parts)),
                _ => false,
            },
            Cond::Attribute { name, test } => match test {
                AttrTest::Exists => s.attribute(name).is_some(),
                AttrTest::NotExists => s.attribute(name).is_none(),
                AttrTest::Value(t) => match s.attribute(name) {
                    Some(Some(v)) => t.test(v),
                    _ => false,
                },
                AttrTest::Order(cmp, operand) => match s.attribute(name) {
                    Some(Some(v)) => cmp.holds(operand.compare(v)),
                    _ => false,
                },
            },
            Cond::Ec2InstanceId(t) => s.ec2_instance_id().is_some_and(|v| t.test(v)),
            Cond::RegisteredAt(cmp, ms) => {
                s.registered_at_ms().is_some_and(|v| cmp.holds(v.cmp(ms)))
            }
            Cond::RunningTasksCount(cmp, n) => cmp.holds(u64::from(s.running_tasks_count()).cmp(n)),
            Cond::TaskGroup(GroupTest::Exists) => s.any_task_group(&mut |_| true),
            Cond::TaskGroup(GroupTest::NotExists) => !s.any_task_group(&mut |_| true),
            Cond::TaskGroup(GroupTest::Any(t)) => s.any_task_group(&mut |g| t.test(g)),
        }
    }
}

impl StrTest {
    fn test(&self, v: &str) -> bool {
        match self {
            StrTest::Eq(x) => v == &**x,
            StrTest::Ne(x) => v != &**x,
            StrTest::In(xs) => xs.iter().any(|x| v == &**x),
            StrTest::NotIn(xs) => !xs.iter().any(|x| v == &**x),
            StrTest::Matches(re) => re.is_match(v),
            StrTest::NotMatches(re) => !re.is_match(v),
        }
    }
}

impl Cmp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Cmp::Eq => ord == Ordering::Equal,
            Cmp::Ne => ord != Ordering::Equal,
            Cmp::Gt => ord == Ordering::Greater,
            Cmp::Ge => ord != Ordering::Less,
            Cmp::Lt => ord == Ordering::Less,
            Cmp::Le => ord != Ordering::Greater,
        }
    }
}

impl Operand {
    /// `value` compared with the operand: numerically when both are numbers, else as strings.
    fn compare(&self, value: &str) -> Ordering {
        if let (Some(n), Some(v)) = (self.number, parse_number(value))
            && let Some(ord) = v.partial_cmp(&n)
        {
            return ord;
        }
        value.cmp(&self.text)
    }
}

/// A decimal number (sign, digits, point, exponent); `nan`, `inf` and the like are not.
pub(super) fn parse_number(s: &str) -> Option<f64> {
    if s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        s.parse().ok()
    } else {
        None
    }
}

/// Compares an instance's version string with a parsed version argument, without allocating.
pub(super) fn compare_versions(instance: &str, arg: &[Box<str>]) -> Ordering {
    let mut mine = instance.split('.');
    let mut theirs = arg.iter();
    loop {
        let (a, b) = match (mine.next(), theirs.next()) {
            (None, None) => return Ordering::Equal,
            (a, b) => (a.unwrap_or("0"), b.map_or("0", |b| &**b)),
        };
        let ord = compare_version_parts(a, b);
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

fn compare_version_parts(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if numeric(a) && numeric(b) {
        let a = a.trim_start_matches('0');
        let b = b.trim_start_matches('0');
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}
