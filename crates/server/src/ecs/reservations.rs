//! What a task holds on its container instance: the one place where an instance's
//! `used_cpu`, `used_memory_mib`, `used_ports_*` and `task_groups` change.
//!
//! Invariant: on every stored instance record, each of these is the sum over the instance's
//! tasks that are not yet STOPPED of what they reserve (see
//! `berth_model::records::TaskRecord::reserved_*`). [`reserve`] is applied in the transaction
//! that places a task, [`release`] in the one that records it STOPPED, both with a
//! compare-and-set on the instance record.

use berth_model::records::{ContainerInstanceRecord, TaskRecord};

/// Adds what `task` reserves to its instance's record.
pub fn reserve(inst: &mut ContainerInstanceRecord, task: &TaskRecord) {
    if let Some(g) = task.task.group.as_deref() {
        *inst.task_groups.entry(g.to_string()).or_default() += 1;
    }
    inst.used_cpu += task.reserved_cpu;
    inst.used_memory_mib += task.reserved_memory_mib;
    inst.used_ports_tcp.extend(&task.reserved_ports_tcp);
    inst.used_ports_udp.extend(&task.reserved_ports_udp);
    inst.version += 1;
}

/// Removes what `task` reserved from its instance's record (never below zero).
pub fn release(inst: &mut ContainerInstanceRecord, task: &TaskRecord) {
    inst.used_cpu = (inst.used_cpu - task.reserved_cpu).max(0);
    inst.used_memory_mib = (inst.used_memory_mib - task.reserved_memory_mib).max(0);
    if let Some(g) = task.task.group.as_deref()
        && let Some(n) = inst.task_groups.get_mut(g)
    {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inst.task_groups.remove(g);
        }
    }
    for (used, held) in [
        (&mut inst.used_ports_tcp, &task.reserved_ports_tcp),
        (&mut inst.used_ports_udp, &task.reserved_ports_udp),
    ] {
        for p in held {
            if let Some(i) = used.iter().position(|x| x == p) {
                used.remove(i);
            }
        }
    }
    inst.version += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> ContainerInstanceRecord {
        serde_json::from_value(serde_json::json!({
            "id": "i1", "arn": "arn", "cluster": "c", "ec2InstanceId": "i-1", "status": "ACTIVE",
            "registeredResources": [], "usedCpu": 0, "usedMemoryMib": 0, "usedPortsTcp": [],
            "usedPortsUdp": [], "attributes": [], "tags": [], "registeredAt": 0.0,
            "epoch": 1, "version": 1
        }))
        .expect("a minimal instance record")
    }

    fn task(cpu: i64, mem: i64, tcp: &[u16], group: &str) -> TaskRecord {
        let mut t: TaskRecord = serde_json::from_value(serde_json::json!({
            "id": "t", "cluster": "c", "instanceId": "i1", "task": {},
            "taskDefinition": {}, "reservedCpu": cpu, "reservedMemoryMib": mem,
            "reservedPortsTcp": [], "reservedPortsUdp": [],
        }))
        .expect("a minimal task record");
        t.reserved_ports_tcp = tcp.to_vec();
        t.task.group = Some(group.into());
        t
    }

    #[test]
    fn reserve_then_release_restores_the_instance() {
        let mut inst = instance();
        let a = task(256, 512, &[80], "service:web");
        let b = task(128, 64, &[], "service:web");
        reserve(&mut inst, &a);
        reserve(&mut inst, &b);
        assert_eq!((inst.used_cpu, inst.used_memory_mib), (384, 576));
        assert_eq!(inst.used_ports_tcp, vec![80]);
        assert_eq!(inst.task_groups.get("service:web"), Some(&2));
        release(&mut inst, &a);
        assert_eq!((inst.used_cpu, inst.used_memory_mib), (128, 64));
        assert!(inst.used_ports_tcp.is_empty());
        release(&mut inst, &b);
        assert_eq!((inst.used_cpu, inst.used_memory_mib), (0, 0));
        assert!(inst.task_groups.is_empty(), "an empty group is removed");
        assert_eq!(inst.version, 5, "every change bumps the instance's version");
    }

    #[test]
    fn release_never_goes_negative_and_keeps_other_holders_ports() {
        let mut inst = instance();
        inst.used_ports_tcp = vec![80, 80];
        release(&mut inst, &task(10, 10, &[80], "g"));
        assert_eq!((inst.used_cpu, inst.used_memory_mib), (0, 0));
        assert_eq!(inst.used_ports_tcp, vec![80]);
    }
}
