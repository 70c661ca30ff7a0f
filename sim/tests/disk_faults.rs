//! Each disk fault of the simulator, shown by its observable effect on a file.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::{idle_cluster, run_on};
use std::io;
use strata_rt::{Duration, NodeId};
use strata_sim::{CrashLoss, FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);
const SECOND: Duration = Duration::from_secs(1);
const CORRUPTIBLE: NodeOptions = NodeOptions { crashable: true, corruptible: true };

fn config_with(change: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
    let mut config = FaultConfig::none();
    change(&mut config);
    config
}

/// Creates `path` durably with `synced` as its content, then writes `unsynced` blocks of 512 bytes
/// (block `i` filled with byte `i + 1`) after it without syncing.
fn prepare(sim: &mut Sim, path: &'static str, synced: Vec<u8>, unsynced: u8) {
    run_on(sim, NODE, SECOND, move |rt| async move {
        let disk = rt.disk();
        let file = disk.create(path).await.unwrap();
        let base = synced.len() as u64;
        file.write_at(synced, 0).await.0.unwrap();
        file.sync().await.unwrap();
        disk.sync_dir("").await.unwrap();
        for block in 0..unsynced {
            let offset = base + u64::from(block) * 512;
            file.write_at(vec![block + 1; 512], offset).await.0.unwrap();
        }
    });
}

/// Which of the unsynced blocks survived a crash.
fn surviving_blocks(sim: &Sim, path: &str, base: usize, blocks: u8) -> Vec<bool> {
    let content = sim.durable_content(NODE, path).expect("file survives: it was synced");
    (0..blocks)
        .map(|block| {
            let start = base + usize::from(block) * 512;
            content
                .get(start..start + 512)
                .is_some_and(|bytes| bytes.iter().all(|&b| b == block + 1))
        })
        .collect()
}

fn crash_with(loss: CrashLoss, seed: u64) -> Vec<bool> {
    let mut sim = idle_cluster(
        seed,
        1,
        config_with(|config| config.disk.crash_loss = vec![loss]),
        NodeOptions::SERVER,
    );
    prepare(&mut sim, "data", vec![7; 512], 16);
    sim.crash(NODE);
    let survivors = surviving_blocks(&sim, "data", 512, 16);
    let content = sim.durable_content(NODE, "data").unwrap();
    assert_eq!(&content[..512], &[7; 512], "synced data survives every crash");
    survivors
}

#[test]
fn crash_loses_every_unsynced_write() {
    assert_eq!(crash_with(CrashLoss::All, 1), vec![false; 16]);
}

#[test]
fn crash_can_keep_every_unsynced_write() {
    assert_eq!(crash_with(CrashLoss::Nothing, 1), vec![true; 16]);
}

#[test]
fn crash_keeps_a_prefix_of_unsynced_writes() {
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let survivors = crash_with(CrashLoss::Prefix, seed);
        let kept = survivors.iter().take_while(|&&kept| kept).count();
        assert!(survivors[kept..].iter().all(|&kept| !kept), "not a prefix: {survivors:?}");
        lengths.insert(kept);
    }
    assert!(lengths.len() > 3, "prefix lengths vary with the seed: {lengths:?}");
}

#[test]
fn crash_keeps_a_random_subset_of_unsynced_writes() {
    let mut holes = false;
    for seed in 0..10 {
        let survivors = crash_with(CrashLoss::RandomSubset, seed);
        let kept = survivors.iter().take_while(|&&kept| kept).count();
        holes |= survivors[kept..].iter().any(|&kept| kept);
    }
    assert!(holes, "some crash kept a later write but lost an earlier one");
}

#[test]
fn a_name_not_synced_in_its_directory_is_gone_after_a_crash() {
    let mut sim = idle_cluster(3, 1, FaultConfig::none(), NodeOptions::SERVER);
    run_on(&mut sim, NODE, SECOND, |rt| async move {
        let disk = rt.disk();
        disk.create_dir_all("dir").await.unwrap();
        let kept = disk.create("dir/kept").await.unwrap();
        kept.sync().await.unwrap();
        disk.sync_dir("dir").await.unwrap();
        let lost = disk.create("dir/lost").await.unwrap();
        lost.write_at(vec![1; 10], 0).await.0.unwrap();
        lost.sync().await.unwrap();
        disk.rename("dir/kept", "dir/renamed").await.unwrap();
    });
    sim.crash(NODE);
    sim.restart(NODE);
    let names =
        run_on(&mut sim, NODE, SECOND, |rt| async move { rt.disk().list("dir").await.unwrap() });
    assert_eq!(names, vec!["kept".to_string()], "the rename and the new file were not synced");
}

