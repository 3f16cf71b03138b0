//! Berth's DNS data plane (issue #17): the names of Cloud Map's DNS namespaces, answered from a
//! snapshot the control plane hands over, and every other name forwarded to the host's
//! resolvers.
//!
//! ```text
//!  control plane ──Snapshot──▶ Dns::apply ──compile──▶ Table (swapped atomically)
//!                                                          │
//!  client ──UDP/TCP──▶ hickory-server ──▶ Handler ──lookup─┤ inside a zone: answer (AA)
//!                                                          └ elsewhere: forward the query's
//!                                                            bytes to /etc/resolv.conf's servers
//! ```
//!
//! Contract and invariants:
//! * **Level-triggered.** Each [`Dns::apply`] is the whole desired state: namespaces become
//!   zones, services names with their A / AAAA / SRV (and CNAME) record sets and TTL, built
//!   from the instances the snapshot lists (the control plane lists the healthy ones only).
//!   The compiled table replaces the previous one in one atomic swap: a query sees the old
//!   table or the new one, never a mix. Compilation never fails: what cannot be a DNS name is
//!   skipped and reported ([`Applied::skipped`]), the rest is served.
//! * **Names, as Cloud Map makes them.** Service `web` in namespace `example.local` is
//!   `web.example.local`: its A / AAAA sets hold every listed instance's address (MULTIVALUE:
//!   up to [`MAX_MULTIVALUE`] per answer, rotating; WEIGHTED: one per answer, rotating); its
//!   SRV set holds `1 10 PORT ID.web.example.local` per instance with a port, and each such
//!   target name has the instance's A / AAAA records (returned as additional records with the
//!   SRV answer). Names are case-insensitive.
//! * **Inside a zone** (the namespace's name and everything under it) the server is
//!   authoritative: an unknown name is NXDOMAIN, a known name without the asked type is
//!   NOERROR with no answer (both with the zone's SOA in the authority section, TTL
//!   [`NEGATIVE_TTL`]); the apex answers its SOA.
//! * **Outside every zone** the query is forwarded unchanged (same bytes, so EDNS and flags
//!   survive) to the upstream servers, in order, each tried once with a timeout of
//!   [`UPSTREAM_TIMEOUT`]: over UDP (retried over TCP when the answer is truncated) for a UDP
//!   client, over TCP for a TCP client. The upstreams are the `nameserver` lines of
//!   `/etc/resolv.conf` ([`system_upstreams`]; a simple forwarder, not hickory-resolver: it
//!   passes answers through exactly, NXDOMAIN included, and caches nothing). No upstream
//!   answering: SERVFAIL. The listener's own address is never an upstream.
//! * One port serves UDP and TCP ([`Dns::serve`]; port 0 picks one free for both).

mod compile;
mod forward;
mod server;

pub mod client;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use compile::{Answer, Table};
pub use forward::{parse_resolv_conf, system_upstreams};
pub use server::{Dns, Listener};

/// Most addresses one MULTIVALUE answer holds (Route 53's figure).
pub const MAX_MULTIVALUE: usize = 8;
/// TTL of the SOA record sent with NXDOMAIN and empty answers (negative caching).
pub const NEGATIVE_TTL: u32 = 15;
/// How long one upstream server gets to answer a forwarded query.
pub const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The whole desired state of the DNS data plane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub zones: Vec<Zone>,
}

/// A DNS namespace: a zone the server answers for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Zone {
    /// `example.local` (a trailing dot is allowed).
    pub name: String,
    pub services: Vec<Service>,
}

/// A service of a namespace: the name `NAME.ZONE`.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// One or more DNS labels (`web`, or `_web._tcp` as SRV-minded clients want).
    pub name: String,
    pub routing: Routing,
    /// The record types the service publishes, each with its TTL.
    pub records: Vec<RecordConfig>,
    /// The instances to publish (the healthy ones).
    pub instances: Vec<Instance>,
}

/// How many of a record set's values one answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Up to [`MAX_MULTIVALUE`] values.
    Multivalue,
    /// One value.
    Weighted,
}

/// A record type a service publishes, with its TTL in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    pub kind: RecordKind,
    pub ttl: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    A,
    Aaaa,
    Srv,
    Cname,
}

/// One registered instance, as DNS shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Instance {
    /// The instance id: the first label of its SRV target name.
    pub id: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: Option<u16>,
    /// The CNAME target (`AWS_INSTANCE_CNAME`).
    pub cname: Option<String>,
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Zones served.
    pub zones: usize,
    /// Records compiled (all sets, SOA included).
    pub records: usize,
    /// What could not be served, and why (`zone 'a..b': ...`).
    pub skipped: Vec<String>,
}

#[cfg(test)]
mod tests;
