//! Snapshot → record sets (pure), and the lookup a query runs against them.

use std::collections::{BTreeMap, HashMap};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::{Applied, MAX_MULTIVALUE, NEGATIVE_TTL, RecordKind, Routing, Snapshot};

/// The compiled form of a [`Snapshot`]: what queries are answered from.
#[derive(Debug, Default)]
pub struct Table {
    /// Longest origin first, so the first zone containing a name is the closest.
    zones: Vec<ZoneData>,
}

#[derive(Debug)]
struct ZoneData {
    origin: LowerName,
    soa: Record,
    /// Every name that exists in the zone (empty non-terminals have no sets).
    names: HashMap<LowerName, BTreeMap<RecordType, RrSet>>,
}

#[derive(Debug, Default)]
struct RrSet {
    records: Vec<Record>,
    /// How many of `records` an answer carries.
    per_answer: usize,
}

/// What a query gets.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The name is in one of the zones: answered here.
    Authoritative {
        code: ResponseCode,
        answers: Vec<Record>,
        /// The zone's SOA (one record), with NXDOMAIN and empty answers.
        soa: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// Outside every zone: forward.
    Forward,
}

fn parse_name(s: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(s).map_err(|e| e.to_string())?;
    n.set_fqdn(true);
    Ok(n)
}

impl Table {
    /// Compiles `snapshot`. Never fails: names that cannot be DNS names are skipped and
    /// reported. Two zones of the same name (two regions' namespaces) are merged.
    pub fn compile(snapshot: &Snapshot) -> (Table, Applied) {
        let mut applied = Applied::default();
        let mut zones: BTreeMap<LowerName, ZoneData> = BTreeMap::new();
        for zone in &snapshot.zones {
            let origin = match parse_name(&zone.name) {
                Ok(n) if !n.is_root() => n,
                Ok(_) => {
                    applied
                        .skipped
                        .push(format!("zone '{}': the root cannot be a zone", zone.name));
                    continue;
                }
                Err(e) => {
                    applied.skipped.push(format!("zone '{}': {e}", zone.name));
                    continue;
                }
            };
            let key = LowerName::new(&origin);
            let data = zones.entry(key.clone()).or_insert_with(|| ZoneData {
                soa: soa_record(&origin),
                origin: key,
                names: HashMap::new(),
            });
            data.names.entry(data.origin.clone()).or_default();
            for service in &zone.services {
                let name = match Name::from_ascii(&service.name)
                    .map_err(|e| e.to_string())
                    .and_then(|label| label.append_domain(&origin).map_err(|e| e.to_string()))
                {
                    Ok(n) => n,
                    Err(e) => {
                        applied.skipped.push(format!(
                            "service '{}' of zone '{}': {e}",
                            service.name, zone.name
                        ));
                        continue;
                    }
                };
                let per_answer = match service.routing {
                    Routing::Multivalue => MAX_MULTIVALUE,
                    Routing::Weighted => 1,
                };
                data.add_name(&name);
                for config in &service.records {
                    let ttl = config.ttl;
                    for inst in &service.instances {
                        let rdata: Vec<RData> = match config.kind {
                            RecordKind::A => {
                                inst.ipv4.map(|ip| RData::A(A(ip))).into_iter().collect()
                            }
                            RecordKind::Aaaa => {
                                inst.ipv6.map(|ip| RData::AAAA(AAAA(ip))).into_iter().collect()
                            }
                            RecordKind::Cname => match inst.cname.as_deref().map(parse_name) {
                                Some(Ok(target)) => vec![RData::CNAME(CNAME(target))],
                                Some(Err(e)) => {
                                    applied.skipped.push(format!(
                                        "CNAME of instance '{}' of '{name}': {e}",
                                        inst.id
                                    ));
                                    vec![]
                                }
                                None => vec![],
                            },
                            RecordKind::Srv => {
                                let Some(port) = inst.port else { continue };
                                let target = match Name::from_ascii(&inst.id)
                                    .map_err(|e| e.to_string())
                                    .and_then(|l| {
                                        if l.num_labels() != 1 {
                                            return Err("not one DNS label".to_string());
                                        }
                                        l.append_domain(&name).map_err(|e| e.to_string())
                                    }) {
                                    Ok(t) => t,
                                    Err(e) => {
                                        applied.skipped.push(format!(
                                            "SRV of instance '{}' of '{name}': {e}",
                                            inst.id
                                        ));
                                        continue;
                                    }
                                };
                                // The target's own addresses, with the TTL of the SRV set.
                                data.add_name(&target);
                                if let Some(ip) = inst.ipv4 {
                                    data.push(&target, RData::A(A(ip)), ttl, usize::MAX);
                                }
                                if let Some(ip) = inst.ipv6 {
                                    data.push(&target, RData::AAAA(AAAA(ip)), ttl, usize::MAX);
                                }
                                vec![RData::SRV(SRV::new(1, 10, port, target))]
                            }
                        };
                        for r in rdata {
                            data.push(&name, r, ttl, per_answer);
                        }
                    }
                }
            }
        }
        let mut zones: Vec<ZoneData> = zones.into_values().collect();
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin.num_labels()));
        applied.zones = zones.len();
        applied.records = zones
            .iter()
            .map(|z| {
                1 + z
                    .names
                    .values()
                    .flat_map(|s| s.values())
                    .map(|s| s.records.len())
                    .sum::<usize>()
            })
            .sum();
        (Table { zones }, applied)
    }

    /// The origins served, longest first.
    pub fn zones(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.origin.to_string()).collect()
    }

    /// Answers `name`/`qtype`. `turn` rotates which values a set shows when an answer carries
    /// fewer than it has (the server passes a counter).
    pub fn lookup(&self, name: &LowerName, qtype: RecordType, turn: usize) -> Answer {
        let Some(zone) = self.zones.iter().find(|z| z.origin.zone_of(name)) else {
            return Answer::Forward;
        };
        let negative = |code| Answer::Authoritative {
            code,
            answers: vec![],
            soa: vec![zone.soa.clone()],
            additionals: vec![],
        };
        let Some(sets) = zone.names.get(name) else {
            return negative(ResponseCode::NXDomain);
        };
        if *name == zone.origin && matches!(qtype, RecordType::SOA | RecordType::ANY) {
            return Answer::Authoritative {
                code: ResponseCode::NoError,
                answers: vec![zone.soa.clone()],
                soa: vec![],
                additionals: vec![],
            };
        }
        let chosen: Vec<&RrSet> = match (sets.get(&RecordType::CNAME), qtype) {
            // A CNAME answers every type.
            (Some(c), _) => vec![c],
            (None, RecordType::ANY) => sets.values().collect(),
            (None, t) => sets.get(&t).into_iter().collect(),
        };
        let answers: Vec<Record> = chosen.into_iter().flat_map(|s| s.pick(turn)).collect();
        if answers.is_empty() {
            return negative(ResponseCode::NoError);
        }
        let mut additionals = vec![];
        for a in &answers {
            if let RData::SRV(srv) = &a.data {
                let target = LowerName::new(&srv.target);
                if let Some(t) = zone.names.get(&target) {
                    for ty in [RecordType::A, RecordType::AAAA] {
                        if let Some(s) = t.get(&ty) {
                            additionals.extend(s.records.iter().cloned());
                        }
                    }
                }
            }
        }
        Answer::Authoritative { code: ResponseCode::NoError, answers, soa: vec![], additionals }
    }
}

