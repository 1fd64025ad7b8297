//! Who should hold which leadership lock: pure decisions, no IO, no clock. The leader
//! task (`lead::postgres`) observes the `agents` table and PostgreSQL's advisory locks,
//! asks [`plan`] what to claim and what to release, and does it.
//!
//! The lock keys are part of the on-disk contract between agents (every agent of one
//! schema must compute the same key for the same server), so they come from a fixed,
//! documented hash (FNV-1a 64), never from std's `DefaultHasher`, whose output may
//! change between Rust releases.
//!
//! The spread: every agent computes the same balanced assignment from the same inputs
//! (the configured servers and the live agents): each server goes to the live agent
//! with the highest rendezvous score for it that still has room under
//! `share = ceil(servers / live agents)`. An agent claims what is assigned to it and
//! releases what is assigned to another live agent. Two rules keep a server from being
//! left alone, and locks from flapping:
//! - takeover: a server nobody held at this agent's last two rounds is claimed by its
//!   runner-up (the best-scoring live agent other than its assignee), even above the
//!   share: its assignee is dead (its row is still fresh) or cannot reach it. Exactly
//!   one agent is the runner-up, so two agents never claim the same server.
//! - hysteresis: a server taken over that way is kept, not released again, until the
//!   membership changes (an agent appears, goes stale, or reconnects: the `since` of
//!   its row changes). So an assignee that never claims (e.g. a different config) costs
//!   one hand-over per membership, not a lock flapping every round.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The prefix of every lock key's input. Versioned: a new scheme gets a new prefix, so
/// agents of two schemes never mistake each other's locks for their own.
pub const LOCK_NAMESPACE: &str = "keywarden/lock/v1";

/// FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3): fixed and
/// documented, the same in every build and on every platform.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The advisory lock key of `server` in `schema`: FNV-1a 64 of
/// `"keywarden/lock/v1/<schema>/server/<name>"`, its bits read as an `i64` (PostgreSQL's
/// `pg_try_advisory_lock(bigint)`). The schema is part of it, so two fleets in two
/// schemas of one database never contend.
pub fn server_lock_key(schema: &str, server: &str) -> i64 {
    fnv1a64(format!("{LOCK_NAMESPACE}/{schema}/server/{server}").as_bytes()) as i64
}

/// The advisory lock key of the alert dispatcher in `schema`: FNV-1a 64 of
/// `"keywarden/lock/v1/<schema>/alert-dispatcher"` as an `i64`.
pub fn dispatcher_lock_key(schema: &str) -> i64 {
    fnv1a64(format!("{LOCK_NAMESPACE}/{schema}/alert-dispatcher").as_bytes()) as i64
}

/// How well `agent` fits `item` (rendezvous hashing): FNV-1a 64 of `agent NUL item`,
/// finished with splitmix64's mixer so that similar names spread evenly.
pub fn score(agent: &str, item: &str) -> u64 {
    let mut bytes = Vec::with_capacity(agent.len() + item.len() + 1);
    bytes.extend_from_slice(agent.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(item.as_bytes());
    let mut z = fnv1a64(&bytes);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The most any one agent claims of its own accord: ceil(items / agents).
pub fn share(items: usize, agents: usize) -> usize {
    items.div_ceil(agents.max(1))
}

/// An agent whose row in `agents` was renewed recently enough to count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LiveAgent {
    pub name: String,
    /// When its current connection began (a reconnect changes it).
    pub since: DateTime<Utc>,
}

/// `agents` ordered by their score for `item`, best first (ties by name).
fn ranked<'a>(agents: &'a [LiveAgent], item: &str) -> Vec<&'a str> {
    let mut ranked: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    ranked.sort_by(|a, b| score(b, item).cmp(&score(a, item)).then(a.cmp(b)));
    ranked.dedup();
    ranked
}

