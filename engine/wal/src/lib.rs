//! `strata-wal`: a segmented write-ahead log with group commit.
//!
//! # Invariants
//!
//! - Every record gets a dense index, in `append` call order. `append` resolves `Ok(index)` only
//!   once the record and every record before it are durable (written and synced).
//! - Group commit: one writer task takes every queued record (up to `batch_bytes_max`) and writes
//!   them with one durable write (`write_durable_at`: a write and a data sync in one operation).
//!   Queued bytes not yet durable are bounded by `in_flight_bytes_max`; appends beyond it wait.
//! - A failed write, sync or directory sync **latches** the log: it is never retried, every later
//!   call returns [`WalError::Latched`] until the log is reopened by a restarted process.
//! - A segment's header and name are durable before any record in it is acknowledged; segments
//!   are never reused; a cut tail is truncated and synced before anything is written after it.
//! - Segments are allocated whole (zeros written, not just reserved) and the next one is usually
//!   made ready in the background ([`segment::SPARE_FILE_NAME`]): a record's durable write then
//!   syncs only data, and a full segment does not wait for its successor to be zeroed. (After a
//!   cut, `truncate_suffix`, the active segment is not allocated again: until the next roll its
//!   syncs also flush the size.)
//!
//! # Fault model
//!
//! Recovery (in [`recovery`], pure) keeps every acknowledged record, cuts a torn tail (writes of a
//! batch whose sync never completed, lost whole, in part, or torn at sector granularity) and
//! reports damage to acknowledged records (bit rot, misdirected writes over them, lost sectors) as
//! [`WalError::Corruption`] naming segment and offset, never skipping it. Reads verify checksums.
//! The one case it cannot see is spelled out in [`recovery`]: an acknowledged final batch lost
//! whole, before any later batch witnessed it.
//!
//! Byte layouts: `docs/format.md`, "WAL segment" and "WAL record".

mod error;
pub mod fuzz;
pub mod record;
pub mod recovery;
pub mod segment;

pub use error::WalError;

use recovery::{RecordLocation, ScannedSegment, SegmentInput};
use segment::{SegmentHeader, HEADER_BYTES};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use strata_rt::{File, Runtime};

/// Tuning of a log. The defaults suit production; tests shrink the sizes.
#[derive(Clone, Debug)]
pub struct Options {
    /// A segment is closed once the next record would take it past this size.
    pub segment_bytes: u64,
    /// Largest record data accepted by `append`.
    pub record_bytes_max: u32,
    /// Most bytes written by one write of the group commit.
    pub batch_bytes_max: usize,
    /// Most bytes queued and not yet durable; appends past it wait.
    pub in_flight_bytes_max: usize,
    /// Index of the first record of a new, empty log.
    pub first_index: u64,
    /// Allocate each segment whole up front (zeros written, see `File::allocate`), and make the
    /// next one ready in the background.
    pub preallocate: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: 64 << 20,
            record_bytes_max: 16 << 20,
            batch_bytes_max: 4 << 20,
            in_flight_bytes_max: 64 << 20,
            first_index: 1,
            preallocate: true,
        }
    }
}

impl Options {
    fn check(&self) -> Result<(), WalError> {
        let largest = record::encoded_len(self.record_bytes_max as usize) as u64;
        if HEADER_BYTES as u64 + largest > self.segment_bytes {
            return Err(WalError::Invalid {
                reason: format!(
                    "record_bytes_max {} does not fit a segment of {} bytes",
                    self.record_bytes_max, self.segment_bytes
                ),
            });
        }
        if self.first_index == 0 {
            return Err(WalError::Invalid { reason: "first_index must be at least 1".into() });
        }
        if self.batch_bytes_max == 0 || self.in_flight_bytes_max == 0 {
            return Err(WalError::Invalid {
                reason: "batch and in-flight bounds must be > 0".into(),
            });
        }
        Ok(())
    }

    fn payload_bytes_max(&self) -> u32 {
        self.record_bytes_max + record::PAYLOAD_PREFIX_BYTES as u32
    }
}

/// What recovery found when the log was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A torn tail was cut.
    pub torn_tail: bool,
    /// Segments deleted because they held nothing acknowledged.
    pub removed_segments: Vec<u64>,
    /// Records kept.
    pub records: u64,
}

struct Segment {
    id: u64,
    first_index: u64,
    file: File,
    /// Offset and data length of each record, in index order.
    records: Vec<(u64, u32)>,
    /// Where the next record goes.
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }
}

