//! Berth's controllers as pure decisions, in the style of the scheduler: a snapshot of what
//! the store holds and the time in, a [`service::Decision`] out. The server reads the
//! snapshot, carries the decision out (placing tasks, stopping tasks, writing the service
//! record with compare-and-set), and runs the controller again: level-triggered, so a lost
//! wake-up, a conflict or a server restart only delays convergence, never corrupts it.
//!
//! ```text
//!  store ──snapshot──▶ service::reconcile (pure) ──Decision──▶ executor (server)
//!    ▲                                                         │ place / stop tasks
//!    └───────────── commits (tasks, indexes, service record) ◀─┘
//! ```
#![forbid(unsafe_code)]

pub mod app_scaling;
pub mod asg;
pub mod managed_scaling;
pub mod service;
pub mod task_sets;
pub mod traffic_shift;
