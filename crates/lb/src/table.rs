//! A listener's compiled routing table: rules sorted by priority with their actions resolved to
//! run-time target groups. Tables are immutable; the engine swaps a listener's table in one
//! atomic pointer store, so a request routes entirely on the table it loaded first.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::config::{Action, Condition, GroupStickiness, Listener, Redirect, RedirectCode};
use crate::group::GroupRt;
use crate::routing::{RequestFacts, rule_matches};

pub(crate) struct Table {
    /// The port clients connected to (X-Forwarded-Port, `#{port}`).
    pub port: u16,
    pub idle_timeout: Duration,
    pub rules: Vec<(Vec<Condition>, Arc<Route>)>,
    pub default: Arc<Route>,
}

pub(crate) enum Route {
    Forward {
        groups: Vec<(Arc<GroupRt>, u32)>,
        total: u32,
        /// `AWSALBTG` target-group stickiness of a weighted forward.
        group_stickiness: Option<Duration>,
    },
    Fixed {
        status: StatusCode,
        content_type: Option<http::HeaderValue>,
        body: Bytes,
    },
    Redirect(Redirect, StatusCode),
}

impl Table {
    pub fn compile(
        l: &Listener,
        port: u16,
        idle_timeout: Duration,
        group: &dyn Fn(&str) -> Option<Arc<GroupRt>>,
    ) -> Table {
        let mut rules: Vec<_> = l.rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        Table {
            port,
            idle_timeout,
            rules: rules
                .into_iter()
                .map(|r| (r.conditions.clone(), Arc::new(compile_actions(&r.actions, group))))
                .collect(),
            default: Arc::new(compile_actions(&l.default_actions, group)),
        }
    }

    /// The listener's default route (a TCP listener has only this one).
    pub fn default_route(&self) -> &Arc<Route> {
        &self.default
    }

    /// The route of the first rule (by priority) whose conditions all match, else the default.
    pub fn route(&self, facts: &RequestFacts<'_>) -> &Arc<Route> {
        self.rules
            .iter()
            .find(|(c, _)| rule_matches(c, facts))
            .map(|(_, r)| r)
            .unwrap_or(&self.default)
    }
}

fn compile_actions(actions: &[Action], group: &dyn Fn(&str) -> Option<Arc<GroupRt>>) -> Route {
    // Snapshot::validate guarantees one action and known groups; the last action is the
    // terminal one (ELB orders authenticate actions before it).
    match actions.last() {
        Some(Action::Forward { target_groups, stickiness }) => {
            let groups: Vec<_> = target_groups
                .iter()
                .filter(|w| w.weight > 0 || target_groups.len() == 1)
                .filter_map(|w| group(&w.target_group_arn).map(|g| (g, w.weight.max(1))))
                .collect();
            let total = groups.iter().map(|g| g.1).sum();
            let group_stickiness = match stickiness {
                Some(GroupStickiness { enabled: true, duration_seconds }) => {
                    Some(Duration::from_secs(*duration_seconds))
                }
                _ => None,
            };
            Route::Forward { groups, total, group_stickiness }
        }
        Some(Action::FixedResponse { status_code, content_type, message_body }) => Route::Fixed {
            status: StatusCode::from_u16(*status_code).unwrap_or(StatusCode::OK),
            content_type: content_type.as_deref().and_then(|c| http::HeaderValue::from_str(c).ok()),
            body: Bytes::from(message_body.clone().unwrap_or_default()),
        },
        Some(Action::Redirect(r)) => Route::Redirect(
            r.clone(),
            match r.status_code {
                RedirectCode::Http301 => StatusCode::MOVED_PERMANENTLY,
                RedirectCode::Http302 => StatusCode::FOUND,
            },
        ),
        None => Route::Fixed {
            status: StatusCode::SERVICE_UNAVAILABLE,
            content_type: None,
            body: Bytes::new(),
        },
    }
}

/// Weighted choice of a forward's group from a random number (see [`crate::engine::Rng`]).
pub(crate) fn weighted(
    groups: &[(Arc<GroupRt>, u32)],
    total: u32,
    r: u64,
) -> Option<&Arc<GroupRt>> {
    if groups.len() == 1 {
        return Some(&groups[0].0);
    }
    if total == 0 {
        return None;
    }
    let mut x = (r % total as u64) as u32;
    for (g, w) in groups {
        if x < *w {
            return Some(g);
        }
        x -= w;
    }
    None
}
