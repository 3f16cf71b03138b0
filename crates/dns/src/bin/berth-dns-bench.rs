//! `berth-dns-bench`: Berth's DNS data plane alone, for `bench/dns.sh` (issue #17). Serves a
//! generated snapshot (zone `bench.local`, `--services` services `svcN` with `--instances`
//! instances each, A and SRV records, TTL 60) on `--listen`, and writes the same records as a
//! dnsmasq configuration (`--dnsmasq-conf`) and a dnsperf query file (`--queries`: A and SRV
//! of every service, and an unknown name in the zone for every fifth service). Prints `listening ADDR`, then serves until
//! killed. Other names are forwarded to nowhere (SERVFAIL): the benchmark asks none.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use berth_dns::{Dns, Instance, RecordConfig, RecordKind, Routing, Service, Snapshot, Zone};

const ZONE: &str = "bench.local";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let (mut services, mut instances) = (100usize, 3usize);
    let (mut conf, mut queries) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = v()?.parse()?,
            "--services" => services = v()?.parse()?,
            "--instances" => instances = v()?.parse()?,
            "--dnsmasq-conf" => conf = Some(v()?),
            "--queries" => queries = Some(v()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let ip =
        |s: usize, i: usize| Ipv4Addr::new(10, (s / 250) as u8, (s % 250) as u8, (i + 1) as u8);
    let port = |i: usize| 32768 + i as u16;
    let zone = Zone {
        name: ZONE.into(),
        services: (0..services)
            .map(|s| Service {
                name: format!("svc{s}"),
                routing: Routing::Multivalue,
                records: vec![
                    RecordConfig { kind: RecordKind::A, ttl: 60 },
                    RecordConfig { kind: RecordKind::Srv, ttl: 60 },
                ],
                instances: (0..instances)
                    .map(|i| Instance {
                        id: format!("t{i}"),
                        ipv4: Some(ip(s, i)),
                        port: Some(port(i)),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
    };
    if let Some(path) = conf {
        let mut c = String::new();
        for s in 0..services {
            for i in 0..instances {
                let _ = writeln!(c, "host-record=svc{s}.{ZONE},{}", ip(s, i));
                let _ = writeln!(c, "host-record=t{i}.svc{s}.{ZONE},{}", ip(s, i));
                let _ = writeln!(c, "srv-host=svc{s}.{ZONE},t{i}.svc{s}.{ZONE},{},1,10", port(i));
            }
        }
        std::fs::write(path, c)?;
    }
    if let Some(path) = queries {
        let mut q = String::new();
        for s in 0..services {
            let _ = writeln!(q, "svc{s}.{ZONE} A");
            let _ = writeln!(q, "svc{s}.{ZONE} SRV");
            if s % 5 == 0 {
                let _ = writeln!(q, "missing{s}.{ZONE} A");
            }
        }
        std::fs::write(path, q)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let dns = Dns::new(vec![]);
        let applied = dns.apply(&Snapshot { zones: vec![zone] });
        let l = dns.serve(listen).await?;
        println!("listening {} ({} records)", l.local_addr(), applied.records);
        std::future::pending::<()>().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
