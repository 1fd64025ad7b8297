use super::*;
use chrono::TimeZone;

fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}")).collect()
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + second, 0).unwrap()
}

/// Agents taking turns on one simulated lock table, as PostgreSQL would grant them.
struct World {
    items: Vec<String>,
    /// item -> agent holding its lock.
    locks: BTreeMap<String, String>,
    agents: Vec<SimAgent>,
}

struct SimAgent {
    name: String,
    since: DateTime<Utc>,
    /// Its process runs rounds.
    acting: bool,
    /// Its row is fresh (others count it live).
    in_table: bool,
    memory: Memory,
}

impl World {
    fn new(items: usize, agents: &[&str]) -> World {
        World {
            items: names("srv", items),
            locks: BTreeMap::new(),
            agents: agents
                .iter()
                .map(|name| SimAgent {
                    name: name.to_string(),
                    since: at(0),
                    acting: true,
                    in_table: true,
                    memory: Memory::default(),
                })
                .collect(),
        }
    }

    fn live(&self) -> Vec<LiveAgent> {
        self.agents
            .iter()
            .filter(|a| a.in_table)
            .map(|a| LiveAgent {
                name: a.name.clone(),
                since: a.since,
            })
            .collect()
    }

    /// One round: every acting agent plans from the same snapshot (so the plans can be
    /// compared), then the plans are carried out one agent after the other.
    fn round(&mut self) -> Vec<(String, Plan)> {
        let live = self.live();
        let mut plans = Vec::new();
        for agent in self.agents.iter_mut().filter(|a| a.acting) {
            let mine: BTreeSet<String> = self
                .locks
                .iter()
                .filter(|(_, holder)| **holder == agent.name)
                .map(|(item, _)| item.clone())
                .collect();
            let others: BTreeSet<String> = self
                .locks
                .iter()
                .filter(|(_, holder)| **holder != agent.name)
                .map(|(item, _)| item.clone())
                .collect();
            let observed = Observed {
                me: &agent.name,
                live: &live,
                items: &self.items,
                held_by_me: &mine,
                held_by_others: &others,
            };
            let (plan, memory) = plan(&observed, &agent.memory);
            agent.memory = memory;
            plans.push((agent.name.clone(), plan));
        }
        let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
        for (agent, plan) in &plans {
            for item in &plan.claim {
                if let Some(other) = claimed.insert(item, agent) {
                    panic!("{item} claimed by {other} and {agent} in one round");
                }
            }
        }
        for (agent, plan) in &plans {
            for item in &plan.release {
                assert_eq!(self.locks.get(item), Some(agent), "released what it held");
                self.locks.remove(item);
            }
            for item in &plan.claim {
                // pg_try_advisory_lock: granted only when nobody holds it.
                self.locks
                    .entry(item.clone())
                    .or_insert_with(|| agent.clone());
            }
        }
        plans
    }

    fn count(&self, agent: &str) -> usize {
        self.locks.values().filter(|h| *h == agent).count()
    }

    fn agent(&mut self, name: &str) -> &mut SimAgent {
        self.agents.iter_mut().find(|a| a.name == name).unwrap()
    }

    /// Kill -9: the process stops, PostgreSQL drops its session's locks; its row stays
    /// fresh for a while.
    fn kill(&mut self, name: &str) {
        self.agent(name).acting = false;
        self.locks.retain(|_, holder| holder != name);
    }
}

#[test]
fn the_lock_key_is_fnv1a_64_of_the_documented_text() {
    // Reference values of FNV-1a 64 (the published test vectors).
    assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
    assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    assert_eq!(
        server_lock_key("keywarden", "fra-1"),
        fnv1a64(b"keywarden/lock/v1/keywarden/server/fra-1") as i64
    );
    assert_eq!(
        dispatcher_lock_key("keywarden"),
        fnv1a64(b"keywarden/lock/v1/keywarden/alert-dispatcher") as i64
    );
    assert_ne!(
        server_lock_key("fleet_a", "fra-1"),
        server_lock_key("fleet_b", "fra-1"),
        "two schemas never contend"
    );
    let keys: BTreeSet<i64> = names("srv", 1000)
        .iter()
        .map(|s| server_lock_key("keywarden", s))
        .collect();
    assert_eq!(keys.len(), 1000, "no collisions among 1000 names");
}

