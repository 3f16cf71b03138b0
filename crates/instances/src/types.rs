//! The EC2 instance types Berth knows: their real vCPU count and memory, and the capacity an
//! agent-backed instance of the type registers with ECS.
//!
//! Source: Amazon EC2's "Instance types" pages (general purpose, compute optimized, memory
//! optimized: the "Instance size / vCPU / Memory (GiB)" tables) as of 2026. The table is data;
//! a type not in it is refused by name ([`InstanceError::InvalidParameterValue`] naming
//! `InstanceType` and the value), as EC2 refuses a type it does not offer.
//!
//! Capacity ([`InstanceType::capacity`]):
//! * CPU: vCPUs x 1024 units, as the ECS agent registers (`runtime.NumCPU() * 1024`).
//! * Memory: the installed MiB less [`RESERVED_MEMORY_MIB`] (256). The ECS agent registers the
//!   kernel's `MemTotal` less `ECS_RESERVED_MEMORY`; `MemTotal` is a little below the installed
//!   memory and varies with the kernel (ECS's own example: an m4.large, 8192 MiB installed,
//!   registers about 7985). Berth has no kernel of its own to measure, so it takes the
//!   installed memory and reserves the same 256 MiB every Berth agent reserves on a host
//!   (`berth_agent_protocol::RESERVED_MEMORY_MIB`, ECS's documented `ECS_RESERVED_MEMORY=256`
//!   example). UserData's `ECS_RESERVED_MEMORY` replaces the 256 ([`crate::user_data`]).

use serde::{Deserialize, Serialize};

use crate::InstanceError;

/// MiB an agent-backed instance keeps back from its tasks unless its UserData says otherwise.
pub const RESERVED_MEMORY_MIB: u32 = 256;

/// The processor architecture of a type, as the identity document spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

/// One instance type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceType {
    /// `t3.micro`.
    pub name: String,
    pub vcpus: u32,
    /// Installed memory, MiB.
    pub memory_mib: u32,
    pub architecture: Architecture,
}

/// What an instance registers with ECS: CPU units and memory MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu: u32,
    pub memory_mib: u32,
}

impl InstanceType {
    /// The capacity an agent of this type registers, keeping `reserved_mib` back (see the
    /// module docs; [`RESERVED_MEMORY_MIB`] unless the UserData sets `ECS_RESERVED_MEMORY`).
    /// At least 1 MiB is always registered.
    pub fn capacity(&self, reserved_mib: u32) -> Capacity {
        Capacity {
            cpu: self.vcpus * 1024,
            memory_mib: self.memory_mib.saturating_sub(reserved_mib).max(1),
        }
    }
}

/// `(family, architecture, [(size, vCPU, GiB x 2 so half GiB is exact)])`.
type Family = (&'static str, Architecture, &'static [(&'static str, u32, u32)]);

use Architecture::{Arm64, X86_64};

/// Burstable sizes: t3, t3a and t4g share them (2 vCPUs from nano to large).
const T3_SIZES: &[(&str, u32, u32)] = &[
    ("nano", 2, 1),
    ("micro", 2, 2),
    ("small", 2, 4),
    ("medium", 2, 8),
    ("large", 2, 16),
    ("xlarge", 4, 32),
    ("2xlarge", 8, 64),
];
/// t2: one vCPU up to small.
const T2_SIZES: &[(&str, u32, u32)] = &[
    ("nano", 1, 1),
    ("micro", 1, 2),
    ("small", 1, 4),
    ("medium", 2, 8),
    ("large", 2, 16),
    ("xlarge", 4, 32),
    ("2xlarge", 8, 64),
];
/// General purpose (m): 4 GiB per vCPU.
const M_SIZES: &[(&str, u32, u32)] = &[
    ("large", 2, 16),
    ("xlarge", 4, 32),
    ("2xlarge", 8, 64),
    ("4xlarge", 16, 128),
    ("8xlarge", 32, 256),
];
/// Compute optimized (c): 2 GiB per vCPU.
const C_SIZES: &[(&str, u32, u32)] = &[
    ("large", 2, 8),
    ("xlarge", 4, 16),
    ("2xlarge", 8, 32),
    ("4xlarge", 16, 64),
    ("8xlarge", 32, 128),
];
/// Memory optimized (r): 8 GiB per vCPU.
const R_SIZES: &[(&str, u32, u32)] = &[
    ("large", 2, 32),
    ("xlarge", 4, 64),
    ("2xlarge", 8, 128),
    ("4xlarge", 16, 256),
    ("8xlarge", 32, 512),
];

const FAMILIES: &[Family] = &[
    ("t2", X86_64, T2_SIZES),
    ("t3", X86_64, T3_SIZES),
    ("t3a", X86_64, T3_SIZES),
    ("t4g", Arm64, T3_SIZES),
    ("m5", X86_64, M_SIZES),
    ("m5a", X86_64, M_SIZES),
    ("m6i", X86_64, M_SIZES),
    ("m6g", Arm64, M_SIZES),
    ("m7i", X86_64, M_SIZES),
    ("m7g", Arm64, M_SIZES),
    ("c5", X86_64, C_SIZES),
    ("c6i", X86_64, C_SIZES),
    ("c6g", Arm64, C_SIZES),
    ("c7i", X86_64, C_SIZES),
    ("c7g", Arm64, C_SIZES),
    ("r5", X86_64, R_SIZES),
    ("r6i", X86_64, R_SIZES),
    ("r6g", Arm64, R_SIZES),
    ("r7i", X86_64, R_SIZES),
];

/// Every known type, in table order (built once from [`FAMILIES`]).
pub fn all() -> &'static [InstanceType] {
    static TABLE: std::sync::OnceLock<Vec<InstanceType>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        FAMILIES
            .iter()
            .flat_map(|(family, arch, sizes)| {
                sizes.iter().map(move |(size, vcpus, half_gib)| InstanceType {
                    name: format!("{family}.{size}"),
                    vcpus: *vcpus,
                    memory_mib: half_gib * 512,
                    architecture: *arch,
                })
            })
            .collect()
    })
}