impl RrSet {
    fn pick(&self, turn: usize) -> Vec<Record> {
        let n = self.records.len();
        if n <= self.per_answer {
            return self.records.clone();
        }
        (0..self.per_answer).map(|i| self.records[(turn + i) % n].clone()).collect()
    }
}

impl ZoneData {
    /// Marks `name` and every name between it and the origin as existing.
    fn add_name(&mut self, name: &Name) {
        let mut n = LowerName::new(name);
        while n != self.origin && self.origin.zone_of(&n) {
            self.names.entry(n.clone()).or_default();
            n = n.base_name();
        }
    }

    fn push(&mut self, name: &Name, rdata: RData, ttl: u32, per_answer: usize) {
        let set = self
            .names
            .entry(LowerName::new(name))
            .or_default()
            .entry(rdata.record_type())
            .or_default();
        let record = Record::from_rdata(name.clone(), ttl, rdata);
        if !set.records.iter().any(|r| r.data == record.data) {
            set.records.push(record);
        }
        set.per_answer = per_answer;
    }
}

fn soa_record(origin: &Name) -> Record {
    let mname = Name::from_ascii("ns")
        .and_then(|n| n.append_domain(origin))
        .unwrap_or_else(|_| origin.clone());
    let rname = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(origin))
        .unwrap_or_else(|_| origin.clone());
    let soa = SOA::new(mname, rname, 1, 7200, 900, 1_209_600, NEGATIVE_TTL);
    Record::from_rdata(origin.clone(), NEGATIVE_TTL, RData::SOA(soa))
}
