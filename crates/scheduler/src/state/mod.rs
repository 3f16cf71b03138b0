//! [`ClusterState`]: a cluster's instances with the indexes that make one placement decision
//! cheap at 10,000 instances, updated in place as tasks are placed.
//!
//! Invariants:
//! * A *view* is the set of ACTIVE instances for which a set of static `memberOf` expressions
//!   holds (the empty set: every ACTIVE instance). Its `cpu` / `mem` indexes hold exactly its
//!   members keyed by their current remaining cpu / memory; each of its partitions holds the
//!   same per attribute value. Every placement updates every view the instance belongs to.
//! * A partition's `counts[group][value]` is the number of the group's tasks on ALL instances
//!   (any status) with that value, so spread keys agree with [`crate::reference`].
//! * Placement only ever consumes: remaining resources go down, port sets and group counts go
//!   up. So when a task fits nowhere, every later identical task fits nowhere either.
//!
//! The strategies' keys and the index fast paths that pick among eligible instances live in
//! [`strategy`]; this file keeps the indexes true.

mod strategy;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::rules::{Needs, constraint_refusal, consume_snapshot, resource_refusal};
use crate::{
    Constraint, Expr, InstanceSnapshot, InstanceStatus, MAX_STRATEGIES, Placement, PlacementError,
    PlacementFailure, PlacementRequest, Plan, SpreadField, Strategy,
};

/// A cluster snapshot that [`ClusterState::place`] consumes as it places tasks. Build it once
/// and place many requests against it; after a plan it reflects that plan (a caller whose
/// commit fails drops it and builds a new one from a fresh snapshot).
pub struct ClusterState {
    slots: Vec<InstanceSnapshot>,
    active: usize,
    /// Views by their sorted static expression sources.
    views: HashMap<Vec<String>, View>,
    /// False: every decision scans every instance (the benchmark's baseline).
    indexed: bool,
}

struct View {
    member: Vec<bool>,
    members: Vec<u32>,
    cpu: BTreeSet<(i64, u32)>,
    mem: BTreeSet<(i64, u32)>,
    /// By attribute name.
    parts: HashMap<String, Partition>,
}

struct Partition {
    /// Per slot: its value's id (every slot, members or not).
    value_of: Vec<u32>,
    /// Per value id: the view's members with that value, ascending.
    members: Vec<Vec<u32>>,
    cpu: Vec<BTreeSet<(i64, u32)>>,
    mem: Vec<BTreeSet<(i64, u32)>>,
    /// Per group, per value id: the group's tasks on every slot with that value.
    counts: HashMap<String, Vec<u32>>,
}

/// One request, resolved against the state.
struct Ctx<'r> {
    needs: Needs<'r>,
    group: &'r str,
    /// `memberOf` expressions that read task groups or counts: checked per candidate.
    dynamic: Vec<&'r Expr>,
    /// The others: they define the view.
    statics: Vec<&'r Expr>,
    distinct: bool,
    view: Vec<String>,
    strategies: &'r [Strategy],
    seed: u64,
}

impl ClusterState {
    /// Indexes `instances`, kept in the given order (their position breaks the last tie).
    pub fn new(instances: Vec<InstanceSnapshot>) -> Self {
        let active = instances.iter().filter(|i| i.status == InstanceStatus::Active).count();
        Self { slots: instances, active, views: HashMap::new(), indexed: true }
    }

    /// The same state deciding by scanning every instance for every task, without the
    /// indexes: the benchmark's baseline. Plans are identical.
    #[doc(hidden)]
    pub fn without_indexes(mut self) -> Self {
        self.indexed = false;
        self
    }

    /// The instances as placement has left them.
    pub fn instances(&self) -> &[InstanceSnapshot] {
        &self.slots
    }

    /// Replaces the snapshot in slot `i`: an instance whose record or liveness changed outside
    /// placement (a task stopped, the agent reconnected, an attribute was put). The indexes
    /// are kept when only `running_tasks_count` changed (it is read per candidate, never
    /// indexed); otherwise they are rebuilt by the next placement. Plans afterwards are those
    /// of a state built anew from the same snapshots.
    pub fn set_instance(&mut self, i: usize, snapshot: InstanceSnapshot) {
        let old = &self.slots[i];
        let only_count = old.running_tasks_count != snapshot.running_tasks_count && {
            let mut same = old.clone();
            same.running_tasks_count = snapshot.running_tasks_count;
            same == snapshot
        };
        if *old == snapshot {
            return;
        }
        if old.status == InstanceStatus::Active {
            self.active -= 1;
        }
        if snapshot.status == InstanceStatus::Active {
            self.active += 1;
        }
        self.slots[i] = snapshot;
        if !only_count {
            self.views.clear();
        }
    }

