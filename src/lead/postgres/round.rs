//! One round's decisions on top of `plan`: the memory of the servers' plan and of the
//! dispatcher's, and the observation narrowed to the items being planned.

use std::collections::BTreeSet;

use crate::lead::plan::{self, LiveAgent, Memory, Observed};

#[derive(Debug, Default)]
pub(super) struct Memories {
    pub servers: Memory,
    pub dispatcher: Memory,
}

pub(super) fn decide(
    me: &str,
    live: &[LiveAgent],
    items: &[String],
    mine: &BTreeSet<String>,
    others: &BTreeSet<String>,
    memory: &mut Memory,
) -> plan::Plan {
    let item_set: BTreeSet<&String> = items.iter().collect();
    let mine: BTreeSet<String> = mine
        .iter()
        .filter(|i| item_set.contains(i))
        .cloned()
        .collect();
    let others: BTreeSet<String> = others
        .iter()
        .filter(|i| item_set.contains(i))
        .cloned()
        .collect();
    let observed = Observed {
        me,
        live,
        items,
        held_by_me: &mine,
        held_by_others: &others,
    };
    let (plan, next) = plan::plan(&observed, memory);
    *memory = next;
    plan
}
