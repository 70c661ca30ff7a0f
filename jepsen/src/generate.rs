//! Seeded, deterministic generators of linearizable histories, for tests and benchmarks.
//!
//! [`simulate`] runs clients against a linearizable store: each client alternates invoke, take
//! effect (the store executes the operation atomically: the linearization point) and complete,
//! and a seeded random scheduler interleaves the three steps of all clients, so operations overlap
//! as they would against a real server. With `unknown_per_million`, some operations end as
//! [`Outcome::Info`] (half of them before taking effect, half after), and the client continues as
//! a new process, as Jepsen does.

use crate::history::{History, OpId, Outcome};
use crate::model::{KvInput, KvOutput};

/// A small seeded generator (splitmix64); deterministic across platforms.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.state;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// True with probability `per_million` / 1,000,000.
    pub fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(per_million)
    }
}

/// Shape of a simulated run.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Seed of every random choice.
    pub seed: u64,
    /// Operations to invoke in total.
    pub operations: usize,
    /// Concurrent clients (each with at most one pending operation).
    pub clients: usize,
    /// Chance, per million operations, that an operation ends with an unknown outcome.
    pub unknown_per_million: u32,
}

enum Client<I, O> {
    Idle,
    Invoked { id: OpId, input: I },
    Applied { id: OpId, output: O },
}

/// Runs `workload` against a linearizable store: `next_input` draws an operation, `execute`
/// applies it to `state` atomically and returns its output.
pub fn simulate<S, I: Clone, O>(
    workload: &Workload,
    state: &mut S,
    mut next_input: impl FnMut(&mut Rng, u64) -> I,
    mut execute: impl FnMut(&mut S, &I) -> O,
) -> History<I, O> {
    assert!(workload.clients > 0, "a workload needs clients");
    let mut rng = Rng::new(workload.seed);
    let mut history = History::new();
    let mut clients: Vec<Client<I, O>> = (0..workload.clients).map(|_| Client::Idle).collect();
    let mut processes: Vec<u64> = (0..workload.clients as u64).collect();
    let mut process_next = workload.clients as u64;
    let mut invoked = 0usize;
    let mut busy = 0usize;
    while invoked < workload.operations || busy > 0 {
        let client = rng.below(workload.clients as u64) as usize;
        let slot = std::mem::replace(&mut clients[client], Client::Idle);
        clients[client] = match slot {
            Client::Idle if invoked < workload.operations => {
                invoked += 1;
                busy += 1;
                let input = next_input(&mut rng, processes[client]);
                let id = history.invoke(processes[client], input.clone());
                Client::Invoked { id, input }
            }
            Client::Idle => Client::Idle,
            Client::Invoked { id, input } => {
                if workload.unknown_per_million > 0 && rng.chance(workload.unknown_per_million / 2)
                {
                    history.complete(id, Outcome::Info);
                    busy -= 1;
                    processes[client] = process_next;
                    process_next += 1;
                    Client::Idle
                } else {
                    let output = execute(state, &input);
                    Client::Applied { id, output }
                }
            }
            Client::Applied { id, output } => {
                busy -= 1;
                if workload.unknown_per_million > 0 && rng.chance(workload.unknown_per_million / 2)
                {
                    history.complete(id, Outcome::Info);
                    processes[client] = process_next;
                    process_next += 1;
                } else {
                    history.complete(id, Outcome::Ok(output));
                }
                Client::Idle
            }
        };
    }
    history
}

/// A linearizable key-value history: `workload.operations` operations over `keys` keys
/// (`"0"`, `"1"`, ...): 45% get, 25% put, 25% append, 5% delete, with unique values.
pub fn kv_history(workload: &Workload, keys: usize) -> History<KvInput, KvOutput> {
    assert!(keys > 0, "a key-value workload needs keys");
    let mut store: Vec<Option<String>> = vec![None; keys];
    let mut sequence = 0u64;
    simulate(
        workload,
        &mut store,
        |rng, process| {
            let key = rng.below(keys as u64).to_string();
            sequence += 1;
            let value = format!("x{process}.{sequence} ");
            match rng.below(100) {
                0..45 => KvInput::Get { key },
                45..70 => KvInput::Put { key, value },
                70..95 => KvInput::Append { key, value },
                _ => KvInput::Delete { key },
            }
        },
        |store, input| {
            let slot =
                &mut store[input.key().parse::<usize>().expect("generated keys are numbers")];
            match input {
                KvInput::Get { .. } => return KvOutput::Value(slot.clone()),
                KvInput::Put { value, .. } => *slot = Some(value.clone()),
                KvInput::Append { value, .. } => {
                    slot.get_or_insert_with(String::new).push_str(value)
                }
                KvInput::Delete { .. } => *slot = None,
            }
            KvOutput::Done
        },
    )
}
