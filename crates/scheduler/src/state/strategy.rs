//! Which eligible instance a task goes to: each placement strategy's key and the chains the
//! indexes answer without scanning (see the crate docs for the keys).
//!
//! * `binpack` on cpu / memory: the instance's remaining cpu / memory; first in a chain, the
//!   view's ordered index gives the smallest remaining amount that fits in O(log n).
//! * `spread` on `instanceId`/`host`: the group's tasks on the instance.
//! * `spread` on `attribute:NAME`: the group's tasks on all instances sharing the value; first
//!   in a chain, values are tried from the least loaded, each through its partition's index.
//! * `random`: [`random_key`], a hash of (seed, task index, position).
//!
//! Invariant: every fast path returns exactly the instance `best_of` would
//! return over all of the view's members, the smallest (key tuple, position); the property
//! tests check this against [`crate::reference`].

use super::{ClusterState, Ctx, View};
use crate::rules::random_key;
use crate::{BinpackField, InstanceStatus, MAX_STRATEGIES, SpreadField, Strategy};

/// A key tuple: one entry per strategy (unused entries 0), compared lexicographically.
type Key = [i64; MAX_STRATEGIES];

impl ClusterState {
    /// Slot `i`'s key under `strategies`.
    fn key(&self, i: u32, strategies: &[Strategy], view: &View, ctx: &Ctx<'_>, ti: u32) -> Key {
        let s = &self.slots[i as usize];
        let mut k = [0i64; MAX_STRATEGIES];
        for (slot, st) in k.iter_mut().zip(strategies) {
            *slot = match st {
                Strategy::Binpack(BinpackField::Cpu) => s.remaining.cpu,
                Strategy::Binpack(BinpackField::Memory) => s.remaining.memory_mib,
                Strategy::Spread(SpreadField::InstanceId) => {
                    i64::from(s.task_groups.get(ctx.group).copied().unwrap_or(0))
                }
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    let p = &view.parts[name];
                    i64::from(p.counts[ctx.group][p.value_of[i as usize] as usize])
                }
                Strategy::Random => random_key(ctx.seed, ti, i),
            };
        }
        k
    }

    /// The eligible slot among `cands` with the smallest (key, position).
    fn best_of(
        &self,
        cands: impl Iterator<Item = u32>,
        strategies: &[Strategy],
        view: &View,
        ctx: &Ctx<'_>,
        ti: u32,
    ) -> Option<u32> {
        let mut best: Option<(Key, u32)> = None;
        for i in cands {
            if !self.fits(i, ctx) {
                continue;
            }
            let k = (self.key(i, strategies, view, ctx, ti), i);
            if best.is_none_or(|b| k < b) {
                best = Some(k);
            }
        }
        best.map(|(_, i)| i)
    }

    /// The slot task `ti` goes to, if any takes it.
    pub(super) fn choose(&self, ctx: &Ctx<'_>, ti: u32) -> Option<u32> {
        let view = &self.views[&ctx.view];
        let strategies = ctx.strategies;
        if !self.indexed {
            let all = (0..self.slots.len() as u32).filter(|&i| {
                let s = &self.slots[i as usize];
                s.status == InstanceStatus::Active && ctx.statics.iter().all(|e| e.eval(s))
            });
            return self.best_of(all, strategies, view, ctx, ti);
        }
        match strategies.first() {
            None => view.members.iter().copied().find(|&i| self.fits(i, ctx)),
            Some(Strategy::Binpack(f)) => {
                let index = match f {
                    BinpackField::Cpu => &view.cpu,
                    BinpackField::Memory => &view.mem,
                };
                let mut it = index.range((ctx.needs.of(*f), 0)..);
                let &(tier, first) = it.by_ref().find(|&&(_, i)| self.fits(i, ctx))?;
                let rest = &strategies[1..];
                if rest.is_empty() {
                    return Some(first);
                }
                // Break the tie among the slots with the same remaining amount.
                let tied = std::iter::once(first)
                    .chain(it.take_while(|&&(v, _)| v == tier).map(|&(_, i)| i));
                self.best_of(tied, rest, view, ctx, ti)
            }
            Some(Strategy::Spread(SpreadField::Attribute(name))) => {
                let p = &view.parts[name];
                let counts = &p.counts[ctx.group];
                let mut values: Vec<u32> = (0..p.members.len() as u32)
                    .filter(|&v| !p.members[v as usize].is_empty())
                    .collect();
                values.sort_unstable_by_key(|&v| (counts[v as usize], v));
                let rest = &strategies[1..];
                for tier in values.chunk_by(|a, b| counts[*a as usize] == counts[*b as usize]) {
                    let pick = match rest {
                        [] => tier
                            .iter()
                            .filter_map(|&v| {
                                p.members[v as usize].iter().copied().find(|&i| self.fits(i, ctx))
                            })
                            .min(),
                        [Strategy::Binpack(f)] => tier
                            .iter()
                            .filter_map(|&v| {
                                let index = match f {
                                    BinpackField::Cpu => &p.cpu[v as usize],
                                    BinpackField::Memory => &p.mem[v as usize],
                                };
                                index
                                    .range((ctx.needs.of(*f), 0)..)
                                    .find(|&&(_, i)| self.fits(i, ctx))
                                    .copied()
                            })
                            .min()
                            .map(|(_, i)| i),
                        _ => self.best_of(
                            tier.iter().flat_map(|&v| p.members[v as usize].iter().copied()),
                            rest,
                            view,
                            ctx,
                            ti,
                        ),
                    };
                    if pick.is_some() {
                        return pick;
                    }
                }
                None
            }
            Some(_) => self.best_of(view.members.iter().copied(), strategies, view, ctx, ti),
        }
    }
}
