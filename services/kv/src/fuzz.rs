//! Bodies of the fuzz targets (`fuzz/fuzz_targets/resp.rs`, `kv_snapshot.rs`), here so that
//! unit tests run them too. Each must never panic on any input, and checks decoded values against a reference.

use crate::entry::Entry;
use crate::resp::{self, Decoded, Protocol};

/// The RESP request and reply decoders and the entry decoder on arbitrary bytes.
pub fn resp(data: &[u8]) {
    // Requests: whatever decodes re-encodes (as multibulk) into the same arguments, and
    // decodes the same into the buffers of the request before (as a connection reuses them).
    let mut position = 0;
    let mut spare = Vec::new();
    while position < data.len() {
        let plain = resp::decode_request(&data[position..]);
        let reusing = resp::decode_request_reusing(&data[position..], std::mem::take(&mut spare));
        assert_eq!(plain, reusing, "decoding into spare buffers changes nothing");
        match plain {
            Ok(Decoded::Request(arguments, used)) => {
                assert!(used > 0 && position + used <= data.len(), "a request consumes bytes");
                position += used;
                if let Ok(Decoded::Request(reused, _)) = reusing {
                    spare = reused;
                }
                if arguments.is_empty() {
                    continue;
                }
                let bytes = resp::encode_request(&arguments);
                assert_eq!(
                    resp::decode_request(&bytes),
                    Ok(Decoded::Request(arguments, bytes.len())),
                    "a request re-encodes to itself"
                );
            }
            Ok(Decoded::Incomplete) | Err(_) => break,
        }
    }
    // Replies: whatever decodes encodes (RESP3) into bytes that decode to an equal reply.
    if let Ok(Some((reply, used))) = resp::decode_reply(data) {
        assert!(used <= data.len());
        let bytes = resp::encode_to_vec(&reply, Protocol::Resp3);
        let (again, again_used) = resp::decode_reply(&bytes)
            .expect("an encoded reply decodes")
            .expect("an encoded reply is complete");
        assert_eq!(again_used, bytes.len());
        assert_eq!(resp::encode_to_vec(&again, Protocol::Resp3), bytes);
    }
    // Entries: whatever decodes re-encodes to the same bytes, also into reused buffers.
    let decoded = Entry::decode(data);
    let spare = vec![b"an earlier argument".to_vec(); 3];
    assert_eq!(Entry::decode_reusing(data, spare), decoded);
    if let Ok(entry) = decoded {
        assert_eq!(entry.encode(), data, "an entry re-encodes to its bytes");
    }
}

/// The snapshot stream decoder on arbitrary bytes, given whole and in pieces (of a size the
/// first byte picks): both agree, and a stream that decodes re-encodes to exactly its bytes.
pub fn snapshot_stream(data: &[u8]) {
    let whole = crate::snapshot::decode(data);
    if let Ok(records) = &whole {
        assert_eq!(crate::snapshot::encode(records), data, "a stream re-encodes to its bytes");
    }
    let piece_len = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut decoder = crate::snapshot::StreamDecoder::default();
    let mut records = Vec::new();
    let mut pieces = Ok(());
    'feed: for piece in data.chunks(piece_len) {
        decoder.push(piece);
        loop {
            match decoder.next_record() {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(reason) => {
                    pieces = Err(reason);
                    break 'feed;
                }
            }
        }
    }
    let pieces = pieces.and_then(|()| decoder.finish()).map(|_| records);
    match (&whole, &pieces) {
        (Ok(whole), Ok(pieces)) => assert_eq!(whole, pieces, "whole and in pieces agree"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?}, in pieces {pieces:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke() {
        let inputs: [&[u8]; 8] = [
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n",
            b"*1\r\n$-1\r\n",
            b"SET \"a\\x41\" 'b'\r\n*0\r\n",
            b"%1\r\n+a\r\n,1.5\r\n",
            b"*3\r\n$1\r\na\r\n_\r\n#t\r\n",
            b"=7\r\ntxt:abc\r\n",
            b">2\r\n:1\r\n(12\r\n",
            b"\x01\x04\x00\x00\x00\x00\x00\x00\x00\x00",
        ];
        for input in inputs {
            super::resp(input);
        }
        let mut rng = strata_rt::Rng::with_seed(5);
        for _ in 0..20_000 {
            let mut bytes = vec![0u8; rng.below(64) as usize];
            rng.fill(&mut bytes);
            for byte in &mut bytes {
                // Mostly protocol characters, so the decoders get past the first byte.
                *byte = b"*$:+-_,#%~>=\r\n0123456789abc"[usize::from(*byte) % 27];
            }
            super::resp(&bytes);
        }
    }

    #[test]
    fn snapshot_stream_smoke() {
        let mut rng = strata_rt::Rng::with_seed(6);
        for _ in 0..5_000 {
            let records: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.below(6))
                .map(|n| {
                    (
                        vec![b'a' + n as u8; rng.below(4) as usize + 1],
                        vec![7; rng.below(9) as usize],
                    )
                })
                .collect();
            let mut records = records;
            records.sort();
            records.dedup_by(|a, b| a.0 == b.0);
            let mut bytes = crate::snapshot::encode(&records);
            super::snapshot_stream(&bytes);
            match rng.below(3) {
                0 => {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                _ => bytes.push(rng.below(256) as u8),
            }
            super::snapshot_stream(&bytes);
        }
    }
}
