//! Snapshot streams as the host moves them between replicas.
//!
//! A state machine's snapshot is a byte stream ([`crate::SnapshotReader`]). The host cuts it into
//! checksummed frames and ends it with a footer that names the snapshot and checksums the whole
//! stream; Raft carries these framed bytes in chunks, and a follower stages them in a file. The
//! follower reads the staged file through once (`verify`) before it records the snapshot as
//! its log's start, and the machine installs from a [`SnapshotSource`], which checks every frame
//! again as it goes: a damaged or mixed-up stream is found, never installed.
//!
//! Layout (little-endian), see docs/format.md "Multi-Raft snapshot stream": frames
//! `[len u32][crc32c u32][payload]`, each holding [`FRAME_PAYLOAD_BYTES`] bytes of the machine's
//! stream except the last, which holds fewer (maybe none); then the footer
//! `[index u64][term u64][stream bytes u64][stream crc32c u32]`.
//!
//! Every frame but the last has the same size, so a byte offset of the framed stream maps to a
//! frame by arithmetic, and a transfer resumes at any offset.

use crate::SnapshotReader;
use strata_raft::SnapshotMeta;
use strata_rt::File;
use strata_rt::Runtime;

/// Machine bytes per frame.
pub const FRAME_PAYLOAD_BYTES: usize = 64 << 10;
const FRAME_HEADER_BYTES: usize = 8;
const FRAME_BYTES: u64 = (FRAME_PAYLOAD_BYTES + FRAME_HEADER_BYTES) as u64;
const FOOTER_BYTES: usize = 8 + 8 + 8 + 4;

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn footer(meta: &SnapshotMeta, stream_bytes: u64, stream_crc: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.extend_from_slice(&stream_bytes.to_le_bytes());
    out.extend_from_slice(&stream_crc.to_le_bytes());
}

/// The leader's side: serves the framed stream of one machine snapshot at any offset.
pub(crate) struct FramedReader<R: SnapshotReader> {
    meta: SnapshotMeta,
    machine: R,
    /// The crc32c of the machine's bytes `0..hashed`.
    crc: u32,
    hashed: u64,
    /// The last frame built (its number and framed bytes, with the footer if it is the last):
    /// chunks need not end on frame boundaries, and the next chunk goes on in the same frame.
    cached: Option<(u64, Vec<u8>, bool)>,
}

impl<R: SnapshotReader> FramedReader<R> {
    pub(crate) fn new(meta: SnapshotMeta, machine: R) -> FramedReader<R> {
        FramedReader { meta, machine, crc: 0, hashed: 0, cached: None }
    }

    pub(crate) fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Up to `length_max` bytes of the framed stream from `offset`, and whether they reach its
    /// end.
    pub(crate) async fn read(
        &mut self,
        offset: u64,
        length_max: u64,
    ) -> Result<(Vec<u8>, bool), String> {
        let mut out = Vec::new();
        let mut position = offset;
        loop {
            let number = position / FRAME_BYTES;
            let within = (position % FRAME_BYTES) as usize;
            let (bytes, last) = self.frame(number).await?;
            if within > bytes.len() || (within == bytes.len() && !last) {
                return Err(format!("offset {offset} is past the snapshot's end"));
            }
            let room = (length_max as usize).saturating_sub(out.len());
            let taken = room.min(bytes.len() - within);
            out.extend_from_slice(&bytes[within..within + taken]);
            position += taken as u64;
            let done = last && within + taken == bytes.len();
            if done || out.len() as u64 >= length_max {
                return Ok((out, done));
            }
        }
    }

    /// Frame `number` as sent (with the footer after the last), and whether it is the last.
    async fn frame(&mut self, number: u64) -> Result<(&[u8], bool), String> {
        if self.cached.as_ref().is_none_or(|(cached, _, _)| *cached != number) {
            let start = number * FRAME_PAYLOAD_BYTES as u64;
            self.hash_up_to(start).await?;
            let payload = self.machine.read(start, FRAME_PAYLOAD_BYTES).await?;
            if self.hashed == start {
                self.crc = crc32c::crc32c_append(self.crc, &payload);
                self.hashed += payload.len() as u64;
            }
            let last = payload.len() < FRAME_PAYLOAD_BYTES;
            let mut bytes = Vec::with_capacity(payload.len() + FRAME_HEADER_BYTES + FOOTER_BYTES);
            frame(&payload, &mut bytes);
            if last {
                let stream_bytes = start + payload.len() as u64;
                assert_eq!(self.hashed, stream_bytes, "the whole stream is hashed at its end");
                footer(&self.meta, stream_bytes, self.crc, &mut bytes);
            }
            self.cached = Some((number, bytes, last));
        }
        let (_, bytes, last) = self.cached.as_ref().expect("just filled");
        Ok((bytes, *last))
    }

