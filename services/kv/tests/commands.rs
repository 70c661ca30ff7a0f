//! Redis commands through the server (over [`LocalCluster`], four shards, in simulation) against
//! a golden transcript, `commands.golden`: each `> command` line is followed by the reply as a
//! client decodes it, one line when RESP2 and RESP3 agree, else a `resp2:` and a `resp3:` line.
//! The transcript runs twice from an empty keyspace, once per protocol. Replies are written as
//! `+simple`, `-error`, `:integer`, `"bulk"`, `,double`, `#t`, `nil` (null bulk, and RESP3's
//! null), `nil-array` (RESP2's null array), `[array]`, `~[set]`, `%{map}`. The replies after
//! `> ` are redis-server's (`redis_golden.py` writes them); those after `>! ` are Strata's own,
//! where it differs on purpose (CROSSSLOT across shards, WAIT, one database, Redis 7.2's
//! encodings, its own COMMAND INFO), each explained by a comment. On a mismatch the test prints
//! the whole transcript as this build answers it, to compare and paste. Randomized replies
//! (HRANDFIELD...) and blocked clients woken by another connection are checked by the tests
//! after it.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use strata_kv::resp::{decode_reply, encode_request, format_double};
use strata_kv::{serve, LocalCluster, Reply, ServerConfig};
use strata_rt::{Duration, NodeId, Runtime, Stream};
use strata_sim::{node_ip, FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);
const SHARDS: u32 = 4;
const GOLDEN: &str = include_str!("commands.golden");

/// Runs `body` against a fresh server on one simulated node.
fn with_server<F: std::future::Future<Output = ()> + 'static>(
    seed: u64,
    body: impl FnOnce(Runtime, SocketAddr) -> F + 'static,
) {
    let mut sim = Sim::new(seed, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    let done = Rc::new(Cell::new(false));
    let finished = done.clone();
    let _task = rt.clone().spawn(async move {
        let cluster = Rc::new(LocalCluster::open(&rt, "kv", SHARDS).await.unwrap());
        let address = SocketAddr::new(node_ip(NODE), 6379);
        let listener = rt.net().listen(address).unwrap();
        let config = ServerConfig { listen: address, expire_interval_ms: 0, ..Default::default() };
        let _server = rt.spawn(serve(rt.clone(), cluster, listener, config));
        body(rt, address).await;
        finished.set(true);
    });
    assert!(sim.run_until(Duration::from_secs(600), || done.get()), "the test body finished");
}

/// One client connection.
struct Client {
    stream: Stream,
    buffered: Vec<u8>,
}

impl Client {
    async fn connect(rt: &Runtime, address: SocketAddr, protocol: u8) -> Client {
        let stream = rt.net().connect(address).await.unwrap();
        let mut client = Client { stream, buffered: Vec::new() };
        if protocol == 3 {
            assert!(matches!(client.call("HELLO 3").await, Reply::Map(_)));
        }
        client
    }

    async fn call(&mut self, text: &str) -> Reply {
        self.send(text).await;
        self.receive().await
    }

    async fn send(&mut self, text: &str) {
        self.pipeline(&[text]).await;
    }

    /// Sends the requests in one write: the server runs them as one batch.
    async fn pipeline(&mut self, texts: &[&str]) {
        let mut bytes = Vec::new();
        for text in texts {
            let arguments: Vec<Vec<u8>> =
                text.split(' ').map(|part| part.as_bytes().to_vec()).collect();
            bytes.extend(encode_request(&arguments));
        }
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn receive(&mut self) -> Reply {
        loop {
            if let Some((reply, used)) = decode_reply(&self.buffered).unwrap() {
                self.buffered.drain(..used);
                return reply;
            }
            let (result, chunk) = self.stream.read(vec![0; 64 << 10]).await;
            let read = result.unwrap();
            assert!(read > 0, "the server closed the connection");
            self.buffered.extend_from_slice(&chunk[..read]);
        }
    }
}

/// A reply as the transcript writes it.
fn render(reply: &Reply) -> String {
    let list = |items: &[Reply]| items.iter().map(render).collect::<Vec<_>>().join(", ");
    match reply {
        Reply::Simple(text) => format!("+{text}"),
        Reply::Error(text) => format!("-{text}"),
        Reply::Integer(value) => format!(":{value}"),
        Reply::Bulk(bytes) => format!("\"{}\"", bytes.escape_ascii()),
        Reply::Null => "nil".into(),
        Reply::NullArray => "nil-array".into(),
        Reply::Double(value) => format!(",{}", format_double(*value)),
        Reply::Boolean(value) => if *value { "#t" } else { "#f" }.into(),
        Reply::Array(items) => format!("[{}]", list(items)),
        Reply::Set(items) => format!("~[{}]", list(items)),
        Reply::Push(items) => format!(">[{}]", list(items)),
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(key, value)| format!("{}: {}", render(key), render(value)))
                .collect();
            format!("%{{{}}}", pairs.join(", "))
        }
        Reply::Verbatim { format, text } => {
            format!("={}:\"{}\"", String::from_utf8_lossy(format), text.escape_ascii())
        }
    }
}