    /// Places `req.count` tasks (or one on each of `req.targets`) and applies the plan to
    /// this state (see the crate docs).
    pub fn place(&mut self, req: &PlacementRequest) -> Result<Plan, PlacementError> {
        if !req.targets.is_empty() {
            return Ok(self.place_on_targets(req));
        }
        if self.active == 0 {
            return Err(PlacementError::NoContainerInstances);
        }
        let mut statics: Vec<String> = Vec::new();
        let mut dynamic = Vec::new();
        let mut static_exprs = Vec::new();
        let mut distinct = false;
        for c in &req.constraints {
            match c {
                Constraint::DistinctInstance => distinct = true,
                Constraint::MemberOf { expression } if expression.is_static() => {
                    statics.push(expression.source().to_string());
                    static_exprs.push(expression);
                }
                Constraint::MemberOf { expression } => dynamic.push(expression),
            }
        }
        statics.sort();
        statics.dedup();
        let strategies = &req.strategies[..req.strategies.len().min(MAX_STRATEGIES)];
        let ctx = Ctx {
            needs: Needs::new(&req.requirements),
            group: &req.group,
            dynamic,
            statics: static_exprs,
            distinct,
            view: statics,
            strategies,
            seed: req.seed,
        };
        self.prepare(req, &ctx);

        let mut plan = Plan::default();
        for task_index in 0..req.count {
            match self.choose(&ctx, task_index) {
                Some(i) => {
                    self.consume(i, &ctx);
                    plan.placements.push(Placement {
                        instance_arn: self.slots[i as usize].arn.clone(),
                        task_index,
                    });
                }
                None => {
                    plan.failures = self.failures(req, &ctx);
                    plan.unplaced = req.count - task_index;
                    break;
                }
            }
        }
        Ok(plan)
    }

    /// StartTask: one task on each target instance, in order, each against what the previous
    /// ones left.
    fn place_on_targets(&mut self, req: &PlacementRequest) -> Plan {
        let ctx = Ctx {
            needs: Needs::new(&req.requirements),
            group: &req.group,
            dynamic: Vec::new(),
            statics: Vec::new(),
            distinct: false,
            view: Vec::new(),
            strategies: &[],
            seed: req.seed,
        };
        let mut plan = Plan::default();
        for (task_index, arn) in req.targets.iter().enumerate() {
            let refusal = match self.slots.iter().position(|s| &s.arn == arn) {
                None => Err("MISSING"),
                Some(i) if self.slots[i].status != InstanceStatus::Active => {
                    Err(self.slots[i].status.as_str())
                }
                Some(i) => match resource_refusal(&self.slots[i], &ctx.needs) {
                    Some(why) => Err(why),
                    None => Ok(i as u32),
                },
            };
            match refusal {
                Ok(i) => {
                    self.consume(i, &ctx);
                    plan.placements.push(Placement {
                        instance_arn: arn.clone(),
                        task_index: task_index as u32,
                    });
                }
                Err(why) => {
                    plan.unplaced += 1;
                    plan.failures
                        .push(PlacementFailure { arn: Some(arn.clone()), reason: why.to_string() });
                }
            }
        }
        plan
    }