    /// Extends the stream's checksum up to `start` (reading the bytes of a transfer that
    /// resumed past bytes this leader never read), before the frame at `start` is read, so that
    /// the machine's stream is read in order.
    async fn hash_up_to(&mut self, start: u64) -> Result<(), String> {
        while self.hashed < start {
            let length = (start - self.hashed).min(FRAME_PAYLOAD_BYTES as u64) as usize;
            let gap = self.machine.read(self.hashed, length).await?;
            if gap.len() != length {
                return Err("the snapshot stream ended early".into());
            }
            self.crc = crc32c::crc32c_append(self.crc, &gap);
            self.hashed += length as u64;
        }
        Ok(())
    }
}

/// Reads a staged snapshot file frame by frame, checking each, then the footer.
pub struct SnapshotSource {
    file: File,
    path: String,
    len: u64,
    meta_index: u64,
    meta_term: u64,
    position: u64,
    stream_bytes: u64,
    crc: u32,
    finished: bool,
}

impl SnapshotSource {
    pub(crate) async fn open(
        rt: &Runtime,
        path: &str,
        meta: &SnapshotMeta,
    ) -> Result<SnapshotSource, String> {
        let file = rt.disk().open(path).await.map_err(|error| format!("open {path}: {error}"))?;
        let len = file.len().await.map_err(|error| format!("size of {path}: {error}"))?;
        Ok(SnapshotSource {
            file,
            path: path.to_owned(),
            len,
            meta_index: meta.index,
            meta_term: meta.term,
            position: 0,
            stream_bytes: 0,
            crc: 0,
            finished: false,
        })
    }

    fn corrupt(&self, what: &str) -> String {
        format!("snapshot {}: {what} at byte {}", self.path, self.position)
    }

    async fn read_exact(&mut self, len: usize) -> Result<Vec<u8>, String> {
        if self.position + len as u64 > self.len {
            return Err(self.corrupt("the file ends early"));
        }
        let bytes = self
            .file
            .read_exact_at(len, self.position)
            .await
            .map_err(|error| format!("read {}: {error}", self.path))?;
        self.position += len as u64;
        Ok(bytes)
    }

    /// The next piece of the machine's stream (one frame's payload, checked); `None` at its end,
    /// once the footer matched the snapshot and everything before it.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.finished {
            return Ok(None);
        }
        let header = self.read_exact(FRAME_HEADER_BYTES).await?;
        let (len, crc) = parse_frame_header(&header).map_err(|what| self.corrupt(what))?;
        let payload = self.read_exact(len).await?;
        if crc32c::crc32c(&payload) != crc {
            return Err(self.corrupt("a frame's checksum does not match"));
        }
        self.crc = crc32c::crc32c_append(self.crc, &payload);
        self.stream_bytes += len as u64;
        if len == FRAME_PAYLOAD_BYTES {
            return Ok(Some(payload));
        }
        self.check_footer().await?;
        self.finished = true;
        Ok(if payload.is_empty() { None } else { Some(payload) })
    }

    async fn check_footer(&mut self) -> Result<(), String> {
        let bytes = self.read_exact(FOOTER_BYTES).await?;
        let expected = (self.meta_index, self.meta_term, self.stream_bytes, self.crc);
        check_footer(&bytes, expected).map_err(|what| self.corrupt(what))?;
        if self.position != self.len {
            return Err(self.corrupt("bytes after the footer"));
        }
        Ok(())
    }
}

/// A frame header's payload length and checksum.
fn parse_frame_header(header: &[u8]) -> Result<(usize, u32), &'static str> {
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > FRAME_PAYLOAD_BYTES {
        return Err("a frame longer than any");
    }
    Ok((len, crc))
}

