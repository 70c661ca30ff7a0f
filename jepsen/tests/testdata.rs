//! Every history of the shared test data (Porcupine's) gets the verdict its `expected.tsv` lists.

use strata_jepsen::format::{self, AnyHistory};
use strata_jepsen::model::{KvModel, RegisterModel};
use strata_jepsen::{check, Budget, Verdict};

mod common;
use common::testdata;

fn verdict_of(path: &std::path::Path) -> Option<Verdict> {
    let (_, history) =
        format::read_file(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    if history.is_empty() {
        return None;
    }
    let budget = Budget::unlimited();
    Some(match history {
        AnyHistory::Register(history) => check(&history, &RegisterModel::default(), &budget),
        AnyHistory::Kv(history) => check(&history, &KvModel, &budget),
        other => panic!("{}: unexpected model {other:?}", path.display()),
    })
}

#[test]
fn every_history_gets_its_expected_verdict() {
    let expected = std::fs::read_to_string(testdata().join("expected.tsv")).expect("expected.tsv");
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in expected.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "expected.tsv line {line:?}");
        let (path, verdict) = (testdata().join(fields[0]), fields[2]);
        let actual = verdict_of(&path);
        match (verdict, &actual) {
            (empty, None) if empty.starts_with("EMPTY") => continue,
            ("linearizable", Some(Verdict::Linearizable)) => {}
            ("NOT-linearizable", Some(Verdict::NotLinearizable(counterexample))) => {
                assert!(
                    !counterexample.candidates.is_empty(),
                    "{}: empty counterexample",
                    fields[0]
                );
            }
            _ => mismatches.push(format!("{}: expected {verdict}, got {actual:?}", fields[0])),
        }
        checked += 1;
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(checked, 108, "102 etcd histories and 6 key-value histories");
}

#[test]
fn the_empty_etcd_log_has_no_operations() {
    let (format, history) = format::read_file(&testdata().join("jepsen/etcd_095.log")).unwrap();
    assert_eq!(format, format::Format::Etcd);
    assert!(history.is_empty());
}

#[test]
fn the_etcd_reader_follows_the_readme() {
    let (_, history) = format::read_file(&testdata().join("jepsen/etcd_000.log")).unwrap();
    let AnyHistory::Register(history) = history else { panic!("etcd logs are register histories") };
    assert_eq!(history.len(), 85);
    let text = std::fs::read_to_string(testdata().join("jepsen/etcd_100.log")).unwrap();
    let spaced = format::etcd::parse(&text).unwrap();
    assert_eq!(spaced.len(), 77, "etcd_100 separates fields with spaces");
}

#[test]
fn the_kv_histories_partition_by_key() {
    let (_, history) = format::read_file(&testdata().join("kv/c10-ok.txt")).unwrap();
    let AnyHistory::Kv(history) = history else { panic!("EDN logs are key-value histories") };
    let report = strata_jepsen::check_report(&history, &KvModel, &Budget::unlimited());
    assert!(report.verdict.is_linearizable());
    assert_eq!(report.partitions_count, 10);
    assert_eq!(report.operations_count, 337);
}