#[test]
fn torn_writes_keep_some_sectors_of_a_write() {
    let config = config_with(|config| {
        config.disk.crash_loss = vec![CrashLoss::Nothing];
        config.disk.torn_write_probability = 1.0;
    });
    let mut sim = idle_cluster(4, 1, config, NodeOptions::SERVER);
    run_on(&mut sim, NODE, SECOND, |rt| async move {
        let disk = rt.disk();
        let file = disk.create("torn").await.unwrap();
        file.write_at(vec![0; 8192], 0).await.0.unwrap();
        file.sync().await.unwrap();
        disk.sync_dir("").await.unwrap();
        file.write_at(vec![0xee; 8192], 0).await.0.unwrap();
    });
    sim.crash(NODE);
    let content = sim.durable_content(NODE, "torn").unwrap();
    let new_sectors =
        content.chunks(512).filter(|sector| sector.iter().all(|&b| b == 0xee)).count();
    let old_sectors = content.chunks(512).filter(|sector| sector.iter().all(|&b| b == 0)).count();
    assert_eq!(new_sectors + old_sectors, 16, "each sector is wholly old or wholly new");
    assert!(new_sectors > 0 && old_sectors > 0, "torn: {new_sectors} new, {old_sectors} old");
    assert_eq!(sim.stats().torn_writes, 1);
}

#[test]
fn misdirected_writes_land_elsewhere_and_leave_the_target_alone() {
    let config = config_with(|config| config.disk.misdirected_write_probability = 1.0);
    let mut sim = idle_cluster(5, 1, config, CORRUPTIBLE);
    run_on(&mut sim, NODE, SECOND, |rt| async move {
        let file = rt.disk().create("misdirected").await.unwrap();
        file.write_at(vec![0; 16 * 512], 0).await.0.unwrap(); // Lands at 0: the file was empty.
        file.write_at(vec![0xab; 512], 0).await.0.unwrap();
    });
    let content = sim.current_content(NODE, "misdirected").unwrap();
    assert_eq!(&content[..512], &[0; 512], "the intended sector was not written");
    assert!(content.chunks(512).any(|sector| sector == [0xab; 512]), "the data went somewhere");
    assert!(sim.stats().misdirected_writes >= 1);
}

#[test]
fn latent_sector_errors_fail_reads_until_rewritten() {
    let mut sim = idle_cluster(6, 1, FaultConfig::none(), CORRUPTIBLE);
    prepare(&mut sim, "latent", vec![3; 2048], 0);
    sim.add_latent_sector_error(NODE, "latent", 1024).unwrap();
    let results = run_on(&mut sim, NODE, SECOND, |rt| async move {
        let file = rt.disk().open("latent").await.unwrap();
        let first = file.read_exact_at(512, 1024).await.map(|_| ());
        let second = file.read_exact_at(2048, 0).await.map(|_| ());
        let clean = file.read_exact_at(512, 0).await.map(|_| ());
        file.write_at(vec![4; 512], 1024).await.0.unwrap();
        let rewritten = file.read_exact_at(512, 1024).await;
        (first, second, clean, rewritten)
    });
    assert!(results.0.is_err() && results.1.is_err(), "the bad sector keeps failing");
    assert!(results.2.is_ok(), "other sectors read fine");
    assert_eq!(results.3.unwrap(), vec![4; 512], "a whole-sector rewrite remaps it");
    assert_eq!(sim.stats().latent_read_failures, 2);

    // The probabilistic form: every write leaves a bad sector behind.
    let config = config_with(|config| config.disk.latent_sector_error_probability = 1.0);
    let mut sim = idle_cluster(6, 1, config, CORRUPTIBLE);
    let read = run_on(&mut sim, NODE, SECOND, |rt| async move {
        let file = rt.disk().create("latent").await.unwrap();
        file.write_at(vec![1; 4096], 0).await.0.unwrap();
        file.read_exact_at(4096, 0).await
    });
    assert!(read.is_err());
}

#[test]
fn bit_rot_flips_one_bit_of_synced_data() {
    let mut sim = idle_cluster(7, 1, FaultConfig::none(), CORRUPTIBLE);
    prepare(&mut sim, "rot", vec![0x55; 4096], 0);
    let (path, offset) = sim.rot_bit(NODE).expect("a file to rot");
    assert_eq!(path, "rot");
    let content = sim.durable_content(NODE, "rot").unwrap();
    let flipped: u32 = content.iter().map(|&byte| (byte ^ 0x55).count_ones()).sum();
    assert_eq!(flipped, 1);
    assert_ne!(content[offset as usize], 0x55);
    let read = run_on(&mut sim, NODE, SECOND, |rt| async move {
        rt.disk().open("rot").await.unwrap().read_exact_at(4096, 0).await.unwrap()
    });
    assert_eq!(read, content, "reads see the rot, silently");
}