    /// Builds the view and partitions the request needs, if not cached.
    fn prepare(&mut self, req: &PlacementRequest, ctx: &Ctx<'_>) {
        if !self.views.contains_key(&ctx.view) {
            if self.views.len() >= 32 {
                self.views.clear();
            }
            let exprs: Vec<&Expr> = req
                .constraints
                .iter()
                .filter_map(|c| match c {
                    Constraint::MemberOf { expression } if expression.is_static() => {
                        Some(expression)
                    }
                    _ => None,
                })
                .collect();
            let member: Vec<bool> = self
                .slots
                .iter()
                .map(|s| s.status == InstanceStatus::Active && exprs.iter().all(|e| e.eval(s)))
                .collect();
            let members: Vec<u32> =
                (0..self.slots.len() as u32).filter(|&i| member[i as usize]).collect();
            let cpu = members.iter().map(|&i| (self.slots[i as usize].remaining.cpu, i)).collect();
            let mem =
                members.iter().map(|&i| (self.slots[i as usize].remaining.memory_mib, i)).collect();
            self.views.insert(
                ctx.view.clone(),
                View { member, members, cpu, mem, parts: HashMap::new() },
            );
        }
        let view = self.views.get_mut(&ctx.view).expect("view just ensured");
        for s in ctx.strategies {
            let Strategy::Spread(SpreadField::Attribute(name)) = s else { continue };
            let part = view.parts.entry(name.clone()).or_insert_with(|| {
                let mut ids: HashMap<Option<&str>, u32> = HashMap::new();
                let value_of: Vec<u32> = self
                    .slots
                    .iter()
                    .map(|s| {
                        let v = s.attributes.get(name).and_then(|v| v.as_deref());
                        let next = ids.len() as u32;
                        *ids.entry(v).or_insert(next)
                    })
                    .collect();
                let n = ids.len();
                let mut p = Partition {
                    value_of,
                    members: vec![Vec::new(); n],
                    cpu: vec![BTreeSet::new(); n],
                    mem: vec![BTreeSet::new(); n],
                    counts: HashMap::new(),
                };
                for &i in &view.members {
                    let v = p.value_of[i as usize] as usize;
                    let s = &self.slots[i as usize];
                    p.members[v].push(i);
                    p.cpu[v].insert((s.remaining.cpu, i));
                    p.mem[v].insert((s.remaining.memory_mib, i));
                }
                p
            });
            if !part.counts.contains_key(ctx.group) {
                let mut counts = vec![0u32; part.members.len()];
                for (i, s) in self.slots.iter().enumerate() {
                    if let Some(&n) = s.task_groups.get(ctx.group) {
                        counts[part.value_of[i] as usize] += n;
                    }
                }
                part.counts.insert(ctx.group.to_string(), counts);
            }
        }
    }

    /// Whether slot `i`, a member of the request's view, takes the task.
    fn fits(&self, i: u32, ctx: &Ctx<'_>) -> bool {
        let s = &self.slots[i as usize];
        resource_refusal(s, &ctx.needs).is_none()
            && ctx.dynamic.iter().all(|e| e.eval(s))
            && !(ctx.distinct && s.task_groups.get(ctx.group).copied().unwrap_or(0) > 0)
    }

    /// Gives slot `i` one task of the request, keeping every index true.
    fn consume(&mut self, i: u32, ctx: &Ctx<'_>) {
        let before = self.slots[i as usize].remaining;
        consume_snapshot(&mut self.slots[i as usize], &ctx.needs, ctx.group);
        let after = self.slots[i as usize].remaining;
        for view in self.views.values_mut() {
            let member = view.member[i as usize];
            if member {
                view.cpu.remove(&(before.cpu, i));
                view.cpu.insert((after.cpu, i));
                view.mem.remove(&(before.memory_mib, i));
                view.mem.insert((after.memory_mib, i));
            }
            for p in view.parts.values_mut() {
                let v = p.value_of[i as usize] as usize;
                if member {
                    p.cpu[v].remove(&(before.cpu, i));
                    p.cpu[v].insert((after.cpu, i));
                    p.mem[v].remove(&(before.memory_mib, i));
                    p.mem[v].insert((after.memory_mib, i));
                }
                if let Some(c) = p.counts.get_mut(ctx.group) {
                    c[v] += 1;
                }
            }
        }
    }

    /// Every ACTIVE instance's first refusal, one per (instance, reason), in order.
    fn failures(&self, req: &PlacementRequest, ctx: &Ctx<'_>) -> Vec<PlacementFailure> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in self.slots.iter().filter(|s| s.status == InstanceStatus::Active) {
            let why = resource_refusal(s, &ctx.needs).or_else(|| {
                req.constraints.iter().find_map(|c| constraint_refusal(s, c, ctx.group))
            });
            if let Some(why) = why
                && seen.insert((s.arn.as_str(), why))
            {
                out.push(PlacementFailure { arn: Some(s.arn.clone()), reason: why.to_string() });
            }
        }
        out
    }
}