/// The type named `name` (`t3.micro`), or `InvalidParameterValue` naming it.
pub fn lookup(name: &str) -> Result<&'static InstanceType, InstanceError> {
    all().iter().find(|t| t.name == name).ok_or_else(|| {
        InstanceError::invalid("InstanceType", format!("Invalid value '{name}' for InstanceType."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_sizes_of_common_types() {
        // (type, vCPU, MiB) from EC2's instance type pages.
        let table = [
            ("t2.nano", 1, 512),
            ("t2.micro", 1, 1024),
            ("t2.2xlarge", 8, 32768),
            ("t3.nano", 2, 512),
            ("t3.micro", 2, 1024),
            ("t3.small", 2, 2048),
            ("t3.medium", 2, 4096),
            ("t3.large", 2, 8192),
            ("t3a.xlarge", 4, 16384),
            ("t4g.2xlarge", 8, 32768),
            ("m5.large", 2, 8192),
            ("m6i.xlarge", 4, 16384),
            ("m7i.4xlarge", 16, 65536),
            ("c5.large", 2, 4096),
            ("c6i.2xlarge", 8, 16384),
            ("c7i.4xlarge", 16, 32768),
            ("r5.large", 2, 16384),
            ("r6i.4xlarge", 16, 131072),
        ];
        for (name, vcpus, mib) in table {
            let t = lookup(name).unwrap();
            assert_eq!((t.name.as_str(), t.vcpus, t.memory_mib), (name, vcpus, mib), "{name}");
        }
        assert_eq!(lookup("t4g.micro").unwrap().architecture, Architecture::Arm64);
        assert_eq!(lookup("m5.large").unwrap().architecture, Architecture::X86_64);
    }

    #[test]
    fn capacity_is_vcpus_times_1024_and_memory_less_the_reserve() {
        let t = lookup("t3.medium").unwrap();
        assert_eq!(t.capacity(RESERVED_MEMORY_MIB), Capacity { cpu: 2048, memory_mib: 3840 });
        assert_eq!(t.capacity(0), Capacity { cpu: 2048, memory_mib: 4096 });
        let nano = lookup("t3.nano").unwrap();
        assert_eq!(nano.capacity(RESERVED_MEMORY_MIB).memory_mib, 256);
        assert_eq!(nano.capacity(10_000).memory_mib, 1, "never registers zero memory");
    }

    #[test]
    fn unknown_types_are_refused_by_name() {
        for bad in ["t3.mega", "x9.large", "", "T3.MICRO", "t3"] {
            let e = lookup(bad).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterValue");
            assert_eq!(e.field(), "InstanceType");
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = all().iter().map(|t| t.name.as_str()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(n >= 90, "{n}");
    }
}
