//! Task sizes: the Fargate table exactly as documented (each listed pair allowed, each
//! neighbour refused) and the size strings ECS accepts.

use super::*;

#[test]
fn fargate_table_documented_pairs_and_neighbours() {
    let documented: Vec<(u32, Vec<u32>)> = vec![
        (256, vec![512, 1024, 2048]),
        (512, (1..=4).map(|g| g * 1024).collect()),
        (1024, (2..=8).map(|g| g * 1024).collect()),
        (2048, (4..=16).map(|g| g * 1024).collect()),
        (4096, (8..=30).map(|g| g * 1024).collect()),
        (8192, (16..=60).step_by(4).map(|g| g * 1024).collect()),
        (16_384, (32..=120).step_by(8).map(|g| g * 1024).collect()),
    ];
    for (cpu, memories) in &documented {
        assert_eq!(&fargate_memory_values(*cpu), memories, "cpu {cpu}");
        for &m in memories {
            assert!(fargate_memory_allowed(*cpu, m), "{cpu}/{m} should be allowed");
        }
        let (lo, hi) = (memories[0], *memories.last().unwrap());
        for m in [lo - 1, lo - 512, hi + 1, hi + 512, hi + 1024, lo + 1] {
            assert!(!fargate_memory_allowed(*cpu, m), "{cpu}/{m} should be refused");
        }
    }
    for cpu in [0, 128, 255, 257, 768, 3072, 32_768] {
        assert!(fargate_memory_values(cpu).is_empty(), "cpu {cpu}");
    }
    assert!(!fargate_memory_allowed(8192, 18_432), "8 vCPU steps by 4 GB");
    assert!(!fargate_memory_allowed(16_384, 36_864), "16 vCPU steps by 8 GB");
    assert!(!fargate_memory_allowed(256, 1536));
}

#[test]
fn fargate_validation_follows_the_table() {
    for (cpu, memory, ok) in [
        ("256", "512", true),
        ("256", "4096", false),
        ("16384", "122880", true),
        ("512", "512", false),
    ] {
        let mut r = fargate();
        r.cpu = Some(cpu.into());
        r.memory = Some(memory.into());
        assert_eq!(validate(&r).is_ok(), ok, "{cpu}/{memory}: {:?}", validate(&r));
    }
    let mut r = fargate();
    r.memory = Some("4096".into());
    assert_eq!(
        validate(&r).unwrap_err().to_string(),
        "No Fargate configuration exists for given values: 256 CPU, 4096 memory. See the Amazon ECS \
         documentation for the valid values."
    );
}

#[test]
fn task_size_strings() {
    for (s, want) in [
        ("1024", Some(1024)),
        (" 256 ", Some(256)),
        ("1 vCPU", Some(1024)),
        ("1 vcpu", Some(1024)),
        ("0.5 vcpu", Some(512)),
        ("0.25 vCPU", Some(256)),
        ("0.125 vCPU", Some(128)),
        ("2vCPU", Some(2048)),
        ("16 VCPU", Some(16_384)),
        ("0.3 vCPU", None),
        ("vCPU", None),
        (".5 vCPU", None),
        ("1. vCPU", None),
        ("-1", None),
        ("1 GB", None),
        ("", None),
        ("abc", None),
    ] {
        assert_eq!(parse_task_cpu(s), want, "cpu {s:?}");
    }
    for (s, want) in [
        ("2048", Some(2048)),
        ("2 GB", Some(2048)),
        ("2GB", Some(2048)),
        ("2 gb", Some(2048)),
        ("0.5 GB", Some(512)),
        ("1.5GB", Some(1536)),
        ("120 GB", Some(122_880)),
        ("2 MB", None),
        ("2 GiB", None),
        ("GB", None),
        ("1 vCPU", None),
        ("99999999999", None),
    ] {
        assert_eq!(parse_task_memory_mib(s), want, "memory {s:?}");
    }
}

/// A request whose JSON is `bytes` long: `ec2()` with one environment variable padding it.
fn padded_to(bytes: usize) -> Req {
    let mut r = ec2();
    let mut env = KeyValuePair { name: Some("PAD".into()), value: Some(String::new()) };
    r.container_definitions.as_mut().unwrap()[0].environment = Some(vec![env.clone()]);
    let base = serde_json::to_vec(&r).unwrap().len();
    env.value = Some("x".repeat(bytes - base));
    r.container_definitions.as_mut().unwrap()[0].environment = Some(vec![env]);
    assert_eq!(serde_json::to_vec(&r).unwrap().len(), bytes);
    r
}

#[test]
fn task_definition_json_is_at_most_64_kib() {
    assert_eq!(MAX_TASK_DEFINITION_BYTES, 65_536);
    validate(&padded_to(MAX_TASK_DEFINITION_BYTES)).unwrap();
    for size in [MAX_TASK_DEFINITION_BYTES + 1, 1024 * 1024] {
        let err = validate(&padded_to(size)).unwrap_err();
        assert!(matches!(err, ModelError::Client { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!(
                "Actual length: '{size}'. Max allowed length is '65536' bytes."
            )),
            "{err}"
        );
    }
    // Multi-byte characters count in bytes: one 3-byte character for an ASCII one tips it over.
    let mut r = padded_to(MAX_TASK_DEFINITION_BYTES - 1);
    let env = &mut r.container_definitions.as_mut().unwrap()[0].environment.as_mut().unwrap()[0];
    env.value.as_mut().unwrap().replace_range(0..1, "日");
    assert!(validate(&r).is_err());
}