/// A segment's id, file, record locations and first index, copied out for reading.
type SegmentSnapshot = (u64, File, Vec<(u64, u32)>, u64);

struct State {
    segments: Vec<Segment>,
    /// Logical first index: `truncate_prefix` may leave older records in the first segment.
    first_index: u64,
    /// Index the next append gets.
    next_index: u64,
    /// Every record up to here is durable.
    durable_index: u64,
    pending: VecDeque<(u64, Vec<u8>)>,
    /// Bytes appended and not yet durable.
    in_flight_bytes: usize,
    /// The writer is between taking a batch and finishing it.
    writing: bool,
    /// A truncation has the log to itself: no appends, no batches.
    exclusive: bool,
    failed: Option<WalError>,
    wakers: Vec<Waker>,
    next_segment_id: u64,
    spare: Spare,
}

/// The next segment's file, made ready before the active one fills.
enum Spare {
    Absent,
    Preparing,
    /// Allocated and synced, named [`segment::SPARE_FILE_NAME`].
    Ready(File),
}

struct Shared {
    rt: Runtime,
    dir: String,
    options: Options,
    recovery: Recovery,
    state: RefCell<State>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Wake the writer so it notices the log is gone.
        let wakers = std::mem::take(&mut self.state.get_mut().wakers);
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Shared {
    fn path(&self, id: u64) -> String {
        format!("{}/{}", self.dir, segment::file_name(id))
    }

    fn spare_path(&self) -> String {
        format!("{}/{}", self.dir, segment::SPARE_FILE_NAME)
    }

    fn notify(&self) {
        let wakers = std::mem::take(&mut self.state.borrow_mut().wakers);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Latches `error` (the first one wins) and wakes everyone waiting.
    fn fail(&self, error: WalError) -> WalError {
        {
            let mut state = self.state.borrow_mut();
            if state.failed.is_none() {
                state.failed = Some(error.clone());
            }
        }
        self.notify();
        WalError::Latched { cause: Box::new(error) }
    }
}

/// Resolves when `check` returns `Some`; `check` runs on every state change.
fn wait_for<'a, R>(
    shared: &'a Rc<Shared>,
    mut check: impl FnMut(&mut State) -> Option<R> + 'a,
) -> impl Future<Output = R> + 'a {
    std::future::poll_fn(move |context| {
        let mut state = shared.state.borrow_mut();
        match check(&mut state) {
            Some(value) => Poll::Ready(value),
            None => {
                state.wakers.push(context.waker().clone());
                Poll::Pending
            }
        }
    })
}

fn latched(state: &State) -> Option<WalError> {
    state.failed.as_ref().map(|cause| WalError::Latched { cause: Box::new(cause.clone()) })
}

/// A write-ahead log in one directory. Clones share the log.
#[derive(Clone)]
pub struct Wal {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Wal").field("dir", &self.shared.dir).finish()
    }
}

/// Writes the records of `segment` above `witness` again and syncs them. Every record carries
/// the highest index durable when it was written, so records up to `witness` reached the media
/// once; the ones above may exist only in the page cache (a sync that failed before this reopen
/// forgets its pages while the cache still shows them). Later records will claim them durable,
/// so they must be made durable before anything new is written. A segment none of whose records
/// is witnessed gets its header written again too: its creation may have been such a sync.
async fn make_durable_after(dir: &str, segment: &Segment, witness: u64) -> Result<(), WalError> {
    let first_unwitnessed =
        witness.saturating_add(1).max(segment.first_index) - segment.first_index;
    let offset = match usize::try_from(first_unwitnessed) {
        Ok(0) => 0,
        Ok(position) => match segment.records.get(position) {
            Some(&(offset, _)) => offset,
            None => return Ok(()),
        },
        Err(_) => return Ok(()),
    };
    let path = format!("{dir}/{}", segment::file_name(segment.id));
    let len = usize::try_from(segment.end - offset).expect("a segment fits in memory");
    let bytes = segment
        .file
        .read_exact_at(len, offset)
        .await
        .map_err(|error| WalError::io("read", &path, error))?;
    let (result, _) = segment.file.write_at(bytes, offset).await;
    result.map_err(|error| WalError::io("write", &path, error))?;
    segment.file.sync().await.map_err(|error| WalError::io("sync", &path, error))
}

/// `read_segment` reads this much at a time.
const READ_PIECE_BYTES: usize = 1 << 20;

