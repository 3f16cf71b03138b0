//! The AWS regions Berth serves, and the partition of each: every region botocore's endpoints
//! data lists (`generated`, written by `codegen/gen_regions.py` from
//! `botocore/data/endpoints.json`; never edited by hand).
//!
//! Contract: a region is served exactly when [`lookup`] finds it; its ARNs carry its
//! partition ([`Region::partition`]: `aws`, `aws-cn`, `aws-us-gov`, `aws-iso`...). Names are
//! matched exactly (AWS region names are lower case); the returned `&'static` values let
//! callers key maps by region without allocating.

mod generated;

use generated::{PARTITIONS, REGIONS};

/// One region and the partition it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// e.g. `eu-west-1`.
    pub name: &'static str,
    /// e.g. `aws`, `aws-cn`.
    pub partition: &'static str,
}

/// The region named `name`, or `None` when botocore lists no such region.
pub fn lookup(name: &str) -> Option<Region> {
    REGIONS
        .binary_search_by(|(r, _)| (*r).cmp(name))
        .ok()
        .map(|i| Region { name: REGIONS[i].0, partition: REGIONS[i].1 })
}

/// The partition of `region` (`None`: not a region botocore lists).
pub fn partition_of(region: &str) -> Option<&'static str> {
    lookup(region).map(|r| r.partition)
}

/// Every region, sorted by name.
pub fn all() -> impl Iterator<Item = Region> {
    REGIONS.iter().map(|&(name, partition)| Region { name, partition })
}

/// Every partition's id, in botocore's order (`aws` first).
pub fn partitions() -> impl Iterator<Item = &'static str> {
    PARTITIONS.iter().map(|p| p.0)
}

/// A few regions to name in an error message, one per partition of the commercial and
/// sovereign clouds users meet most.
pub const EXAMPLES: &str = "us-east-1, eu-west-1, ap-southeast-1, cn-north-1, us-gov-west-1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_their_partitions() {
        let cases: &[(&str, Option<&str>)] = &[
            ("us-east-1", Some("aws")),
            ("eu-west-1", Some("aws")),
            ("ap-southeast-1", Some("aws")),
            ("cn-north-1", Some("aws-cn")),
            ("cn-northwest-1", Some("aws-cn")),
            ("us-gov-west-1", Some("aws-us-gov")),
            ("us-gov-east-1", Some("aws-us-gov")),
            ("us-iso-east-1", Some("aws-iso")),
            ("us-isob-east-1", Some("aws-iso-b")),
            ("af-south-1", Some("aws")),
            ("us-west-2", Some("aws")),
            // Not regions: endpoint variants, pseudo-regions, case and junk.
            ("fips-us-east-1", None),
            ("aws-global", None),
            ("US-EAST-1", None),
            ("us-east-1 ", None),
            ("", None),
            ("xx-bogus-1", None),
            ("local", None),
        ];
        for (name, want) in cases {
            assert_eq!(partition_of(name), *want, "{name:?}");
            assert_eq!(lookup(name).map(|r| r.name), want.map(|_| *name), "{name:?}");
        }
    }

    #[test]
    fn the_table_is_sorted_unique_and_covers_every_partition() {
        let names: Vec<_> = all().map(|r| r.name).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(names.len() >= 30, "{} regions", names.len());
        let parts: Vec<_> = partitions().collect();
        assert_eq!(parts[0], "aws");
        for p in ["aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"] {
            assert!(parts.contains(&p), "{p}");
        }
        for r in all() {
            assert!(parts.contains(&r.partition), "{r:?}");
            assert_eq!(lookup(r.name), Some(r));
        }
        for example in EXAMPLES.split(", ") {
            assert!(lookup(example).is_some(), "{example}");
        }
    }
}