#[test]
fn share_is_the_ceiling() {
    assert_eq!(
        [(20, 2), (20, 3), (20, 1), (1, 2), (0, 2), (5, 0)].map(|(i, a)| share(i, a)),
        [10, 7, 20, 1, 0, 5]
    );
}

#[test]
fn twenty_servers_over_two_agents_split_ten_ten() {
    let mut world = World::new(20, &["agent-a", "agent-b"]);
    world.round();
    assert_eq!((world.count("agent-a"), world.count("agent-b")), (10, 10));
    for (agent, plan) in world.round() {
        assert!(plan.is_empty(), "{agent} is content: {plan:?}");
    }
}

#[test]
fn one_agent_holds_everything() {
    let mut world = World::new(20, &["solo"]);
    let plans = world.round();
    assert_eq!(plans[0].1.claim.len(), 20);
    assert_eq!(world.count("solo"), 20);
    assert!(world.round()[0].1.is_empty());
}

#[test]
fn three_agents_split_seven_seven_six() {
    let mut world = World::new(20, &["a", "b", "c"]);
    world.round();
    let mut counts = vec![world.count("a"), world.count("b"), world.count("c")];
    counts.sort();
    assert_eq!(counts, vec![6, 7, 7]);
    assert_eq!(world.locks.len(), 20);
}

#[test]
fn a_dead_agent_s_servers_go_to_the_survivor_within_one_round_once_it_is_not_live() {
    let mut world = World::new(20, &["agent-a", "agent-b"]);
    world.round();
    world.kill("agent-b");
    world.agent("agent-b").in_table = false;
    world.round();
    assert_eq!(world.count("agent-a"), 20);
}

#[test]
fn a_killed_agent_s_servers_are_taken_over_while_its_row_is_still_fresh() {
    let mut world = World::new(20, &["agent-a", "agent-b"]);
    world.round();
    world.round(); // steady: agent-a last saw agent-b's servers held
    world.kill("agent-b");
    // First round: free, but maybe only for a moment (a reconnect): wait.
    world.round();
    assert_eq!(world.count("agent-a"), 10);
    // Second round: free twice in a row, so the runner-up (the only other) takes them.
    world.round();
    assert_eq!(world.count("agent-a"), 20);
    // Kept, not given back to an agent that does not claim.
    for _ in 0..5 {
        assert!(world.round()[0].1.is_empty());
    }
    // Its row goes stale: a new membership, in which agent-a is assigned everything.
    world.agent("agent-b").in_table = false;
    assert!(world.round()[0].1.is_empty());
    assert_eq!(world.count("agent-a"), 20);
}

#[test]
fn a_newcomer_gets_its_share_from_an_agent_holding_everything() {
    let mut world = World::new(20, &["agent-a", "agent-b"]);
    world.agent("agent-b").acting = false;
    world.agent("agent-b").in_table = false;
    world.round();
    assert_eq!(world.count("agent-a"), 20);
    let joined = world.agent("agent-b");
    joined.acting = true;
    joined.in_table = true;
    joined.since = at(60);
    world.round(); // a releases b's share (b's own claims fail: still held).
    world.round(); // b claims them.
    assert_eq!((world.count("agent-a"), world.count("agent-b")), (10, 10));
    for (agent, plan) in world.round() {
        assert!(plan.is_empty(), "{agent}: {plan:?}");
    }
}

#[test]
fn a_reconnected_agent_gets_back_what_was_taken_over() {
    let mut world = World::new(20, &["agent-a", "agent-b"]);
    world.round();
    world.round();
    world.kill("agent-b");
    world.round();
    world.round();
    assert_eq!(world.count("agent-a"), 20);
    let back = world.agent("agent-b");
    back.acting = true;
    back.since = at(45); // a new connection: a new membership
    world.round();
    world.round();
    assert_eq!((world.count("agent-a"), world.count("agent-b")), (10, 10));
}