/// Reads a segment for recovery, all of it but the far part of a tail of whole pieces of zeros:
/// the unwritten rest of an allocated segment, most of 64 MiB when the log has just rolled.
/// `zeros_kept` bytes of that tail stay (the longest record): a record may end in zeros, and
/// one that starts in the data and runs into the tail must read whole, as must a witness past
/// the end. Beyond that nothing can reach, and recovery reads the end of the file as zeros.
async fn read_segment(file: &File, len: u64, zeros_kept: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut zeros_behind = 0;
    let mut piece = vec![0; READ_PIECE_BYTES];
    let mut offset = 0;
    while offset < len {
        let want = (len - offset).min(READ_PIECE_BYTES as u64) as usize;
        piece.resize(want, 0);
        let (result, returned) = file.read_at(piece, offset).await;
        piece = returned;
        let count = result?;
        if count < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("read {count} of {want} bytes at offset {offset}"),
            ));
        }
        if is_zero(&piece) {
            zeros_behind += count;
        } else {
            bytes.resize(bytes.len() + zeros_behind, 0);
            zeros_behind = 0;
            bytes.extend_from_slice(&piece);
        }
        offset += count as u64;
    }
    bytes.resize(bytes.len() + zeros_behind.min(zeros_kept), 0);
    Ok(bytes)
}

/// Whether every byte is zero; a page at a time, each folded whole so the compiler vectorizes it.
fn is_zero(bytes: &[u8]) -> bool {
    bytes.chunks(4096).all(|page| page.iter().fold(0, |any, &byte| any | byte) == 0)
}

impl Wal {
    /// Opens (recovering) or creates the log in `dir`, and starts its writer task.
    pub async fn open(rt: &Runtime, dir: &str, options: Options) -> Result<Wal, WalError> {
        options.check()?;
        strata_rt::check_path(dir).map_err(|error| WalError::io("check path", dir, error))?;
        let disk = rt.disk();
        disk.create_dir_all(dir).await.map_err(|error| WalError::io("create dir", dir, error))?;
        let names = disk.list(dir).await.map_err(|error| WalError::io("list", dir, error))?;
        if names.iter().any(|name| name == segment::SPARE_FILE_NAME) {
            // Half made, maybe: it is made again from scratch.
            let path = format!("{dir}/{}", segment::SPARE_FILE_NAME);
            disk.remove(&path).await.map_err(|error| WalError::io("remove", &path, error))?;
        }
        let mut ids: Vec<u64> =
            names.iter().filter_map(|name| segment::parse_file_name(name)).collect();
        ids.sort_unstable();
        let mut inputs = Vec::with_capacity(ids.len());
        let mut files = Vec::with_capacity(ids.len());
        for &id in &ids {
            let path = format!("{dir}/{}", segment::file_name(id));
            let file =
                disk.open(&path).await.map_err(|error| WalError::io("open", &path, error))?;
            let len = file.len().await.map_err(|error| WalError::io("len", &path, error))?;
            let zeros_kept = record::encoded_len(options.record_bytes_max as usize);
            let bytes = read_segment(&file, len, zeros_kept)
                .await
                .map_err(|error| WalError::io("read", &path, error))?;
            let scan = recovery::scan_segment(&bytes, options.payload_bytes_max())
                .map(|scan| ScannedSegment { file_len: len, ..scan });
            inputs.push(SegmentInput { id, scan });
            files.push(file);
        }
        let plan = recovery::plan(&inputs).map_err(|corruption| WalError::Corruption {
            path: format!("{dir}/{}", segment::file_name(corruption.segment)),
            segment: corruption.segment,
            offset: corruption.offset,
            reason: corruption.reason,
        })?;
        // Carry the plan out before anything new is written: removals and the cut made durable.
        for &id in &plan.removed {
            let path = format!("{dir}/{}", segment::file_name(id));
            disk.remove(&path).await.map_err(|error| WalError::io("remove", &path, error))?;
        }
        if !plan.removed.is_empty() {
            disk.sync_dir(dir).await.map_err(|error| WalError::io("sync dir", dir, error))?;
        }
        let mut segments = Vec::with_capacity(plan.kept.len());
        let last_kept = plan.kept.last().map(|kept| kept.id);
        for kept in &plan.kept {
            let position = ids.iter().position(|&id| id == kept.id).expect("kept ids were listed");
            let file = files[position].clone();
            // The last segment is cut even at its current length: a cut whose sync failed
            // before an in-process reopen shows in the page cache while the media keeps the old
            // tail, which new records would otherwise be written over and later joined to.
            if kept.file_len > kept.end_offset || Some(kept.id) == last_kept {
                let path = format!("{dir}/{}", segment::file_name(kept.id));
                file.truncate(kept.end_offset)
                    .await
                    .map_err(|error| WalError::io("truncate", &path, error))?;
                if options.preallocate && Some(kept.id) == last_kept {
                    // Appends continue here: allocated again, so their syncs stay data-only.
                    file.allocate(options.segment_bytes)
                        .await
                        .map_err(|error| WalError::io("allocate", &path, error))?;
                }
                file.sync().await.map_err(|error| WalError::io("sync", &path, error))?;
            }
            segments.push(Segment {
                id: kept.id,
                first_index: kept.first_index,
                file,
                records: kept
                    .records
                    .iter()
                    .map(|RecordLocation { offset, data_len, .. }| (*offset, *data_len))
                    .collect(),
                end: kept.end_offset,
            });
        }
        let witness = inputs
            .iter()
            .map(|input| input.scan.as_ref().map_or(0, |scan| scan.witness_all))
            .max()
            .unwrap_or(0);
        for segment in &segments {
            make_durable_after(dir, segment, witness).await?;
        }
        if !segments.is_empty() {
            // An earlier open or rollover may have created a segment and failed before its name
            // was durable; records about to be acknowledged in it need the name on the media.
            disk.sync_dir(dir).await.map_err(|error| WalError::io("sync dir", dir, error))?;
        }
        let next_segment_id = ids.last().map_or(1, |id| id + 1);
        let recovery = Recovery {
            torn_tail: plan.torn_tail,
            removed_segments: plan.removed.clone(),
            records: segments.iter().map(|segment| segment.records.len() as u64).sum(),
        };
        let (first_index, next_index) = match (segments.first(), segments.last()) {
            (Some(first), Some(last)) => (first.first_index, last.next_index()),
            _ => (options.first_index, options.first_index),
        };
        let shared = Rc::new(Shared {
            rt: rt.clone(),
            dir: dir.to_string(),
            options,
            recovery,
            state: RefCell::new(State {
                segments,
                first_index,
                next_index,
                durable_index: next_index - 1,
                pending: VecDeque::new(),
                in_flight_bytes: 0,
                writing: false,
                exclusive: false,
                failed: None,
                wakers: Vec::new(),
                next_segment_id,
                spare: Spare::Absent,
            }),
        });
        if shared.state.borrow().segments.is_empty() {
            create_segment(&shared, next_index).await?;
        }
        start_spare(&shared);
        let weak = Rc::downgrade(&shared);
        // Detached: the writer ends when the last handle on the log is dropped.
        drop(rt.spawn(writer(weak)));
        Ok(Wal { shared })
    }

