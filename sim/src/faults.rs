//! The fault model, and swarm testing: each seed switches a random set of faults on, each at a
//! random strength, so that over many seeds every combination is tried, including the quiet ones
//! under which rare interleavings show up (Groce et al., "Swarm Testing").

use std::fmt::Write as _;
use strata_rt::Rng;

/// What is left on the media of a file's writes not yet synced when its node crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrashLoss {
    /// Every unsynced write is lost.
    All,
    /// Some leading run of the unsynced writes survives, the rest is lost.
    Prefix,
    /// Each unsynced write survives or not, independently.
    RandomSubset,
    /// Every unsynced write happened to reach the media.
    Nothing,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    pub latency_min_us: u64,
    pub latency_max_us: u64,
    pub drop_probability: f64,
    pub duplicate_probability: f64,
    /// A message is held back by up to ten times the maximum latency, so later ones overtake it.
    pub reorder_probability: f64,
    /// The nemesis splits the nodes in two groups that cannot talk.
    pub partitions: bool,
    /// The nemesis blocks one direction of one link.
    pub one_way_partitions: bool,
    /// The nemesis cuts one node off from all others.
    pub isolation: bool,
    /// The nemesis slows one link by hundreds of milliseconds per message.
    pub clogging: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DiskFaults {
    /// What a crash does to unsynced writes: one of these is drawn per crash.
    pub crash_loss: Vec<CrashLoss>,
    /// A surviving unsynced write keeps only a random subset of its 512-byte sectors.
    pub torn_write_probability: f64,
    /// A write lands at another sector-aligned offset of the same file; the target is untouched.
    pub misdirected_write_probability: f64,
    /// A write leaves behind a sector that fails every read until it is rewritten.
    pub latent_sector_error_probability: f64,
    /// The nemesis flips bits of synced data.
    pub bit_rot: bool,
    pub read_error_probability: f64,
    pub write_error_probability: f64,
    /// A failed sync persists only some of the pending writes and forgets the rest (fsyncgate).
    pub sync_error_probability: f64,
    pub no_space_probability: f64,
    /// An operation takes 10 to 1000 times as long as usual.
    pub slow_io_probability: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProcessFaults {
    pub crash: bool,
    pub pause: bool,
    /// Each node's clock runs fast or slow by up to this many parts per million.
    pub clock_drift_ppm_max: u64,
    /// The nemesis steps a node's wall clock forwards or backwards by up to a minute.
    pub clock_jumps: bool,
}

/// Every fault the simulator can inject, and how hard.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    pub network: NetworkFaults,
    pub disk: DiskFaults,
    pub process: ProcessFaults,
    /// Mean time between two nemesis actions.
    pub nemesis_interval_ms: u64,
    /// Whether `buggify!()` points may fire.
    pub buggify: bool,
}

impl FaultConfig {
    /// A perfect world: fixed small latency, no faults. Tests switch single faults on from here.
    pub fn none() -> FaultConfig {
        FaultConfig {
            network: NetworkFaults {
                latency_min_us: 100,
                latency_max_us: 500,
                drop_probability: 0.0,
                duplicate_probability: 0.0,
                reorder_probability: 0.0,
                partitions: false,
                one_way_partitions: false,
                isolation: false,
                clogging: false,
            },
            disk: DiskFaults {
                crash_loss: vec![CrashLoss::All],
                torn_write_probability: 0.0,
                misdirected_write_probability: 0.0,
                latent_sector_error_probability: 0.0,
                bit_rot: false,
                read_error_probability: 0.0,
                write_error_probability: 0.0,
                sync_error_probability: 0.0,
                no_space_probability: 0.0,
                slow_io_probability: 0.0,
            },
            process: ProcessFaults {
                crash: false,
                pause: false,
                clock_drift_ppm_max: 0,
                clock_jumps: false,
            },
            nemesis_interval_ms: 500,
            buggify: false,
        }
    }

