//! A node's simulated disk: a namespace of names to inodes, and for each inode what the page cache
//! shows (`current`) apart from what is on the media (`durable`).
//!
//! Durability is strict POSIX: a write reaches the media at the file's `sync`; a name is created,
//! renamed or removed on the media at `sync_dir` of its directory. A crash keeps the media and
//! loses the rest, except that some unsynced writes may have reached the media on their own (all,
//! a prefix, a random subset, each possibly torn at sector granularity). A failed sync persists a
//! random part of what was pending and forgets the rest while the cache still shows it, as Linux
//! does after a writeback error. Directories are created durably at once (a simplification: the
//! engine creates its few directories at first start).

use crate::faults::{CrashLoss, DiskFaults};
use crate::world::{Stats, Trace};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use strata_rt::{OpenOptions, Rng};

pub const SECTOR_SIZE: u64 = 512;

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// A file's bytes: those ever written, then zeros up to `len`. An allocated tail (a WAL segment
/// is 64 MiB of zeros from birth) costs no memory until something is written into it.
#[derive(Clone, Debug, Default)]
struct Content {
    written: Vec<u8>,
    len: u64,
}

impl Content {
    fn len(&self) -> u64 {
        self.len
    }

    /// Copies the bytes at `offset` into the front of `buf`; returns how many (short at the end).
    fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let count = (buf.len() as u64).min(self.len - offset) as usize;
        let start = offset as usize;
        let materialized = self.written.len().saturating_sub(start).min(count);
        if materialized > 0 {
            buf[..materialized].copy_from_slice(&self.written[start..start + materialized]);
        }
        buf[materialized..count].fill(0);
        count
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut bytes = self.written.clone();
        bytes.resize(self.len as usize, 0);
        bytes
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    current: Content,
    durable: Content,
    pending: Vec<Pending>,
    /// Sectors that fail every read until a write covers them whole.
    bad_sectors: BTreeSet<u64>,
}

/// Everything a disk operation may consult besides the disk.
pub(crate) struct DiskContext<'a> {
    pub rng: &'a mut Rng,
    pub faults: &'a DiskFaults,
    /// Probabilistic faults are on (the run's fault phase).
    pub active: bool,
    /// Silent corruption may hit this disk.
    pub corruptible: bool,
    pub stats: &'a mut Stats,
    pub trace: &'a mut Trace,
}

impl DiskContext<'_> {
    fn fault(&mut self, probability: f64) -> bool {
        self.active && self.rng.chance(probability)
    }

    fn corruption(&mut self, probability: f64) -> bool {
        self.corruptible && self.fault(probability)
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO: {what}"))
}

/// The faults a write may meet before it reaches the file: EIO, ENOSPC.
fn write_fault(context: &mut DiskContext, what: &str) -> io::Result<()> {
    if context.fault(context.faults.write_error_probability) {
        context.stats.write_errors += 1;
        return Err(eio(what));
    }
    if context.fault(context.faults.no_space_probability) {
        context.stats.no_space_errors += 1;
        return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
    }
    Ok(())
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such file or directory: {path}"))
}

/// The directory holding `path` (`""` for the data directory itself).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn apply(content: &mut Content, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if content.written.len() < end {
                content.written.resize(end, 0);
            }
            content.written[start..end].copy_from_slice(data);
            content.len = content.len.max(end as u64);
        }
        Pending::SetLen(len) => {
            content.written.truncate(*len as usize);
            content.len = *len;
        }
    }
}

/// Applies only a random subset of the sectors a write covers: a torn write.
fn apply_torn(content: &mut Content, offset: u64, data: &[u8], rng: &mut Rng) {
    let end = offset + data.len() as u64;
    let mut sector_start = offset - offset % SECTOR_SIZE;
    while sector_start < end {
        let from = sector_start.max(offset);
        let to = (sector_start + SECTOR_SIZE).min(end);
        if rng.chance(0.5) {
            let slice = &data[(from - offset) as usize..(to - offset) as usize];
            apply(content, &Pending::Write { offset: from, data: slice.to_vec() });
        }
        sector_start += SECTOR_SIZE;
    }
}