    /// What recovery found at open.
    pub fn recovery(&self) -> &Recovery {
        &self.shared.recovery
    }

    /// Appends `data`; resolves with its index once it is durable.
    pub async fn append(&self, data: Vec<u8>) -> Result<u64, WalError> {
        let max = self.shared.options.record_bytes_max;
        if data.len() > max as usize {
            return Err(WalError::RecordTooLarge { size_bytes: data.len(), size_bytes_max: max });
        }
        let size = record::encoded_len(data.len());
        let bound = self.shared.options.in_flight_bytes_max;
        let mut data = Some(data);
        let index = wait_for(&self.shared, |state| {
            if let Some(error) = latched(state) {
                return Some(Err(error));
            }
            if state.exclusive
                || (state.in_flight_bytes > 0 && state.in_flight_bytes + size > bound)
            {
                return None;
            }
            let index = state.next_index;
            state.next_index += 1;
            state.in_flight_bytes += size;
            state.pending.push_back((index, data.take().expect("taken once")));
            Some(Ok(index))
        })
        .await?;
        self.shared.notify();
        wait_for(&self.shared, |state| {
            if state.durable_index >= index {
                Some(Ok(index))
            } else {
                latched(state).map(Err)
            }
        })
        .await
    }

    /// Appends `records` at consecutive indices (nothing else interleaves); resolves with the
    /// first and last index once all are durable. Raft appends a batch of entries this way.
    pub async fn append_many(&self, records: Vec<Vec<u8>>) -> Result<(u64, u64), WalError> {
        let max = self.shared.options.record_bytes_max;
        if let Some(large) = records.iter().find(|data| data.len() > max as usize) {
            return Err(WalError::RecordTooLarge { size_bytes: large.len(), size_bytes_max: max });
        }
        if records.is_empty() {
            return Err(WalError::Invalid { reason: "append_many of no records".into() });
        }
        let size: usize = records.iter().map(|data| record::encoded_len(data.len())).sum();
        let bound = self.shared.options.in_flight_bytes_max;
        let mut records = Some(records);
        let (first, last) = wait_for(&self.shared, |state| {
            if let Some(error) = latched(state) {
                return Some(Err(error));
            }
            if state.exclusive
                || (state.in_flight_bytes > 0 && state.in_flight_bytes + size > bound)
            {
                return None;
            }
            let first = state.next_index;
            for data in records.take().expect("taken once") {
                let index = state.next_index;
                state.next_index += 1;
                state.pending.push_back((index, data));
            }
            state.in_flight_bytes += size;
            Some(Ok((first, state.next_index - 1)))
        })
        .await?;
        self.shared.notify();
        wait_for(&self.shared, |state| {
            if state.durable_index >= last {
                Some(Ok((first, last)))
            } else {
                latched(state).map(Err)
            }
        })
        .await
    }