#[test]
fn an_assignee_that_never_claims_costs_one_hand_over_not_a_flapping_lock() {
    // agent-b is live and acting but has none of these servers configured: it never
    // claims what agent-a computes as its share.
    let mut world = World::new(20, &["agent-a", "agent-b"]);
    world.agent("agent-b").acting = false;
    let mut lock_operations = 0;
    for _ in 0..30 {
        let plans = world.round();
        lock_operations += plans[0].1.claim.len() + plans[0].1.release.len();
    }
    assert_eq!(world.count("agent-a"), 20);
    // Claim its 10, then the other 10 after they were free for two rounds: 20 claims.
    assert_eq!(lock_operations, 20);
}

#[test]
fn no_server_is_ever_held_twice_or_left_alone_through_joins_deaths_and_returns() {
    let mut world = World::new(23, &["a", "b", "c"]);
    let mut second = 0;
    for step in 0..200 {
        second += 10;
        // A deterministic churn: someone dies, goes stale, comes back.
        let victim = ["a", "b", "c"][step % 3].to_string();
        match step % 17 {
            5 => world.kill(&victim),
            9 => world.agent(&victim).in_table = false,
            13 => {
                let agent = world.agent(&victim);
                if !agent.acting {
                    agent.acting = true;
                    agent.in_table = true;
                    agent.since = at(second);
                }
            }
            _ => {}
        }
        world.round(); // panics when two agents claim one server in a round
    }
    // Everyone back, a few quiet rounds: all held, balanced, nothing to do.
    for agent in &mut world.agents {
        agent.acting = true;
        agent.in_table = true;
    }
    for _ in 0..4 {
        world.round();
    }
    assert_eq!(world.locks.len(), 23);
    let mut counts = vec![world.count("a"), world.count("b"), world.count("c")];
    counts.sort();
    assert_eq!(counts, vec![7, 8, 8]);
    for (agent, plan) in world.round() {
        assert!(plan.is_empty(), "{agent}: {plan:?}");
    }
}

#[test]
fn a_server_removed_from_the_config_is_released() {
    let items = names("srv", 3);
    let live = [LiveAgent {
        name: "a".into(),
        since: at(0),
    }];
    let held: BTreeSet<String> = ["srv-1", "old"].map(String::from).into();
    let observed = Observed {
        me: "a",
        live: &live,
        items: &items,
        held_by_me: &held,
        held_by_others: &BTreeSet::new(),
    };
    let (plan, _) = plan(&observed, &Memory::default());
    assert_eq!(plan.claim, vec!["srv-2".to_string(), "srv-3".to_string()]);
    assert_eq!(plan.release, vec!["old".to_string()]);
}

#[test]
fn the_dispatcher_alone_goes_to_exactly_one_agent() {
    let mut world = World::new(0, &["agent-a", "agent-b"]);
    world.items = vec!["alert-dispatcher".into()];
    world.round();
    assert_eq!(world.locks.len(), 1);
    let holder = world.locks.values().next().unwrap().clone();
    world.kill(&holder);
    world.round();
    world.round();
    assert_eq!(world.locks.len(), 1);
    assert_ne!(world.locks.values().next().unwrap(), &holder);
}

#[test]
fn lock_keys_map_back_to_configured_server_names() {
    let servers = names("srv", 3);
    let granted = vec![
        (server_lock_key("kw", "srv-1"), "agent-a".to_string()),
        (server_lock_key("kw", "srv-3"), "agent-b".to_string()),
        (
            server_lock_key("other_schema", "srv-2"),
            "elsewhere".to_string(),
        ),
        (dispatcher_lock_key("kw"), "agent-a".to_string()),
        (42, "someone else's lock".to_string()),
    ];
    let leaders = leaders("kw", &servers, &granted);
    assert_eq!(
        leaders.into_iter().collect::<Vec<_>>(),
        vec![
            ("srv-1".to_string(), "agent-a".to_string()),
            ("srv-3".to_string(), "agent-b".to_string())
        ]
    );
}