/// A command of the transcript and its expected replies in RESP2 and RESP3.
struct Case {
    command: String,
    /// Written `>! `: Strata's answer, not Redis's.
    own: bool,
    resp2: String,
    resp3: String,
}

fn parse_golden(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let (command, own) = match line.strip_prefix(">! ") {
            Some(command) => (Some(command), true),
            None => (line.strip_prefix("> "), false),
        };
        if let Some(command) = command {
            let (resp2, resp3) = (String::new(), String::new());
            cases.push(Case { command: command.into(), own, resp2, resp3 });
            continue;
        }
        let case = cases.last_mut().expect("a reply follows a command");
        if let Some(reply) = line.strip_prefix("resp2: ") {
            case.resp2 = reply.into();
        } else if let Some(reply) = line.strip_prefix("resp3: ") {
            case.resp3 = reply.into();
        } else {
            (case.resp2, case.resp3) = (line.into(), line.into());
        }
    }
    cases
}

fn write_golden(cases: &[Case]) -> String {
    let mut text = String::new();
    for case in cases {
        let marker = if case.own { ">!" } else { ">" };
        text.push_str(&format!("{marker} {}\n", case.command));
        if case.resp2 == case.resp3 {
            text.push_str(&format!("{}\n", case.resp2));
        } else {
            text.push_str(&format!("resp2: {}\nresp3: {}\n", case.resp2, case.resp3));
        }
    }
    text
}