    /// Waits until every record appended so far is durable.
    pub async fn flush(&self) -> Result<(), WalError> {
        let target = self.shared.state.borrow().next_index - 1;
        wait_for(&self.shared, |state| {
            if state.durable_index >= target {
                Some(Ok(()))
            } else {
                latched(state).map(Err)
            }
        })
        .await
    }

    /// Reads the durable record at `index`, verifying its checksum.
    pub async fn read(&self, index: u64) -> Result<Vec<u8>, WalError> {
        let (file, path, id, offset, data_len) = {
            let state = self.shared.state.borrow();
            if index < state.first_index || index > state.durable_index {
                return Err(WalError::OutOfRange {
                    index,
                    first: state.first_index,
                    last: state.durable_index,
                });
            }
            let position = state.segments.partition_point(|segment| segment.first_index <= index);
            let segment = &state.segments[position - 1];
            let (offset, data_len) = segment.records[(index - segment.first_index) as usize];
            (segment.file.clone(), self.shared.path(segment.id), segment.id, offset, data_len)
        };
        let len = record::encoded_len(data_len as usize);
        let bytes = file
            .read_exact_at(len, offset)
            .await
            .map_err(|error| WalError::io("read", &path, error))?;
        let corrupt =
            |reason| WalError::Corruption { path: path.clone(), segment: id, offset, reason };
        let view = record::decode(&bytes, id, self.shared.options.payload_bytes_max())
            .map_err(|_| corrupt("record checksum on read"))?;
        if view.index != index {
            return Err(corrupt("record index on read"));
        }
        Ok(view.data.to_vec())
    }

    /// Reads every durable record from `from` on, segment by segment, verifying checksums.
    pub async fn read_from(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
        let (segments, durable) = {
            let state = self.shared.state.borrow();
            let list: Vec<SegmentSnapshot> = state
                .segments
                .iter()
                .filter(|segment| segment.next_index() > from && !segment.records.is_empty())
                .map(|segment| {
                    (segment.id, segment.file.clone(), segment.records.clone(), segment.first_index)
                })
                .collect();
            (list, state.durable_index)
        };
        let mut out = Vec::new();
        for (id, file, records, first_index) in segments {
            let path = self.shared.path(id);
            let start = from.saturating_sub(first_index) as usize;
            let stop = records.len().min((durable + 1).saturating_sub(first_index) as usize);
            if start >= stop {
                continue;
            }
            let begin = records[start].0;
            let (last_offset, last_len) = records[stop - 1];
            let end = last_offset + record::encoded_len(last_len as usize) as u64;
            let bytes = file
                .read_exact_at((end - begin) as usize, begin)
                .await
                .map_err(|error| WalError::io("read", &path, error))?;
            for (position, &(offset, _)) in records.iter().enumerate().take(stop).skip(start) {
                let index = first_index + position as u64;
                let corrupt = |reason| WalError::Corruption {
                    path: path.clone(),
                    segment: id,
                    offset,
                    reason,
                };
                let view = record::decode(
                    &bytes[(offset - begin) as usize..],
                    id,
                    self.shared.options.payload_bytes_max(),
                )
                .map_err(|_| corrupt("record checksum on read"))?;
                if view.index != index {
                    return Err(corrupt("record index on read"));
                }
                out.push((index, view.data.to_vec()));
            }
        }
        Ok(out)
    }

