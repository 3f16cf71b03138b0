//! `berth-lb`: the load balancer data plane (issue #13). Application load balancers (HTTP/1.1
//! and HTTP/2 listeners, rule routing, weighted forwarding, fixed responses, redirects) and
//! network load balancers (TCP listeners) in front of target groups with active health checks,
//! passive ejection, deregistration delay (draining) and slow start.
//!
//! Contract with the control plane (narrow on purpose, so the ELBv2 API and the ECS service
//! integration stay thin):
//! * The control plane turns its ELBv2 records into a [`Snapshot`] (load balancers, listeners,
//!   rules, target groups, targets) and calls [`Lb::apply`] with each new version, from a watch
//!   on the store (level-triggered: every apply is the whole desired state, so missed events
//!   and restarts converge). Validation errors name the field ([`ConfigError`]).
//! * It reads target health back with [`Lb::health`] / [`Lb::group_health`]: ELB's states and
//!   reason codes, what DescribeTargetHealth answers (and what ECS uses to count a service's
//!   task healthy).
//! * [`Lb::listener_addr`] gives the bound address of a listener (for `DNSName` and tests).
//! * [`Lb::request_counts`] gives each target group's HTTP request counter (requests a forward
//!   routed to it, answered or not) with its healthy and registered target counts: what the
//!   control plane publishes as CloudWatch's `AWS/ApplicationELB` `RequestCount` and
//!   `RequestCountPerTarget`.
//!
//! Module map: [`config`] (the snapshot model and its validation), [`routing`] (pure rule
//! matching and redirects), [`health`] (the health state machine and the prober), `group`
//! (a target group at run time: selection, draining, slow start, stickiness), `table` (a
//! listener's compiled, atomically swapped routing table), `proxy` (the HTTP listener), `pool`
//! (keep-alive connections to targets), `tcp` (the TCP listener), `engine` ([`Lb`]).
//!
//! Balancing within a group is round robin (ALB's default), weighted only by the slow-start
//! ramp; least-outstanding-requests is not implemented. Between the groups of a weighted
//! forward, a seeded random draw per request ([`LbOptions::seed`]).
//!
//! Timing (health-check intervals and timeouts, deregistration delay, slow start) runs on
//! tokio's clock, so tests drive it with the paused clock.
#![forbid(unsafe_code)]

pub mod config;
mod engine;
mod group;
pub mod health;
mod pool;
mod proxy;
pub mod routing;
mod table;
mod tcp;

pub use config::{ConfigError, Snapshot};
pub use engine::{Applied, GroupRequests, Lb, LbOptions};
pub use health::{HealthState, Probe, Prober, Reason, TargetHealthReport};
