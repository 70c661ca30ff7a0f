//! The harness's RESP client and workload operations against a real `redis-server`: replies of
//! every kind, nil, errors, and the Lua compare-and-set the harness uses where IFEQ is missing.

mod common;

use std::time::Duration;

use strata_jepsen::harness::resp::{Client, Reply};
use strata_jepsen::harness::workload::{
    counter_operation, register_operation, set_operation, Dialect,
};
use strata_jepsen::model::{
    CounterInput, CounterOutput, RegisterInput, RegisterOutput, SetInput, SetOutput,
};
use strata_jepsen::Outcome;

#[test]
fn commands_round_trip() {
    let directory = common::scratch("resp");
    let server = common::RedisServer::start(&directory);
    let mut client = Client::connect(server.address, Duration::from_secs(5)).unwrap();
    assert_eq!(client.command(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(client.command(&["GET", "k"]).unwrap(), Reply::Bulk(b"v".to_vec()));
    assert_eq!(client.command(&["GET", "missing"]).unwrap(), Reply::Nil);
    assert_eq!(client.command(&["INCRBY", "n", "5"]).unwrap(), Reply::Integer(5));
    assert!(
        matches!(client.command(&["INCR", "k"]).unwrap(), Reply::Error(text) if text.starts_with("ERR"))
    );
    assert_eq!(client.command(&["SADD", "s", "1", "2"]).unwrap(), Reply::Integer(2));
    let Reply::Array(mut members) = client.command(&["SMEMBERS", "s"]).unwrap() else {
        panic!("SMEMBERS answers an array");
    };
    members.sort_by(|a, b| a.bytes().cmp(&b.bytes()));
    assert_eq!(members, [Reply::Bulk(b"1".to_vec()), Reply::Bulk(b"2".to_vec())]);
    let big = "x".repeat(100_000);
    assert_eq!(client.command(&["SET", "big", &big]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(client.command(&["GET", "big"]).unwrap(), Reply::Bulk(big.into_bytes()));
    drop(server);
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn workload_operations_decode_their_replies() {
    let directory = common::scratch("workload-operations");
    let server = common::RedisServer::start(&directory);
    let mut client = Client::connect(server.address, Duration::from_secs(5)).unwrap();
    let mut register = |input| register_operation(&mut client, Dialect::Lua, "r", input).0;
    assert_eq!(register(RegisterInput::Read), Outcome::Ok(RegisterOutput::Value(None)));
    let cas = |from, to| RegisterInput::Cas { from, to };
    assert_eq!(register(cas(Some(1), 2)), Outcome::Ok(RegisterOutput::Cas(false)));
    assert_eq!(register(cas(None, 1)), Outcome::Ok(RegisterOutput::Cas(true)));
    assert_eq!(register(cas(None, 5)), Outcome::Ok(RegisterOutput::Cas(false)));
    assert_eq!(register(cas(Some(1), 2)), Outcome::Ok(RegisterOutput::Cas(true)));
    assert_eq!(register(cas(Some(1), 3)), Outcome::Ok(RegisterOutput::Cas(false)));
    assert_eq!(register(RegisterInput::Read), Outcome::Ok(RegisterOutput::Value(Some(2))));
    assert_eq!(register(RegisterInput::Write(7)), Outcome::Ok(RegisterOutput::Done));
    assert_eq!(register(RegisterInput::Read), Outcome::Ok(RegisterOutput::Value(Some(7))));

    assert_eq!(set_operation(&mut client, "s", SetInput::Add(3)).0, Outcome::Ok(SetOutput::Done));
    assert_eq!(set_operation(&mut client, "s", SetInput::Add(1)).0, Outcome::Ok(SetOutput::Done));
    assert_eq!(
        set_operation(&mut client, "s", SetInput::Read).0,
        Outcome::Ok(SetOutput::Values(vec![1, 3]))
    );
    assert_eq!(
        counter_operation(&mut client, "c", CounterInput::Read).0,
        Outcome::Ok(CounterOutput::Value(0))
    );
    assert_eq!(
        counter_operation(&mut client, "c", CounterInput::Add(4)).0,
        Outcome::Ok(CounterOutput::Done)
    );
    assert_eq!(
        counter_operation(&mut client, "c", CounterInput::Read).0,
        Outcome::Ok(CounterOutput::Value(4))
    );
    // A write the server refuses has an unknown outcome; a refused read is dropped.
    assert_eq!(
        counter_operation(&mut client, "s", CounterInput::Add(1)).0,
        Outcome::Info,
        "INCRBY on a set is refused"
    );
    assert_eq!(counter_operation(&mut client, "s", CounterInput::Read).0, Outcome::Fail);
    drop(server);
    // A dead server: the write is unknown and the connection reported broken.
    let (outcome, broken) =
        register_operation(&mut client, Dialect::Lua, "r", RegisterInput::Write(1));
    assert_eq!(outcome, Outcome::Info);
    assert!(broken);
    let _ = std::fs::remove_dir_all(&directory);
}