    /// Index of the first readable record (the log is empty when it exceeds `last_index`).
    pub fn first_index(&self) -> u64 {
        self.shared.state.borrow().first_index
    }

    /// Index of the last appended record (durable or not).
    pub fn last_index(&self) -> u64 {
        self.shared.state.borrow().next_index - 1
    }

    /// Index of the last durable record.
    pub fn durable_index(&self) -> u64 {
        self.shared.state.borrow().durable_index
    }

    pub fn segment_count(&self) -> usize {
        self.shared.state.borrow().segments.len()
    }

    /// The latched failure, if any.
    pub fn failure(&self) -> Option<WalError> {
        self.shared.state.borrow().failed.clone()
    }

    /// Drops the records before `index` (Raft log compaction). Whole segments holding only such
    /// records are deleted, oldest first, each deletion made durable before the next; records of
    /// a partly dropped segment stay on disk and may be seen again after a reopen.
    pub async fn truncate_prefix(&self, index: u64) -> Result<(), WalError> {
        let shared = &self.shared;
        {
            let mut state = shared.state.borrow_mut();
            if let Some(error) = latched(&state) {
                return Err(error);
            }
            if index > state.durable_index + 1 {
                return Err(WalError::OutOfRange {
                    index,
                    first: state.first_index,
                    last: state.durable_index,
                });
            }
            state.first_index = state.first_index.max(index);
        }
        loop {
            let victim = {
                let mut state = shared.state.borrow_mut();
                let removable = state.segments.len() >= 2 && state.segments[1].first_index <= index;
                if !removable {
                    break;
                }
                state.segments.remove(0).id
            };
            let path = shared.path(victim);
            let result = async {
                shared
                    .rt
                    .disk()
                    .remove(&path)
                    .await
                    .map_err(|error| WalError::io("remove", &path, error))?;
                shared
                    .rt
                    .disk()
                    .sync_dir(&shared.dir)
                    .await
                    .map_err(|error| WalError::io("sync dir", &shared.dir, error))
            }
            .await;
            result.map_err(|error| shared.fail(error))?;
        }
        Ok(())
    }

    /// Drops the records from `index` on (Raft log conflicts). Waits for appends in flight, then
    /// cuts the files, making the cut durable before any later append is written.
    pub async fn truncate_suffix(&self, index: u64) -> Result<(), WalError> {
        let shared = &self.shared;
        // Take the log for ourselves once the writer is idle and nothing is queued.
        wait_for(shared, |state| {
            if let Some(error) = latched(state) {
                return Some(Err(error));
            }
            if state.exclusive || state.writing || !state.pending.is_empty() {
                return None;
            }
            state.exclusive = true;
            Some(Ok(()))
        })
        .await?;
        let result = self.cut(index).await;
        shared.state.borrow_mut().exclusive = false;
        shared.notify();
        result
    }

    async fn cut(&self, index: u64) -> Result<(), WalError> {
        let shared = &self.shared;
        let (removed, cut) = {
            let mut guard = shared.state.borrow_mut();
            let state = &mut *guard;
            if index < state.first_index || index > state.next_index {
                return Err(WalError::OutOfRange {
                    index,
                    first: state.first_index,
                    last: state.next_index - 1,
                });
            }
            if index == state.next_index {
                return Ok(());
            }
            // Keep at least one segment: the one holding `index` becomes the active one.
            let keep =
                state.segments.partition_point(|segment| segment.first_index <= index).max(1);
            let removed: Vec<u64> =
                state.segments.drain(keep..).map(|segment| segment.id).collect();
            let active = state.segments.last_mut().expect("one segment is kept");
            let position = (index - active.first_index) as usize;
            let offset = active.records.get(position).map_or(active.end, |&(offset, _)| offset);
            active.records.truncate(position);
            active.end = offset;
            let cut = (active.file.clone(), active.id, offset);
            state.next_index = index;
            state.durable_index = state.durable_index.min(index - 1);
            (removed, cut)
        };
        let result = async {
            let disk = shared.rt.disk();
            // Newest first, so a crash part-way leaves a log that ends early, never one with a hole.
            for id in removed.iter().rev() {
                let path = shared.path(*id);
                disk.remove(&path).await.map_err(|error| WalError::io("remove", &path, error))?;
                disk.sync_dir(&shared.dir)
                    .await
                    .map_err(|error| WalError::io("sync dir", &shared.dir, error))?;
            }
            let (file, id, offset) = cut;
            let path = shared.path(id);
            file.truncate(offset).await.map_err(|error| WalError::io("truncate", &path, error))?;
            file.sync().await.map_err(|error| WalError::io("sync", &path, error))
        }
        .await;
        result.map_err(|error| shared.fail(error))
    }
}

