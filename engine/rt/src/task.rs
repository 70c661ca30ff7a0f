//! Spawning with a result: a [`JoinHandle`] resolves to the task's output.

use crate::backend::{Backend, TaskId};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct JoinState<T> {
    output: Option<T>,
    waker: Option<Waker>,
    /// The task was dropped before finishing (aborted, or its node crashed).
    dropped: bool,
}

/// Resolves to the output of a spawned task, or `None` if the task was aborted or its node
/// stopped before it finished.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    backend: Rc<dyn Backend>,
    task: TaskId,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("JoinHandle").field("task", &self.task).finish()
    }
}

impl<T> JoinHandle<T> {
    /// Stops the task: its future is dropped at the next scheduling point.
    pub fn abort(&self) {
        self.backend.abort(self.task);
    }

    pub fn is_finished(&self) -> bool {
        let state = self.state.borrow();
        state.output.is_some() || state.dropped
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.state.borrow_mut();
        if let Some(output) = state.output.take() {
            return Poll::Ready(Some(output));
        }
        if state.dropped {
            return Poll::Ready(None);
        }
        state.waker = Some(context.waker().clone());
        Poll::Pending
    }
}

/// Marks the join state when the task's future is dropped without finishing.
struct DropGuard<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> Drop for DropGuard<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.state.borrow_mut();
            if state.output.is_some() {
                return;
            }
            state.dropped = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub(crate) fn spawn<F>(backend: &Rc<dyn Backend>, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState { output: None, waker: None, dropped: false }));
    let guard = DropGuard { state: state.clone() };
    let task = backend.spawn(Box::pin(async move {
        let output = future.await;
        let waker = {
            let mut state = guard.state.borrow_mut();
            state.output = Some(output);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        drop(guard);
    }));
    JoinHandle { state, backend: backend.clone(), task }
}