/// Checks a footer against the (index, term, stream bytes, stream crc) expected.
fn check_footer(bytes: &[u8], expected: (u64, u64, u64, u32)) -> Result<(), &'static str> {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if (u64_at(0), u64_at(8)) != (expected.0, expected.1) {
        return Err("the footer names another snapshot");
    }
    if (u64_at(16), crc) != (expected.2, expected.3) {
        return Err("the stream's length or checksum does not match");
    }
    Ok(())
}

/// The machine's stream inside a framed stream of snapshot (`index`, `term`), checked as a
/// follower checks what it staged.
pub fn unframe(framed: &[u8], index: u64, term: u64) -> Result<Vec<u8>, &'static str> {
    let mut stream = Vec::new();
    let mut rest = framed;
    loop {
        let header = rest.get(..FRAME_HEADER_BYTES).ok_or("the stream ends early")?;
        let (len, crc) = parse_frame_header(header)?;
        let payload = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len);
        let payload = payload.ok_or("the stream ends early")?;
        if crc32c::crc32c(payload) != crc {
            return Err("a frame's checksum does not match");
        }
        stream.extend_from_slice(payload);
        rest = &rest[FRAME_HEADER_BYTES + len..];
        if len < FRAME_PAYLOAD_BYTES {
            break;
        }
    }
    let footer = rest.get(..FOOTER_BYTES).ok_or("the stream ends early")?;
    let expected = (index, term, stream.len() as u64, crc32c::crc32c(&stream));
    check_footer(footer, expected)?;
    if rest.len() != FOOTER_BYTES {
        return Err("bytes after the footer");
    }
    Ok(stream)
}