/// Creates (or takes the ready spare as), preallocates and durably names the segment for records
/// from `first_index`.
async fn create_segment(shared: &Rc<Shared>, first_index: u64) -> Result<(), WalError> {
    let (id, spare) = {
        let mut state = shared.state.borrow_mut();
        let id = state.next_segment_id;
        state.next_segment_id += 1;
        let spare = match std::mem::replace(&mut state.spare, Spare::Absent) {
            Spare::Ready(file) => Some(file),
            other => {
                state.spare = other;
                None
            }
        };
        (id, spare)
    };
    let path = shared.path(id);
    let disk = shared.rt.disk();
    let file = match spare {
        Some(file) => {
            let spare_path = shared.spare_path();
            disk.rename(&spare_path, &path)
                .await
                .map_err(|error| WalError::io("rename spare", &spare_path, error))?;
            file
        }
        None => {
            let file = disk
                .create_new(&path)
                .await
                .map_err(|error| WalError::io("create", &path, error))?;
            if shared.options.preallocate {
                file.allocate(shared.options.segment_bytes)
                    .await
                    .map_err(|error| WalError::io("allocate", &path, error))?;
            }
            file
        }
    };
    let header = SegmentHeader { id, first_index }.encode().to_vec();
    let (result, _) = file.write_at(header, 0).await;
    result.map_err(|error| WalError::io("write header", &path, error))?;
    file.sync().await.map_err(|error| WalError::io("sync", &path, error))?;
    disk.sync_dir(&shared.dir)
        .await
        .map_err(|error| WalError::io("sync dir", &shared.dir, error))?;
    shared.state.borrow_mut().segments.push(Segment {
        id,
        first_index,
        file,
        records: Vec::new(),
        end: HEADER_BYTES as u64,
    });
    start_spare(shared);
    Ok(())
}

/// Starts making the next segment ready in the background, unless one is ready or on its way.
fn start_spare(shared: &Rc<Shared>) {
    {
        let mut state = shared.state.borrow_mut();
        if !shared.options.preallocate || !matches!(state.spare, Spare::Absent) {
            return;
        }
        state.spare = Spare::Preparing;
    }
    // Detached and holding the log only weakly: a dropped log leaves a spare file that the next
    // open deletes.
    drop(shared.rt.spawn(prepare_spare(Rc::downgrade(shared))));
}

async fn prepare_spare(weak: Weak<Shared>) {
    let Some(shared) = weak.upgrade() else { return };
    let (rt, path, len) = (shared.rt.clone(), shared.spare_path(), shared.options.segment_bytes);
    drop(shared);
    let gone = || std::io::Error::other("the log was dropped");
    // A file of its own (the old one unlinked first, then created exclusively): a task of a log
    // dropped and reopened in this process may still be writing to the one it made.
    let prepared = async {
        let disk = rt.disk();
        match disk.remove(&path).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let file = disk.create_new(&path).await?;
        let mut allocated = 0;
        while allocated < len {
            if !quiet_or_urgent(&weak).await {
                return Err(gone());
            }
            allocated = (allocated + SPARE_STEP_BYTES).min(len);
            file.allocate(allocated).await?;
            file.sync_data().await?;
        }
        file.sync().await?;
        Ok::<File, std::io::Error>(file)
    }
    .await;
    let Some(shared) = weak.upgrade() else { return };
    // A failure here loses nothing: the next segment is then made where it is needed, and that
    // reports the error if the disk still has it.
    shared.state.borrow_mut().spare = match prepared {
        Ok(file) => Spare::Ready(file),
        Err(_) => Spare::Absent,
    };
}

/// A spare segment's zeros are written and synced this much at a time, each step when the log
/// is quiet (see [`quiet_or_urgent`]).
const SPARE_STEP_BYTES: u64 = 256 << 10;

