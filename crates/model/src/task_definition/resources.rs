//! Sizes (rules 3, 6 and 8 of the module's list): task `cpu` and `memory` as ECS accepts
//! them (CPU units or vCPUs, MiB or GB, only whole units), the Fargate size table, each
//! container's `cpu`/`memory`/`memoryReservation` bounds, and the containers' sums fitting
//! the task's size. The parsers are total: a string they cannot read exactly is `None`, never
//! rounded, and [`check_task_size`] refuses it.

use super::facts::{Facts, cfield, client};
use super::{MIN_MEMORY_MIB, TASK_CPU_RANGE};
use crate::ModelError;

/// Fargate task sizes: task CPU units → (smallest memory MiB, largest, step). 256 CPU units are
/// listed apart because their memory values (512, 1024, 2048) do not share one step.
const FARGATE_RANGES: &[(u32, u32, u32, u32)] = &[
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16_384, 1024),
    (4096, 8192, 30_720, 1024),
    (8192, 16_384, 61_440, 4096),
    (16_384, 32_768, 122_880, 8192),
];
const FARGATE_256_MEMORY: &[u32] = &[512, 1024, 2048];

/// Whether Fargate offers a task of `cpu` units with `memory_mib` MiB:
///
/// | CPU units | Memory (MiB)                        |
/// |-----------|-------------------------------------|
/// | 256       | 512, 1024, 2048                     |
/// | 512       | 1024 to 4096 in steps of 1024       |
/// | 1024      | 2048 to 8192 in steps of 1024       |
/// | 2048      | 4096 to 16384 in steps of 1024      |
/// | 4096      | 8192 to 30720 in steps of 1024      |
/// | 8192      | 16384 to 61440 in steps of 4096     |
/// | 16384     | 32768 to 122880 in steps of 8192    |
pub fn fargate_memory_allowed(cpu: u32, memory_mib: u32) -> bool {
    fargate_memory_values(cpu).contains(&memory_mib)
}

/// The memory sizes (MiB) Fargate offers for `cpu` units, ascending; empty for a CPU size
/// Fargate does not offer.
pub fn fargate_memory_values(cpu: u32) -> Vec<u32> {
    if cpu == 256 {
        return FARGATE_256_MEMORY.to_vec();
    }
    FARGATE_RANGES
        .iter()
        .filter(|&&(c, ..)| c == cpu)
        .flat_map(|&(_, lo, hi, step)| (lo..=hi).step_by(step as usize))
        .collect()
}

