//! Bodies of the fuzz targets (`fuzz/fuzz_targets/resp.rs`), here so that unit tests run them
//! too. Each must never panic on any input, and checks decoded values against a reference.

use crate::entry::Entry;
use crate::resp::{self, Decoded, Protocol};

/// The RESP request and reply decoders and the entry decoder on arbitrary bytes.
pub fn resp(data: &[u8]) {
    // Requests: whatever decodes re-encodes (as multibulk) into the same arguments.
    let mut position = 0;
    while position < data.len() {
        match resp::decode_request(&data[position..]) {
            Ok(Decoded::Request(arguments, used)) => {
                assert!(used > 0 && position + used <= data.len(), "a request consumes bytes");
                position += used;
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
    // Entries: whatever decodes re-encodes to the same bytes.
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data, "an entry re-encodes to its bytes");
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
}