#[derive(Default)]
pub(crate) struct SimDisk {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    directories: BTreeSet<String>,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        let mut disk = SimDisk::default();
        disk.directories.insert(String::new());
        disk
    }

    fn inode(&mut self, inode: u64) -> io::Result<&mut Inode> {
        // An inode outlives its names while handles are open; it is gone only after a crash,
        // and a crash also drops every handle's task.
        self.inodes.get_mut(&inode).ok_or_else(|| eio("stale file handle"))
    }

    pub fn open(&mut self, path: &str, options: OpenOptions) -> io::Result<u64> {
        strata_rt::check_path(path)?;
        if !self.directories.contains(parent(path)) {
            return Err(not_found(parent(path)));
        }
        if self.directories.contains(path) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, path.to_string()));
        }
        match self.names.get(path) {
            Some(_) if options.create_new => {
                Err(io::Error::new(io::ErrorKind::AlreadyExists, path.to_string()))
            }
            Some(&inode) => Ok(inode),
            None if options.create || options.create_new => {
                self.next_inode += 1;
                self.inodes.insert(self.next_inode, Inode::default());
                self.names.insert(path.to_string(), self.next_inode);
                Ok(self.next_inode)
            }
            None => Err(not_found(path)),
        }
    }

    pub fn read(
        &mut self,
        inode: u64,
        offset: u64,
        buf: &mut [u8],
        context: &mut DiskContext,
    ) -> io::Result<usize> {
        context.stats.disk_reads += 1;
        if context.fault(context.faults.read_error_probability) {
            context.stats.read_errors += 1;
            return Err(eio("read"));
        }
        let file = self.inode(inode)?;
        let len = file.current.len();
        if offset >= len {
            return Ok(0);
        }
        let count = (buf.len() as u64).min(len - offset);
        let first = offset / SECTOR_SIZE;
        let last = (offset + count).div_ceil(SECTOR_SIZE);
        if file.bad_sectors.range(first..last).next().is_some() {
            context.stats.latent_read_failures += 1;
            return Err(eio("latent sector error"));
        }
        Ok(file.current.read(offset, buf))
    }

    pub fn write(
        &mut self,
        inode: u64,
        offset: u64,
        data: &[u8],
        context: &mut DiskContext,
    ) -> io::Result<()> {
        context.stats.disk_writes += 1;
        context.trace.fold(offset);
        context.trace.fold_bytes(data);
        write_fault(context, "write")?;
        let misdirect = context.corruption(context.faults.misdirected_write_probability);
        let latent = context.corruption(context.faults.latent_sector_error_probability);
        let file = self.inode(inode)?;
        let mut target = offset;
        // Over bytes ever written: an allocated tail of zeros (most of a WAL segment) is not
        // where a misdirected write hurts, and writing there would materialize all of it.
        let file_len = file.current.written.len() as u64;
        if misdirect && file_len >= data.len() as u64 + SECTOR_SIZE {
            // Somewhere else in the file, sector-aligned, not where it was meant to go.
            let slots = (file_len - data.len() as u64) / SECTOR_SIZE + 1;
            let candidate = context.rng.below(slots) * SECTOR_SIZE;
            if candidate != offset {
                target = candidate;
                context.stats.misdirected_writes += 1;
            }
        }
        let end = target + data.len() as u64;
        // A whole-sector rewrite remaps a bad sector, as drives do.
        let whole_first = target.div_ceil(SECTOR_SIZE);
        let whole_last = end / SECTOR_SIZE;
        let healed: Vec<u64> =
            file.bad_sectors.range(whole_first..whole_last.max(whole_first)).copied().collect();
        for sector in healed {
            file.bad_sectors.remove(&sector);
        }
        let op = Pending::Write { offset: target, data: data.to_vec() };
        apply(&mut file.current, &op);
        file.pending.push(op);
        if latent && !data.is_empty() {
            let first = target / SECTOR_SIZE;
            let last = (end - 1) / SECTOR_SIZE;
            let sector = context.rng.range_inclusive(first, last);
            file.bad_sectors.insert(sector);
            context.stats.latent_sector_errors += 1;
        }
        Ok(())
    }

    pub fn sync(&mut self, inode: u64, context: &mut DiskContext) -> io::Result<()> {
        context.stats.disk_syncs += 1;
        let failed = context.fault(context.faults.sync_error_probability);
        let file = self.inode(inode)?;
        let pending = std::mem::take(&mut file.pending);
        if failed {
            context.stats.sync_errors += 1;
            // Writeback failed part-way: some pages reached the media, the others are marked clean
            // and forgotten, while the cache still shows them.
            for op in &pending {
                if context.rng.chance(0.5) {
                    apply(&mut file.durable, op);
                } else {
                    context.stats.lost_writes += 1;
                }
            }
            return Err(eio("fsync"));
        }
        for op in &pending {
            apply(&mut file.durable, op);
        }
        Ok(())
    }

    pub fn len(&mut self, inode: u64) -> io::Result<u64> {
        Ok(self.inode(inode)?.current.len())
    }

    /// fallocate and zeros: extends the file to at least `len`, durable at the next sync. Fails
    /// as a write does (EIO, ENOSPC).
    pub fn allocate(&mut self, inode: u64, len: u64, context: &mut DiskContext) -> io::Result<()> {
        if len <= self.inode(inode)?.current.len() {
            return Ok(());
        }
        write_fault(context, "allocate")?;
        self.set_len(inode, len)
    }

    pub fn set_len(&mut self, inode: u64, len: u64) -> io::Result<()> {
        let file = self.inode(inode)?;
        let op = Pending::SetLen(len);
        apply(&mut file.current, &op);
        file.pending.push(op);
        file.bad_sectors.retain(|&sector| sector * SECTOR_SIZE < len);
        Ok(())
    }

    pub fn remove(&mut self, path: &str) -> io::Result<()> {
        strata_rt::check_path(path)?;
        if self.names.remove(path).is_none() {
            return Err(not_found(path));
        }
        Ok(())
    }

    pub fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        strata_rt::check_path(from)?;
        strata_rt::check_path(to)?;
        if !self.directories.contains(parent(to)) {
            return Err(not_found(parent(to)));
        }
        let inode = self.names.remove(from).ok_or_else(|| not_found(from))?;
        self.names.insert(to.to_string(), inode);
        Ok(())
    }

    pub fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        if !self.directories.contains(dir) {
            return Err(not_found(dir));
        }
        let mut entries: BTreeSet<String> = BTreeSet::new();
        let children = self.names.keys().chain(self.directories.iter());
        for path in children {
            if !path.is_empty() && path != dir && parent(path) == dir {
                let name = path.rsplit_once('/').map_or(path.as_str(), |(_, name)| name);
                entries.insert(name.to_string());
            }
        }
        Ok(entries.into_iter().collect())
    }

    pub fn create_dir_all(&mut self, dir: &str) -> io::Result<()> {
        strata_rt::check_path(dir)?;
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.names.contains_key(&prefix) {
                return Err(io::Error::new(io::ErrorKind::NotADirectory, prefix));
            }
            self.directories.insert(prefix.clone());
        }
        Ok(())
    }

    pub fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
        if !self.directories.contains(dir) {
            return Err(not_found(dir));
        }
        self.durable_names.retain(|path, _| parent(path) != dir);
        for (path, &inode) in &self.names {
            if parent(path) == dir {
                self.durable_names.insert(path.clone(), inode);
            }
        }
        Ok(())
    }

    /// Power loss: what is on the media stays, the rest is gone or half there.
    pub fn crash(&mut self, loss: CrashLoss, context: &mut DiskContext) {
        self.names = self.durable_names.clone();
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|inode, _| live.contains(inode));
        for file in self.inodes.values_mut() {
            let pending = std::mem::take(&mut file.pending);
            let kept = match loss {
                CrashLoss::All => 0,
                CrashLoss::Nothing => pending.len(),
                CrashLoss::Prefix => context.rng.index(pending.len() + 1),
                CrashLoss::RandomSubset => pending.len(),
            };
            for (index, op) in pending.iter().enumerate() {
                let survives =
                    index < kept && (loss != CrashLoss::RandomSubset || context.rng.chance(0.5));
                if !survives {
                    context.stats.lost_writes += 1;
                    continue;
                }
                match op {
                    Pending::Write { offset, data }
                        if context.rng.chance(context.faults.torn_write_probability) =>
                    {
                        context.stats.torn_writes += 1;
                        apply_torn(&mut file.durable, *offset, data, context.rng);
                    }
                    _ => apply(&mut file.durable, op),
                }
            }
            file.current = file.durable.clone();
        }
    }

    /// Flips one bit of synced data in a random non-empty file; returns where.
    pub fn rot_bit(&mut self, rng: &mut Rng) -> Option<(String, u64)> {
        let candidates: Vec<(&String, u64)> = self
            .durable_names
            .iter()
            .filter(|(_, inode)| {
                self.inodes.get(inode).is_some_and(|file| !file.durable.written.is_empty())
            })
            .map(|(path, &inode)| (path, inode))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, inode) = candidates[rng.index(candidates.len())];
        let path = path.clone();
        let file = self.inodes.get_mut(&inode).expect("candidate inode exists");
        // Only bytes ever written rot: an allocated tail that was never written holds nothing.
        let offset = rng.below(file.durable.written.len() as u64);
        let bit = 1u8 << rng.below(8);
        file.durable.written[offset as usize] ^= bit;
        if let Some(byte) = file.current.written.get_mut(offset as usize) {
            *byte ^= bit;
        }
        Some((path, offset))
    }

    /// Marks the sector holding `offset` of `path` as failing every read.
    pub fn add_bad_sector(&mut self, path: &str, offset: u64) -> io::Result<()> {
        let inode = *self.names.get(path).ok_or_else(|| not_found(path))?;
        self.inode(inode)?.bad_sectors.insert(offset / SECTOR_SIZE);
        Ok(())
    }

    /// The content of `path` on the media (for tests and checkers).
    pub fn durable_content(&self, path: &str) -> Option<Vec<u8>> {
        let inode = self.durable_names.get(path)?;
        Some(self.inodes.get(inode)?.durable.to_vec())
    }

    /// The content of `path` as reads see it now.
    pub fn current_content(&self, path: &str) -> Option<Vec<u8>> {
        let inode = self.names.get(path)?;
        Some(self.inodes.get(inode)?.current.to_vec())
    }
}