/// The balanced assignment every agent computes alike: items in name order, each to its
/// best-scoring live agent with fewer than `share` items so far.
pub fn assignment(items: &[String], live: &[LiveAgent]) -> BTreeMap<String, String> {
    let mut names: Vec<&str> = live.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let share = share(items.len(), names.len());
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for item in sorted {
        let chosen = ranked(live, item)
            .into_iter()
            .find(|agent| load.get(agent).copied().unwrap_or(0) < share);
        if let Some(agent) = chosen {
            *load.entry(agent).or_default() += 1;
            out.insert(item.clone(), agent.to_string());
        }
    }
    out
}

/// What this agent sees at one round.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// This agent's name.
    pub me: &'a str,
    /// The live agents (this one included; the caller adds it if its own row is not
    /// visible yet).
    pub live: &'a [LiveAgent],
    /// What there is to lead (configured server names, or the dispatcher alone).
    pub items: &'a [String],
    /// Items whose lock this agent's session holds.
    pub held_by_me: &'a BTreeSet<String>,
    /// Items whose lock another session holds.
    pub held_by_others: &'a BTreeSet<String>,
}

/// What a round remembers for the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Items nobody held at the last round.
    pub free: BTreeSet<String>,
    /// Items held though assigned elsewhere, because their assignee left them free:
    /// kept until the membership changes.
    pub kept: BTreeSet<String>,
    /// The membership the memory belongs to.
    pub membership: Vec<LiveAgent>,
}

/// What to do this round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Locks to try, in order.
    pub claim: Vec<String>,
    /// Locks to give up.
    pub release: Vec<String>,
    /// ceil(items / live agents).
    pub share: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.claim.is_empty() && self.release.is_empty()
    }
}

/// Decide one round; returns the plan and the memory for the next round.
pub fn plan(observed: &Observed<'_>, memory: &Memory) -> (Plan, Memory) {
    let mut membership = observed.live.to_vec();
    membership.sort();
    membership.dedup();
    let same_membership = membership == memory.membership;
    let assigned = assignment(observed.items, &membership);
    let free: BTreeSet<String> = observed
        .items
        .iter()
        .filter(|item| {
            !observed.held_by_me.contains(*item) && !observed.held_by_others.contains(*item)
        })
        .cloned()
        .collect();
    let mut kept: BTreeSet<String> = if same_membership {
        memory
            .kept
            .intersection(observed.held_by_me)
            .cloned()
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut plan = Plan {
        share: share(observed.items.len(), membership.len()),
        ..Plan::default()
    };
    for (item, assignee) in &assigned {
        let mine = observed.held_by_me.contains(item);
        if assignee == observed.me {
            // Held by another (taken over while this agent was away): it is released
            // when the membership changes; trying now would only fail.
            if !mine && !observed.held_by_others.contains(item) {
                plan.claim.push(item.clone());
            }
        } else if mine {
            if !kept.contains(item) {
                plan.release.push(item.clone());
            }
        } else if free.contains(item)
            && memory.free.contains(item)
            && runner_up(&membership, item, assignee) == Some(observed.me)
        {
            plan.claim.push(item.clone());
            kept.insert(item.clone());
        }
    }
    // Held but no longer configured: nothing to lead there.
    plan.release.extend(
        observed
            .held_by_me
            .iter()
            .filter(|item| !assigned.contains_key(*item))
            .cloned(),
    );
    let next = Memory {
        free,
        kept,
        membership,
    };
    (plan, next)
}

/// The best-scoring live agent for `item` other than its assignee.
fn runner_up<'a>(live: &'a [LiveAgent], item: &str, assignee: &str) -> Option<&'a str> {
    ranked(live, item)
        .into_iter()
        .find(|agent| *agent != assignee)
}

/// Which agent holds each configured server's lock, from the advisory locks granted in
/// the database (`(key, holder's application_name)`): keys mapped back to the names
/// that hash to them. Keys of servers not configured here are left out.
pub fn leaders(
    schema: &str,
    servers: &[String],
    granted: &[(i64, String)],
) -> BTreeMap<String, String> {
    let by_key: BTreeMap<i64, &String> = servers
        .iter()
        .map(|server| (server_lock_key(schema, server), server))
        .collect();
    granted
        .iter()
        .filter_map(|(key, holder)| Some(((*by_key.get(key)?).clone(), holder.clone())))
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