fn single_error(
    change: impl FnOnce(&mut FaultConfig),
) -> (io::Result<()>, io::Result<()>, io::Result<()>, Sim) {
    let mut sim_with_errors = idle_cluster(8, 1, config_with(change), NodeOptions::SERVER);
    prepare_unfaulted(&mut sim_with_errors);
    let results = run_on(&mut sim_with_errors, NODE, SECOND, |rt| async move {
        let file = rt.disk().open("file").await.unwrap();
        let read = file.read_exact_at(512, 0).await.map(|_| ());
        let write = file.write_at(vec![2; 512], 0).await.0;
        let sync = file.sync().await;
        (read, write, sync)
    });
    (results.0, results.1, results.2, sim_with_errors)
}

/// Creates "file" with faults briefly off, so only the operation under test meets the fault.
fn prepare_unfaulted(sim: &mut Sim) {
    sim.set_faults_active(false);
    prepare(sim, "file", vec![1; 512], 0);
    sim.set_faults_active(true);
}

#[test]
fn eio_fails_reads_writes_and_syncs() {
    let (read, _, _, sim) = single_error(|config| config.disk.read_error_probability = 1.0);
    assert!(read.is_err());
    assert_eq!(sim.stats().read_errors, 1);
    let (_, write, _, sim) = single_error(|config| config.disk.write_error_probability = 1.0);
    assert!(write.is_err());
    assert_eq!(
        sim.current_content(NODE, "file").unwrap(),
        vec![1; 512],
        "a failed write wrote nothing"
    );
    let (_, write, sync, sim) = single_error(|config| config.disk.sync_error_probability = 1.0);
    assert!(write.is_ok() && sync.is_err());
    assert_eq!(sim.stats().sync_errors, 1);
}

#[test]
fn a_failed_sync_may_forget_writes_the_cache_still_shows() {
    let mut forgotten = false;
    for seed in 0..10 {
        let config = config_with(|config| {
            config.disk.sync_error_probability = 1.0;
            config.disk.crash_loss = vec![CrashLoss::Nothing];
        });
        let mut sim = idle_cluster(seed, 1, config, NodeOptions::SERVER);
        prepare_unfaulted(&mut sim);
        run_on(&mut sim, NODE, SECOND, |rt| async move {
            let file = rt.disk().open("file").await.unwrap();
            file.write_at(vec![9; 512], 0).await.0.unwrap();
            assert!(file.sync().await.is_err());
        });
        assert_eq!(
            sim.current_content(NODE, "file").unwrap(),
            vec![9; 512],
            "the cache shows the write"
        );
        forgotten |= sim.durable_content(NODE, "file").unwrap() == vec![1; 512];
    }
    assert!(forgotten, "some failed sync dropped the write from the media");
}

#[test]
fn enospc_fails_writes() {
    let (_, write, _, sim) = single_error(|config| config.disk.no_space_probability = 1.0);
    assert_eq!(write.unwrap_err().kind(), io::ErrorKind::StorageFull);
    assert_eq!(sim.stats().no_space_errors, 1);
}

#[test]
fn slow_io_takes_ten_to_a_thousand_times_longer() {
    let elapsed = |slow: f64| {
        let mut sim = idle_cluster(
            9,
            1,
            config_with(|config| config.disk.slow_io_probability = slow),
            NodeOptions::SERVER,
        );
        run_on(&mut sim, NODE, Duration::from_secs(100), |rt| async move {
            let file = rt.disk().create("slow").await.unwrap();
            let start = rt.now();
            for _ in 0..10 {
                file.write_at(vec![0; 512], 0).await.0.unwrap();
            }
            rt.now() - start
        })
    };
    let (fast, slow) = (elapsed(0.0), elapsed(1.0));
    assert!(slow >= fast * 10, "slow {slow:?} fast {fast:?}");
}

#[test]
fn the_nemesis_rots_synced_data_on_corruptible_nodes_only() {
    let mut config = FaultConfig::none();
    config.disk.bit_rot = true;
    config.nemesis_interval_ms = 50;
    let mut sim = Sim::new(10, config);
    sim.add_node(CORRUPTIBLE, |_| Box::pin(async {}));
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    for node in [NodeId(0), NodeId(1)] {
        run_on(&mut sim, node, SECOND, |rt| async move {
            let file = rt.disk().create("data").await.unwrap();
            file.write_at(vec![0; 4096], 0).await.0.unwrap();
            file.sync().await.unwrap();
            rt.disk().sync_dir("").await.unwrap();
        });
    }
    sim.start_faults(Duration::from_secs(5));
    sim.run_for(Duration::from_secs(6));
    assert!(sim.stats().bit_flips > 0);
    let flipped = |node| sim.durable_content(node, "data").unwrap().iter().any(|&byte| byte != 0);
    assert!(flipped(NodeId(0)), "the corruptible node's data rotted");
    assert!(!flipped(NodeId(1)), "the other node's data did not");
}