/// Waits until the log has no write in flight and nothing queued: just after a batch, while its
/// callers work on the next, the disk is idle. A step of the spare's zeros issued then is
/// likely done before the next batch's sync, instead of holding it up (64 MiB of zeros written
/// at once doubled the syncs of the appends meanwhile: a fifth fewer SETs per second under
/// `redis-benchmark -P 16`). Once the active segment is half full the spare is due, and waits
/// no more (under appends that never pause, all of it is written from there; a spare not
/// ready at the roll is made inline, as before). `false` if the log is gone.
async fn quiet_or_urgent(weak: &Weak<Shared>) -> bool {
    std::future::poll_fn(|context| {
        let Some(shared) = weak.upgrade() else { return Poll::Ready(false) };
        let mut state = shared.state.borrow_mut();
        let quiet = !state.writing && state.pending.is_empty();
        let active_end = state.segments.last().map_or(0, |segment| segment.end);
        let urgent = active_end >= shared.options.segment_bytes / 2;
        if quiet || urgent || state.failed.is_some() {
            return Poll::Ready(true);
        }
        state.wakers.push(context.waker().clone());
        Poll::Pending
    })
    .await
}

/// What the writer does next.
enum Work {
    /// Write these records to the active segment.
    Batch(Vec<(u64, Vec<u8>)>),
    /// The next record does not fit the active segment: start a new one at this index.
    Roll(u64),
    Stop,
}

/// The group-commit loop: one write and one sync per batch of queued records.
async fn writer(weak: Weak<Shared>) {
    loop {
        let work = std::future::poll_fn(|context| {
            let Some(shared) = weak.upgrade() else { return Poll::Ready(Work::Stop) };
            let mut state = shared.state.borrow_mut();
            if state.failed.is_some() {
                return Poll::Ready(Work::Stop);
            }
            if state.exclusive || state.pending.is_empty() {
                state.wakers.push(context.waker().clone());
                return Poll::Pending;
            }
            let active = state.segments.last().expect("the log always has a segment");
            let room = shared.options.segment_bytes.saturating_sub(active.end) as usize;
            let first_size = record::encoded_len(state.pending[0].1.len());
            if first_size > room {
                let index = state.pending[0].0;
                state.writing = true;
                return Poll::Ready(Work::Roll(index));
            }
            let limit = room.min(shared.options.batch_bytes_max.max(first_size));
            let mut taken = 0;
            let mut batch = Vec::new();
            while let Some((_, data)) = state.pending.front() {
                let size = record::encoded_len(data.len());
                if taken + size > limit {
                    break;
                }
                taken += size;
                batch.push(state.pending.pop_front().expect("front exists"));
            }
            state.writing = true;
            Poll::Ready(Work::Batch(batch))
        })
        .await;
        let Some(shared) = weak.upgrade() else { return };
        let result = match work {
            Work::Stop => return,
            Work::Roll(index) => create_segment(&shared, index).await,
            Work::Batch(batch) => write_batch(&shared, batch).await,
        };
        shared.state.borrow_mut().writing = false;
        match result {
            Ok(()) => shared.notify(),
            Err(error) => {
                shared.fail(error);
                return;
            }
        }
    }
}

async fn write_batch(shared: &Rc<Shared>, batch: Vec<(u64, Vec<u8>)>) -> Result<(), WalError> {
    let (file, id, start, synced_through) = {
        let state = shared.state.borrow();
        let active = state.segments.last().expect("the log always has a segment");
        assert_eq!(active.next_index(), batch[0].0, "batch continues the active segment");
        (active.file.clone(), active.id, active.end, state.durable_index)
    };
    let mut buffer =
        Vec::with_capacity(batch.iter().map(|(_, data)| record::encoded_len(data.len())).sum());
    let mut locations = Vec::with_capacity(batch.len());
    for (index, data) in &batch {
        locations.push((start + buffer.len() as u64, data.len() as u32));
        record::encode(&mut buffer, id, *index, synced_through, data);
    }
    let written = buffer.len();
    let path = shared.path(id);
    if strata_rt::buggify!() {
        // Widen the window in which later appends pile up behind this batch.
        strata_rt::sync::yield_now().await;
    }
    // Written and synced in one operation (RWF_DSYNC on io_uring): everything before `start` is
    // durable already, and only the data needs syncing: a segment is allocated whole, so no
    // metadata is needed to read the batch back (a size change, after a cut, is flushed too).
    let (result, _) = file.write_durable_at(buffer, start).await;
    result.map_err(|error| WalError::io("durable write", &path, error))?;
    let mut state = shared.state.borrow_mut();
    let last = batch.last().expect("batches are not empty").0;
    let active = state.segments.last_mut().expect("the log always has a segment");
    assert_eq!(active.id, id, "the active segment did not change during a batch");
    active.records.extend(locations);
    active.end = start + written as u64;
    state.durable_index = last;
    state.in_flight_bytes -= written;
    Ok(())
}