#[test]
fn commands_answer_as_the_golden_transcript() {
    let expected = parse_golden(GOLDEN);
    assert!(expected.len() > 50, "{} cases: the transcript parses", expected.len());
    let commands: Vec<String> = expected.iter().map(|case| case.command.clone()).collect();
    let actual: Rc<std::cell::RefCell<Vec<Case>>> = Rc::default();
    let output = actual.clone();
    with_server(1, move |rt, address| async move {
        let mut replies = [Vec::new(), Vec::new()];
        for (protocol, replies) in [2, 3].into_iter().zip(&mut replies) {
            let mut client = Client::connect(&rt, address, protocol).await;
            assert_eq!(client.call("FLUSHALL").await, Reply::ok());
            for command in &commands {
                replies.push(render(&client.call(command).await));
            }
        }
        let [resp2, resp3] = replies;
        for ((command, resp2), resp3) in commands.into_iter().zip(resp2).zip(resp3) {
            output.borrow_mut().push(Case { command, own: false, resp2, resp3 });
        }
    });
    let mut actual = actual.take();
    for (actual, expected) in actual.iter_mut().zip(&expected) {
        actual.own = expected.own;
    }
    let mismatches: Vec<String> = expected
        .iter()
        .zip(&actual)
        .filter(|(expected, actual)| {
            expected.resp2 != actual.resp2 || expected.resp3 != actual.resp3
        })
        .map(|(expected, actual)| {
            format!(
                "> {}\n  expected resp2 {}\n  expected resp3 {}\n  got resp2 {}\n  got resp3 {}",
                expected.command, expected.resp2, expected.resp3, actual.resp2, actual.resp3
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}\n\nthe transcript as answered:\n{}",
        mismatches.len(),
        mismatches.join("\n"),
        write_golden(&actual)
    );
}

/// A client blocked on a sorted set or list is woken when another client gives the key elements,
/// by whichever command does it (ZADD, ZINCRBY, ZUNIONSTORE, COPY, RPUSH), and gets them; a
/// timeout too long for the clock waits (it used to panic the node).
#[test]
fn blocked_pops_wake_when_another_client_adds() {
    with_server(2, |rt, address| async move {
        let mut writer = Client::connect(&rt, address, 2).await;
        assert_eq!(writer.call("ZADD {t}source 1 a 2 b").await, Reply::Integer(2));
        let cases = [
            ("BZPOPMIN {t}z 0", "ZADD {t}z 3 c", r#"[["{t}z", "c", ,3]]"#),
            ("BZPOPMAX {t}x {t}z 1e12", "ZINCRBY {t}z 1.5 d", r#"[["{t}z", "d", ,1.5]]"#),
            (
                "BZMPOP 0 2 {t}x {t}z MAX COUNT 5",
                "ZUNIONSTORE {t}z 1 {t}source",
                r#"[["{t}z", [["b", ,2], ["a", ,1]]]]"#,
            ),
            ("BZPOPMIN {t}copy 100", "COPY {t}source {t}copy", r#"[["{t}copy", "a", ,1]]"#),
            ("BLMPOP 0 2 {t}x {t}l RIGHT COUNT 5", "RPUSH {t}l a b", r#"[["{t}l", ["b", "a"]]]"#),
        ];
        for (blocking, write, expected) in cases {
            let mut waiting = Client::connect(&rt, address, 3).await;
            waiting.send(blocking).await;
            // Long enough for the pop to have found nothing and blocked.
            rt.sleep(Duration::from_millis(200)).await;
            assert!(!writer.call(write).await.is_error(), "{write}");
            let woken = rt.now();
            let reply = waiting.receive().await;
            assert_eq!(render(&Reply::Array(vec![reply])), expected, "{blocking} woken by {write}");
            let waited = rt.now().saturating_duration_since(woken);
            assert!(
                waited < Duration::from_secs(1),
                "{blocking} answered {waited:?} after {write}"
            );
        }
    });
}

/// A blocked pop with a timeout gives up after it: a null array in RESP2, a null in RESP3.
#[test]
fn blocked_pops_time_out() {
    with_server(3, |rt, address| async move {
        for (protocol, expected) in [(2, Reply::NullArray), (3, Reply::Null)] {
            let mut client = Client::connect(&rt, address, protocol).await;
            for command in ["BZPOPMIN {t}z 0.5", "BZMPOP 0.5 1 {t}z MIN", "BLMPOP 0.5 1 {t}l LEFT"]
            {
                let started = rt.now();
                assert_eq!(client.call(command).await, expected, "{command}");
                let waited = rt.now().saturating_duration_since(started);
                assert!(waited >= Duration::from_millis(500), "{command} waited {waited:?}");
                assert!(waited < Duration::from_secs(2), "{command} waited {waited:?}");
            }
        }
    });
}

fn bulks(reply: Reply) -> Vec<Vec<u8>> {
    let Reply::Array(items) = reply else { panic!("an array: {reply:?}") };
    items
        .into_iter()
        .map(|item| match item {
            Reply::Bulk(bytes) => bytes,
            other => panic!("a bulk string: {other:?}"),
        })
        .collect()
}

/// HRANDFIELD and SRANDMEMBER over many elements: a positive count gives distinct elements (all
/// of them when it exceeds their number), a negative one exactly that many draws, repeats
/// allowed; WITHVALUES pairs each field with its own value; and picks vary from call to call,
/// even within one millisecond.
#[test]
fn random_picks_are_elements_and_vary() {
    with_server(4, |rt, address| async move {
        let mut client = Client::connect(&rt, address, 3).await;
        let pairs: Vec<String> = (0..20).map(|index| format!("f{index} v{index}")).collect();
        assert_eq!(
            client.call(&format!("HSET {{t}}h {}", pairs.join(" "))).await,
            Reply::Integer(20)
        );
        let members: Vec<String> = (0..20).map(|index| format!("f{index}")).collect();
        assert_eq!(
            client.call(&format!("SADD {{t}}s {}", members.join(" "))).await,
            Reply::Integer(20)
        );
        let is_member = |item: &Vec<u8>| members.iter().any(|member| member.as_bytes() == item);
        for (single, counted) in
            [("HRANDFIELD {t}h", "HRANDFIELD {t}h"), ("SRANDMEMBER {t}s", "SRANDMEMBER {t}s")]
        {
            // Pipelined: one batch, read at one clock reading.
            client.pipeline(&[single; 40]).await;
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..40 {
                let Reply::Bulk(item) = client.receive().await else { panic!("{single}: a bulk") };
                assert!(is_member(&item));
                seen.insert(item);
            }
            assert!(seen.len() >= 5, "{single}: {} distinct picks in 40", seen.len());
            for (count, expected) in [(5, 5), (50, 20), (-50, 50), (0, 0)] {
                let picked = bulks(client.call(&format!("{counted} {count}")).await);
                assert_eq!(picked.len(), expected, "{counted} {count}");
                assert!(picked.iter().all(is_member), "{counted} {count}");
                let distinct: std::collections::BTreeSet<_> = picked.iter().collect();
                if count > 0 {
                    assert_eq!(distinct.len(), picked.len(), "{counted} {count}: repeats");
                } else if count < 0 {
                    assert!(distinct.len() < picked.len(), "{counted} {count}: no repeat in 50");
                }
            }
        }
        for count in [3i64, -30] {
            let Reply::Array(pairs) =
                client.call(&format!("HRANDFIELD {{t}}h {count} WITHVALUES")).await
            else {
                panic!("an array");
            };
            assert_eq!(pairs.len() as i64, count.abs());
            for pair in pairs {
                let [field, value] = &bulks(pair)[..] else { panic!("a [field, value] pair") };
                assert_eq!(value[1..], field[1..], "{field:?} paired with {value:?}");
            }
        }
    });
}

/// OBJECT ENCODING at Redis 7.2's default thresholds (checked against redis-server where 7.0
/// and 7.2 agree): 512 hash fields, 64-byte values, 128 sorted-set members, 512 integers in an
/// intset, 128 set members in a listpack, 8 KiB of list.
#[test]
fn object_encodings_change_at_redis_thresholds() {
    with_server(5, |rt, address| async move {
        let mut client = Client::connect(&rt, address, 2).await;
        let words = |count: usize, word: &dyn Fn(usize) -> String| -> String {
            (0..count).map(word).collect::<Vec<_>>().join(" ")
        };
        let (short, long) = ("x".repeat(64), "x".repeat(65));
        // (command creating a key, its encoding, command growing it, the encoding then)
        let cases: Vec<(String, &str, String, &str)> = vec![
            (
                format!("HSET {{t}}h {}", words(512, &|index| format!("f{index} v"))),
                "listpack",
                "HSET {t}h f512 v".into(),
                "hashtable",
            ),
            (
                format!("HSET {{t}}hv f {short}"),
                "listpack",
                format!("HSET {{t}}hv g {long}"),
                "hashtable",
            ),
            (
                format!("ZADD {{t}}z {}", words(128, &|index| format!("{index} m{index}"))),
                "listpack",
                "ZADD {t}z 128 m128".into(),
                "skiplist",
            ),
            (
                format!("ZADD {{t}}zv 1 {short}"),
                "listpack",
                format!("ZADD {{t}}zv 2 {long}"),
                "skiplist",
            ),
            (
                format!("SADD {{t}}i {}", words(512, &|index| index.to_string())),
                "intset",
                "SADD {t}i 512".into(),
                "hashtable",
            ),
            (
                format!("SADD {{t}}w {}", words(128, &|index| format!("w{index}"))),
                "listpack",
                "SADD {t}w w128".into(),
                "hashtable",
            ),
            ("SADD {t}iw 1 2".into(), "intset", "SADD {t}iw word".into(), "listpack"),
            (
                format!("RPUSH {{t}}l {}", "x".repeat(4000)),
                "listpack",
                format!("RPUSH {{t}}l {}", "x".repeat(4200)),
                "quicklist",
            ),
            ("SET {t}s 7".into(), "int", format!("SET {{t}}s {}", "x".repeat(45)), "raw"),
        ];
        for (create, before, grow, after) in cases {
            let key = create.split(' ').nth(1).expect("a key").to_string();
            let encoding = format!("OBJECT ENCODING {key}");
            assert!(!client.call(&create).await.is_error(), "{key}");
            assert_eq!(client.call(&encoding).await, Reply::bulk(before), "{key} before growing");
            assert!(!client.call(&grow).await.is_error(), "{key}");
            assert_eq!(client.call(&encoding).await, Reply::bulk(after), "{key} after growing");
        }
    });
}

/// One HSCAN/SSCAN/ZSCAN call: the next cursor and the items replied.
async fn scan_step(client: &mut Client, command: &str) -> (u64, Vec<Vec<u8>>) {
    let Reply::Array(mut reply) = client.call(command).await else { panic!("{command}: array") };
    let items = bulks(reply.pop().expect("[cursor, items]"));
    let Some(Reply::Bulk(cursor)) = reply.pop() else { panic!("{command}: a cursor") };
    (String::from_utf8(cursor).unwrap().parse().expect("an integer cursor"), items)
}

/// HSCAN, SSCAN and ZSCAN resume at the next element, wherever it moved: while others are
/// removed and added between calls, every element present for the whole iteration comes back
/// exactly once (an offset into the elements would skip some), and an element removed before
/// it was reached never does. A cursor belongs to its key; a made-up one is an error.
#[test]
fn collection_scans_resume_at_the_next_element() {
    with_server(6, |rt, address| async move {
        let mut client = Client::connect(&rt, address, 2).await;
        let fields: Vec<String> = (0..600).map(|index| format!("f{index:04}")).collect();
        let pairs: Vec<String> = fields.iter().map(|field| format!("{field} v{field}")).collect();
        assert_eq!(
            client.call(&format!("HSET {{t}}h {}", pairs.join(" "))).await,
            Reply::Integer(600)
        );
        assert_eq!(
            client.call(&format!("SADD {{t}}s {}", fields.join(" "))).await,
            Reply::Integer(600)
        );
        let scores: Vec<String> = fields.iter().map(|field| format!("1.5 {field}")).collect();
        assert_eq!(
            client.call(&format!("ZADD {{t}}z {}", scores.join(" "))).await,
            Reply::Integer(600)
        );
        let removers =
            [("HSCAN {t}h", "HDEL {t}h"), ("SSCAN {t}s", "SREM {t}s"), ("ZSCAN {t}z", "ZREM {t}z")];
        for (scan, remove) in removers {
            let with_values = !scan.starts_with("SSCAN");
            let (mut cursor, mut seen, mut calls) = (0, Vec::new(), 0);
            loop {
                let (next, items) =
                    scan_step(&mut client, &format!("{scan} {cursor} COUNT 7")).await;
                let step = if with_values { 2 } else { 1 };
                for pair in items.chunks(step) {
                    if with_values {
                        let expected = if scan.starts_with("ZSCAN") {
                            b"1.5".to_vec()
                        } else {
                            [b"v", &pair[0][..]].concat()
                        };
                        assert_eq!(pair[1], expected, "{scan}: value of {:?}", pair[0]);
                    }
                    seen.push(String::from_utf8(pair[0].clone()).unwrap());
                }
                calls += 1;
                if next == 0 {
                    break;
                }
                assert!(next >= 1 << 40, "{scan}: cursor {next}");
                // Remove two elements already returned (an offset would then skip two) and,
                // in the first 50 calls, one far ahead of the cursor.
                let behind = format!("{} {}", fields[calls * 2 - 2], fields[calls * 2 - 1]);
                let ahead = if calls <= 50 { fields[599 - calls].as_str() } else { "" };
                client.call(format!("{remove} {behind} {ahead}").trim_end()).await;
                cursor = next;
            }
            let removed_ahead: Vec<&String> = (1..=50).map(|call| &fields[599 - call]).collect();
            let expected: Vec<&String> =
                fields.iter().filter(|field| !removed_ahead.contains(field)).collect();
            let got: Vec<&String> = seen.iter().collect();
            assert_eq!(got, expected, "{scan}: each element once, in order, none removed ahead");
            assert_eq!(calls, 550_usize.div_ceil(7), "{scan}: calls of COUNT 7");
        }
        let (cursor, _) = scan_step(&mut client, "HSCAN {t}h 0 COUNT 3").await;
        let other = client.call(&format!("SSCAN {{t}}s {cursor}")).await;
        assert!(matches!(other, Reply::Error(text) if text.starts_with("ERR invalid cursor")));
        let made_up = client.call("HSCAN {t}h 12345").await;
        assert!(matches!(made_up, Reply::Error(text) if text.starts_with("ERR invalid cursor")));
        let (_, matched) =
            scan_step(&mut client, "HSCAN {t}h 0 MATCH *9 COUNT 1000 NOVALUES").await;
        assert!(!matched.is_empty() && matched.iter().all(|field| field.ends_with(b"9")));
        assert_eq!(scan_step(&mut client, "SSCAN {t}nothing 0").await, (0, Vec::new()));
        let (cursor, _) = scan_step(&mut client, "SSCAN {t}s 0 COUNT 2").await;
        scan_step(&mut client, &format!("SSCAN {{t}}s {cursor} COUNT 2")).await;
        let used = client.call(&format!("SSCAN {{t}}s {cursor}")).await;
        assert!(matches!(used, Reply::Error(text) if text.starts_with("ERR invalid cursor")));
        for bad in
            ["SSCAN {t}s x", "SSCAN {t}s -1", "SSCAN {t}s 0 COUNT 0", "HSCAN {t}h 0 NOVALUES X"]
        {
            assert!(matches!(client.call(bad).await, Reply::Error(_)), "{bad}");
        }
        let (next, all) = scan_step(&mut client, "SSCAN {t}s 0 COUNT 9223372036854775807").await;
        let Reply::Integer(members) = client.call("SCARD {t}s").await else { panic!("SCARD") };
        assert_eq!((next, all.len() as i64), (0, members), "a huge COUNT reads what there is");
        assert_eq!(client.call("ZADD {t}order 3 a 1 b 2 c").await, Reply::Integer(3));
        let (_, items) = scan_step(&mut client, "ZSCAN {t}order 0").await;
        let expected: Vec<&[u8]> = vec![b"a", b"3", b"b", b"1", b"c", b"2"];
        assert_eq!(items, expected, "members in byte order, each with its score");
        assert_eq!(client.call("MULTI").await, Reply::Simple("OK".into()));
        let refused = client.call("HSCAN {t}h 0").await;
        assert!(
            matches!(refused, Reply::Error(text) if text.contains("not allowed inside a transaction"))
        );
        assert!(
            matches!(client.call("EXEC").await, Reply::Error(text) if text.starts_with("EXECABORT"))
        );
    });
}