/// Task-level CPU as ECS accepts it: CPU units ("1024") or vCPUs ("1 vCPU", "0.5 vcpu",
/// "2vCPU"), whitespace around ignored. `None` if unparseable or not a whole number of units.
pub fn parse_task_cpu(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Some(n) = parse_whole(t) {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    scaled(lower.strip_suffix("vcpu")?.trim_end(), 1024)
}

/// Task-level memory as ECS accepts it, in MiB: MiB ("2048") or GB ("2 GB", "2GB", "0.5 gb"),
/// whitespace around ignored. `None` if unparseable or not a whole number of MiB.
pub fn parse_task_memory_mib(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Some(n) = parse_whole(t) {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    scaled(lower.strip_suffix("gb")?.trim_end(), 1024)
}

/// A plain unsigned integer ("1024").
fn parse_whole(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `num` ("1", "0.5", "2.25") times `unit`, if that is a whole number fitting in `u32`.
fn scaled(num: &str, unit: u32) -> Option<u32> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if num.contains('.') && (frac.is_empty() || frac.len() > 9) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac_value: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    let denom = 10u64.pow(frac.len() as u32);
    let frac_units = frac_value * u64::from(unit);
    if !frac_units.is_multiple_of(denom) {
        return None;
    }
    let total = int.checked_mul(u64::from(unit))?.checked_add(frac_units / denom)?;
    u32::try_from(total).ok()
}

/// Rule 3: task `cpu` and `memory`, when given, parse and lie in their ranges.
pub(super) fn check_task_size(f: &Facts) -> Result<(), ModelError> {
    if let Some(raw) = f.req.cpu.as_deref() {
        match f.task_cpu {
            Some(cpu) if (TASK_CPU_RANGE.0..=TASK_CPU_RANGE.1).contains(&cpu) => {}
            _ => {
                return Err(client(
                    "cpu",
                    format!(
                        "Invalid 'cpu' setting for task: '{raw}'. Specify CPU units between {} and {} \
                         (for example 1024) or vCPUs (for example 1 vCPU).",
                        TASK_CPU_RANGE.0, TASK_CPU_RANGE.1
                    ),
                ));
            }
        }
    }
    if let Some(raw) = f.req.memory.as_deref() {
        match f.task_memory {
            Some(m) if m >= MIN_MEMORY_MIB => {}
            _ => {
                return Err(client(
                    "memory",
                    format!(
                        "Invalid 'memory' setting for task: '{raw}'. Specify MiB (for example 2048, \
                         at least {MIN_MEMORY_MIB}) or GB (for example 2 GB)."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Rule 6 for container `i`'s `cpu`, `memory` and `memoryReservation`, alone and against
/// the task's memory.
pub(super) fn check_container_resources(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    if let Some(cpu) = c.cpu
        && cpu < 0
    {
        return Err(client(
            cfield(i, "cpu"),
            format!("Invalid 'cpu' setting for container '{name}': must be 0 or greater."),
        ));
    }
    let min = MIN_MEMORY_MIB as i32;
    if let Some(m) = c.memory
        && m < min
    {
        return Err(client(
            cfield(i, "memory"),
            format!("Invalid 'memory' setting for container '{name}': the minimum is {min} MiB."),
        ));
    }
    if let Some(r) = c.memory_reservation
        && r < min
    {
        return Err(client(
            cfield(i, "memoryReservation"),
            format!(
                "Invalid 'memoryReservation' setting for container '{name}': the minimum is {min} MiB."
            ),
        ));
    }
    if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
        && r > m
    {
        return Err(client(
            cfield(i, "memoryReservation"),
            format!(
                "Invalid setting for container '{name}'. 'memoryReservation' must be less than or \
                     equal to 'memory'."
            ),
        ));
    }
    match f.task_memory {
        None if c.memory.is_none() && c.memory_reservation.is_none() => {
            return Err(client(
                cfield(i, "memory"),
                format!(
                    "Invalid setting for container '{name}'. At least one of 'memory' or \
                     'memoryReservation' must be specified."
                ),
            ));
        }
        Some(task) => {
            if let Some(m) = c.memory
                && i64::from(m) > i64::from(task)
            {
                return Err(client(
                    cfield(i, "memory"),
                    format!(
                        "Invalid setting for container '{name}'. 'memory' ({m} MiB) must be less \
                             than or equal to the task memory ({task} MiB)."
                    ),
                ));
            }
        }
        None => {}
    }
    Ok(())
}

/// Rule 8: the containers' cpu and memory reservations fit the task-level sizes.
pub(super) fn check_task_resources(f: &Facts) -> Result<(), ModelError> {
    if let Some(task_cpu) = f.task_cpu {
        let sum: i64 = f.containers.iter().map(|c| i64::from(c.cpu.unwrap_or(0))).sum();
        if sum > i64::from(task_cpu) {
            return Err(client(
                "cpu",
                format!(
                    "Invalid 'cpu' setting for task: the containers' cpu values add up to {sum}, more \
                     than the task cpu ({task_cpu})."
                ),
            ));
        }
    }
    if let Some(task_memory) = f.task_memory {
        let sum: i64 = f
            .containers
            .iter()
            .map(|c| i64::from(c.memory_reservation.or(c.memory).unwrap_or(0)))
            .sum();
        if sum > i64::from(task_memory) {
            return Err(client(
                "memory",
                format!(
                    "Invalid 'memory' setting for task: the containers' memory reservations add up to \
                     {sum} MiB, more than the task memory ({task_memory} MiB)."
                ),
            ));
        }
    }
    Ok(())
}
