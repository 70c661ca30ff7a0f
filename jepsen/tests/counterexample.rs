//! Counterexamples name the operations that cannot be ordered, and render as text and HTML.

mod common;

use strata_jepsen::model::{RegisterInput, RegisterModel, RegisterOutput};
use strata_jepsen::{check, Budget, History, OpId, Outcome, Verdict};

fn register_history(
    steps: &[(u64, RegisterInput, Option<RegisterOutput>)],
) -> History<RegisterInput, RegisterOutput> {
    let mut history = History::new();
    for (process, input, output) in steps {
        let id = history.invoke(*process, *input);
        history.complete(id, output.map_or(Outcome::Info, Outcome::Ok));
    }
    history
}

#[test]
fn a_stale_read_is_named_with_the_state_it_needed() {
    // write 1; write 2; read -> 1, one after the other.
    let history = register_history(&[
        (0, RegisterInput::Write(1), Some(RegisterOutput::Done)),
        (1, RegisterInput::Write(2), Some(RegisterOutput::Done)),
        (2, RegisterInput::Read, Some(RegisterOutput::Value(Some(1)))),
    ]);
    let Verdict::NotLinearizable(counterexample) =
        check(&history, &RegisterModel::default(), &Budget::unlimited())
    else {
        panic!("a stale read is not linearizable");
    };
    assert_eq!(counterexample.prefix, vec![OpId(0), OpId(1)]);
    assert_eq!(counterexample.prefix_state, "2");
    assert_eq!(counterexample.blocking, OpId(2));
    assert_eq!(counterexample.candidates.len(), 1);
    let candidate = &counterexample.candidates[0];
    assert_eq!(candidate.id, OpId(2));
    assert!(!candidate.possible);
    assert!(
        candidate.explanation.contains("needs value 1, register holds 2"),
        "{}",
        candidate.explanation
    );
    let text = counterexample.to_string();
    assert!(text.contains("read -> 1"), "{text}");
    let html = counterexample.to_html("stale read");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg") && html.contains("read -&gt; 1"), "{html}");
}

#[test]
fn concurrent_candidates_are_all_listed() {
    // Two concurrent writes, then a read of a value nobody wrote.
    let mut history = History::new();
    let first = history.invoke(0, RegisterInput::Write(1));
    let second = history.invoke(1, RegisterInput::Write(2));
    history.complete(first, Outcome::Ok(RegisterOutput::Done));
    history.complete(second, Outcome::Ok(RegisterOutput::Done));
    let read = history.invoke(2, RegisterInput::Read);
    history.complete(read, Outcome::Ok(RegisterOutput::Value(Some(3))));
    let Verdict::NotLinearizable(counterexample) =
        check(&history, &RegisterModel::default(), &Budget::unlimited())
    else {
        panic!("reading 3 is not linearizable");
    };
    assert_eq!(counterexample.prefix.len(), 2);
    assert_eq!(counterexample.blocking, read);
    let ids: Vec<OpId> = counterexample.candidates.iter().map(|candidate| candidate.id).collect();
    assert_eq!(ids, vec![read]);
    assert!(counterexample.window.iter().any(|view| view.id == first));
    assert!(counterexample.window.iter().any(|view| view.id == second));
}

#[test]
fn a_failed_cas_is_a_constraint() {
    // write 1; cas 1->2 fails: impossible, the value was 1.
    let history = register_history(&[
        (0, RegisterInput::Write(1), Some(RegisterOutput::Done)),
        (1, RegisterInput::Cas { from: Some(1), to: 2 }, Some(RegisterOutput::Cas(false))),
    ]);
    let Verdict::NotLinearizable(counterexample) =
        check(&history, &RegisterModel::default(), &Budget::unlimited())
    else {
        panic!("a failed cas on the matching value is not linearizable");
    };
    assert_eq!(counterexample.candidates[0].id, OpId(1));
    assert!(counterexample.candidates[0].explanation.contains("anything but 1"));
}

#[test]
fn an_unknown_write_may_or_may_not_take_effect() {
    // write 1 (unknown outcome); read -> 1; read -> 1: it took effect.
    let took_effect = register_history(&[
        (0, RegisterInput::Write(1), None),
        (1, RegisterInput::Read, Some(RegisterOutput::Value(Some(1)))),
    ]);
    assert!(check(&took_effect, &RegisterModel::default(), &Budget::unlimited()).is_linearizable());
    let did_not = register_history(&[
        (0, RegisterInput::Write(1), None),
        (1, RegisterInput::Read, Some(RegisterOutput::Value(None))),
    ]);
    assert!(check(&did_not, &RegisterModel::default(), &Budget::unlimited()).is_linearizable());
    // But once seen, it cannot be unseen.
    let flicker = register_history(&[
        (0, RegisterInput::Write(1), None),
        (1, RegisterInput::Read, Some(RegisterOutput::Value(Some(1)))),
        (1, RegisterInput::Read, Some(RegisterOutput::Value(None))),
    ]);
    let verdict = check(&flicker, &RegisterModel::default(), &Budget::unlimited());
    let Verdict::NotLinearizable(counterexample) = verdict else { panic!("{verdict:?}") };
    assert_eq!(counterexample.blocking, OpId(2));
}

#[test]
fn the_etcd_counterexample_names_operations_of_the_history() {
    let path = common::testdata().join("jepsen/etcd_000.log");
    let (_, history) = strata_jepsen::format::read_file(&path).unwrap();
    let strata_jepsen::format::AnyHistory::Register(history) = history else { panic!() };
    let Verdict::NotLinearizable(counterexample) =
        check(&history, &RegisterModel::default(), &Budget::unlimited())
    else {
        panic!("etcd_000 is not linearizable");
    };
    for candidate in &counterexample.candidates {
        assert!(candidate.id.0 < history.len());
        let operation = &history.operations()[candidate.id.0];
        assert!(
            operation.call_time
                <= history.operations()[counterexample.blocking.0].completion_time.unwrap()
        );
    }
    assert!(counterexample
        .candidates
        .iter()
        .any(|candidate| candidate.id == counterexample.blocking));
    assert!(counterexample.candidates.iter().any(|candidate| !candidate.possible));
}

#[test]
fn a_budget_returns_unknown() {
    // The set's longest search: about 11,700 steps (limits are checked every 4,096).
    let path = common::testdata().join("jepsen/etcd_080.log");
    let (_, history) = strata_jepsen::format::read_file(&path).unwrap();
    let strata_jepsen::format::AnyHistory::Register(history) = history else { panic!() };
    let budget = Budget { steps_max: Some(4_096), ..Budget::default() };
    let verdict = check(&history, &RegisterModel::default(), &budget);
    assert!(
        matches!(&verdict, Verdict::Unknown(reason) if reason.contains("step budget")),
        "{verdict:?}"
    );
}
