//! ECS's answer to a Describe* that names resources one by one: the resources found, in the
//! order asked, and a `MISSING` failure for each one that is not, naming the ARN given or,
//! for a bare name, the ARN it would have.

use berth_wire::ecs::Failure;

/// Answers collected for one Describe*.
pub struct ByIds<T> {
    pub found: Vec<T>,
    pub failures: Vec<Failure>,
}

impl<T> ByIds<T> {
    pub fn new() -> Self {
        Self { found: Vec::new(), failures: Vec::new() }
    }

    /// Records what `given` resolved to; `arn_of` gives the ARN a bare name would have.
    pub fn record(&mut self, given: &str, found: Option<T>, arn_of: impl FnOnce(&str) -> String) {
        match found {
            Some(t) => self.found.push(t),
            None => self.failures.push(Failure {
                arn: Some(if given.starts_with("arn:") {
                    given.to_string()
                } else {
                    arn_of(given)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_in_order_and_missing_named_by_arn() {
        let mut d = ByIds::new();
        d.record("a", Some(1), |n| format!("arn:x/{n}"));
        d.record("b", None, |n| format!("arn:x/{n}"));
        d.record("arn:given", None, |_| unreachable!("an ARN is named as given"));
        d.record("c", Some(3), |n| format!("arn:x/{n}"));
        assert_eq!(d.found, vec![1, 3]);
        let arns: Vec<_> = d.failures.iter().map(|f| f.arn.clone().unwrap()).collect();
        assert_eq!(arns, vec!["arn:x/b", "arn:given"]);
        assert!(d.failures.iter().all(|f| f.reason.as_deref() == Some("MISSING")));
    }
}