/// Fuzz body (`fuzz/fuzz_targets/multiraft_snapshot.rs`): any bytes staged as a snapshot are
/// refused cleanly or unframe to a stream that frames back to exactly them.
pub fn fuzz_stream(data: &[u8]) {
    // The snapshot the footer names, so that well-formed inputs get through.
    let footer_at = data.len().saturating_sub(FOOTER_BYTES);
    let (index, term) = match data.get(footer_at..footer_at + 16) {
        Some(head) => (
            u64::from_le_bytes(head[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(head[8..].try_into().expect("8 bytes")),
        ),
        None => (0, 0),
    };
    if let Ok(stream) = unframe(data, index, term) {
        let mut framed = Vec::new();
        let mut pieces = stream.chunks(FRAME_PAYLOAD_BYTES).peekable();
        while let Some(piece) = pieces.next() {
            frame(piece, &mut framed);
            if pieces.peek().is_none() && piece.len() == FRAME_PAYLOAD_BYTES {
                frame(&[], &mut framed);
            }
        }
        if stream.is_empty() {
            frame(&[], &mut framed);
        }
        let membership = strata_raft::Membership::default();
        footer(
            &SnapshotMeta { index, term, membership },
            stream.len() as u64,
            crc32c::crc32c(&stream),
            &mut framed,
        );
        assert_eq!(framed, data, "a checked stream frames back to its bytes");
    }
}

/// Reads the staged file at `path` through, checking every frame and the footer.
pub(crate) async fn verify(rt: &Runtime, path: &str, meta: &SnapshotMeta) -> Result<(), String> {
    let mut source = SnapshotSource::open(rt, path, meta).await?;
    while source.next().await?.is_some() {}
    Ok(())
}

/// Where a group's snapshot received from a leader is staged.
pub(crate) fn staged_path(dir: &str, group: u64, meta: &SnapshotMeta) -> String {
    format!("{dir}/{group}-{}-{}", meta.index, meta.term)
}

/// The group and snapshot index of a staged file's name.
pub(crate) fn parse_staged_name(name: &str) -> Option<(u64, u64)> {
    let mut parts = name.split('-');
    let group = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    let _term: u64 = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((group, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    /// A stream of `len` bytes, byte `i` being `i * 7 % 251`.
    struct Pattern {
        len: u64,
        reads: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl SnapshotReader for Pattern {
        fn read(
            &mut self,
            offset: u64,
            length_max: usize,
        ) -> impl Future<Output = Result<Vec<u8>, String>> {
            self.reads.set(self.reads.get() + 1);
            let end = (offset + length_max as u64).min(self.len);
            let bytes = (offset..end).map(|i| (i * 7 % 251) as u8).collect();
            std::future::ready(Ok(bytes))
        }
    }

    fn meta() -> SnapshotMeta {
        let membership = strata_raft::Membership::with_voters([strata_rt::NodeId(0)]);
        SnapshotMeta { index: 42, term: 3, membership }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the test readers never wait"),
        }
    }

    /// The framed stream, read in chunks of `chunk` bytes.
    fn framed(len: u64, chunk: u64) -> (Vec<u8>, u64) {
        let reads = std::rc::Rc::default();
        let mut reader = FramedReader::new(meta(), Pattern { len, reads: Rc::clone(&reads) });
        let mut out = Vec::new();
        loop {
            let (bytes, done) = block_on(reader.read(out.len() as u64, chunk)).expect("reads");
            out.extend_from_slice(&bytes);
            if done {
                return (out, reads.get());
            }
            assert!(!bytes.is_empty(), "a chunk before the end is not empty");
        }
    }

    use std::rc::Rc;

    #[test]
    fn the_stream_does_not_depend_on_the_chunk_size() {
        let len = 3 * FRAME_PAYLOAD_BYTES as u64 + 5;
        let (whole, _) = framed(len, u64::MAX >> 1);
        for chunk in [1000, FRAME_BYTES, FRAME_BYTES + 1, 1 << 20] {
            assert_eq!(framed(len, chunk).0, whole, "chunk {chunk}");
        }
        let expected = len + 4 * FRAME_HEADER_BYTES as u64 + FOOTER_BYTES as u64;
        assert_eq!(whole.len() as u64, expected);
    }

    #[test]
    fn sequential_chunks_read_each_frame_once() {
        let len = 4 * FRAME_PAYLOAD_BYTES as u64;
        let (_, reads) = framed(len, 1000);
        assert_eq!(reads, 5, "four full frames and an empty last one");
    }

    #[test]
    fn an_empty_stream_is_one_empty_frame_and_the_footer() {
        let (bytes, _) = framed(0, 1 << 20);
        assert_eq!(bytes.len(), FRAME_HEADER_BYTES + FOOTER_BYTES);
    }

    #[test]
    fn a_transfer_resumed_midway_still_ends_with_the_whole_streams_checksum() {
        let len = 2 * FRAME_PAYLOAD_BYTES as u64 + 9;
        let (whole, _) = framed(len, 1 << 20);
        let reads = Rc::default();
        let mut reader = FramedReader::new(meta(), Pattern { len, reads });
        let resume = FRAME_BYTES + 17;
        let (tail, done) = block_on(reader.read(resume, u64::MAX >> 1)).expect("reads");
        assert!(done);
        assert_eq!(tail, whole[resume as usize..]);
    }

    #[test]
    fn a_framed_stream_unframes_and_damage_is_found() {
        let len = FRAME_PAYLOAD_BYTES as u64 + 100;
        let (whole, _) = framed(len, 1 << 20);
        let stream = unframe(&whole, 42, 3).expect("whole");
        assert_eq!(stream.len() as u64, len);
        fuzz_stream(&whole);
        assert_eq!(unframe(&whole, 43, 3), Err("the footer names another snapshot"));
        let mut flipped = whole.clone();
        flipped[FRAME_BYTES as usize + 20] ^= 1;
        assert_eq!(unframe(&flipped, 42, 3), Err("a frame's checksum does not match"));
        assert_eq!(unframe(&whole[..whole.len() - 1], 42, 3), Err("the stream ends early"));
        let (empty, _) = framed(0, 1 << 20);
        assert_eq!(unframe(&empty, 42, 3), Ok(Vec::new()));
    }

    #[test]
    fn staged_names_parse_back() {
        let path = staged_path("snapshots", 7, &meta());
        let name = path.rsplit('/').next().expect("a name");
        assert_eq!(parse_staged_name(name), Some((7, 42)));
        assert_eq!(parse_staged_name("7-42"), None);
        assert_eq!(parse_staged_name("x-1-2"), None);
    }
}