    /// A random selection of faults at random strengths, fixed by `rng`.
    pub fn swarm(rng: &mut Rng) -> FaultConfig {
        let mut on = |probability: f64| rng.chance(probability);
        let flags: [bool; 22] = std::array::from_fn(|_| on(0.5));
        let mut crash_loss: Vec<CrashLoss> =
            [CrashLoss::All, CrashLoss::Prefix, CrashLoss::RandomSubset, CrashLoss::Nothing]
                .into_iter()
                .filter(|_| rng.chance(0.6))
                .collect();
        if crash_loss.is_empty() {
            crash_loss.push(CrashLoss::All);
        }
        let mut strength =
            |enabled: bool, max: f64| if enabled { rng.unit_f64() * max } else { 0.0 };
        let latency_min_us = 20 + strength(true, 500.0) as u64;
        let latency_max_us = latency_min_us + strength(true, 5000.0) as u64;
        FaultConfig {
            network: NetworkFaults {
                latency_min_us,
                latency_max_us,
                drop_probability: strength(flags[0], 0.2),
                duplicate_probability: strength(flags[1], 0.1),
                reorder_probability: strength(flags[2], 0.2),
                partitions: flags[3],
                one_way_partitions: flags[4],
                isolation: flags[5],
                clogging: flags[6],
            },
            disk: DiskFaults {
                crash_loss,
                torn_write_probability: strength(flags[7], 0.5),
                misdirected_write_probability: strength(flags[8], 0.01),
                latent_sector_error_probability: strength(flags[9], 0.01),
                bit_rot: flags[10],
                read_error_probability: strength(flags[11], 0.01),
                write_error_probability: strength(flags[12], 0.01),
                sync_error_probability: strength(flags[13], 0.01),
                no_space_probability: strength(flags[14], 0.01),
                slow_io_probability: strength(flags[15], 0.02),
            },
            process: ProcessFaults {
                crash: flags[16],
                pause: flags[17],
                clock_drift_ppm_max: if flags[18] {
                    1 + strength(true, 50_000.0) as u64
                } else {
                    0
                },
                clock_jumps: flags[19],
            },
            nemesis_interval_ms: 50 + strength(true, 1000.0) as u64,
            buggify: flags[20],
        }
    }

    /// One line per fault family naming what is on, for the run's report.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let network = &self.network;
        let _ = write!(
            text,
            "network: latency {}..{}us drop {:.3} duplicate {:.3} reorder {:.3}",
            network.latency_min_us,
            network.latency_max_us,
            network.drop_probability,
            network.duplicate_probability,
            network.reorder_probability
        );
        for (name, on) in [
            ("partitions", network.partitions),
            ("one-way-partitions", network.one_way_partitions),
            ("isolation", network.isolation),
            ("clogging", network.clogging),
        ] {
            if on {
                let _ = write!(text, " {name}");
            }
        }
        let disk = &self.disk;
        let _ = write!(
            text,
            "\ndisk: crash-loss {:?} torn {:.3} misdirected {:.4} latent {:.4} eio r/w/s {:.4}/{:.4}/{:.4} enospc {:.4} slow {:.3}{}",
            disk.crash_loss,
            disk.torn_write_probability,
            disk.misdirected_write_probability,
            disk.latent_sector_error_probability,
            disk.read_error_probability,
            disk.write_error_probability,
            disk.sync_error_probability,
            disk.no_space_probability,
            disk.slow_io_probability,
            if disk.bit_rot { " bit-rot" } else { "" },
        );
        let process = &self.process;
        let _ = write!(
            text,
            "\nprocess: crash {} pause {} drift-ppm-max {} clock-jumps {} | nemesis every ~{}ms | buggify {}",
            process.crash,
            process.pause,
            process.clock_drift_ppm_max,
            process.clock_jumps,
            self.nemesis_interval_ms,
            self.buggify
        );
        text
    }

    /// Whether the nemesis has anything to do.
    pub fn nemesis_enabled(&self) -> bool {
        let network = &self.network;
        network.partitions
            || network.one_way_partitions
            || network.isolation
            || network.clogging
            || self.disk.bit_rot
            || self.process.crash
            || self.process.pause
            || self.process.clock_jumps
    }
}
