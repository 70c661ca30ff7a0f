//! Task-to-task coordination on one node's thread: channels, one-shot replies, `select`.
//! Nothing here is `Send`; nothing here blocks a thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures; resolves with the first to finish and drops the other. On a tie `left`
/// wins, so the outcome depends only on readiness, never on chance.
pub async fn select<A: Future, B: Future>(left: A, right: B) -> Either<A::Output, B::Output> {
    let mut left = std::pin::pin!(left);
    let mut right = std::pin::pin!(right);
    std::future::poll_fn(|context| {
        if let Poll::Ready(output) = left.as_mut().poll(context) {
            return Poll::Ready(Either::Left(output));
        }
        if let Poll::Ready(output) = right.as_mut().poll(context) {
            return Poll::Ready(Either::Right(output));
        }
        Poll::Pending
    })
    .await
}

/// Lets other ready tasks run before this one continues.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|context| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// The other side of a channel or one-shot is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("channel closed")
    }
}

impl std::error::Error for Closed {}

struct ChannelState<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    /// Senders waiting for room, woken one at a time in arrival order.
    sender_wakers: VecDeque<Waker>,
}

/// A bounded multi-producer, single-consumer queue. `send` waits while it is full (backpressure);
/// `try_send` refuses instead.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "a channel needs room for one message");
    let state = Rc::new(RefCell::new(ChannelState {
        queue: VecDeque::new(),
        capacity,
        senders: 1,
        receiver_alive: true,
        receiver_waker: None,
        sender_wakers: VecDeque::new(),
    }));
    (Sender { state: state.clone() }, Receiver { state })
}

pub struct Sender<T> {
    state: Rc<RefCell<ChannelState<T>>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Sender")
    }
}

/// Why `try_send` did not take the message; the message comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    Full(T),
    Closed(T),
}

impl<T> Sender<T> {
    pub async fn send(&self, message: T) -> Result<(), Closed> {
        let mut message = Some(message);
        std::future::poll_fn(|context| {
            let mut state = self.state.borrow_mut();
            if !state.receiver_alive {
                return Poll::Ready(Err(Closed));
            }
            if state.queue.len() < state.capacity {
                state.queue.push_back(message.take().expect("polled after completion"));
                let waker = state.receiver_waker.take();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Poll::Ready(Ok(()));
            }
            state.sender_wakers.push_back(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        let mut state = self.state.borrow_mut();
        if !state.receiver_alive {
            return Err(TrySendError::Closed(message));
        }
        if state.queue.len() >= state.capacity {
            return Err(TrySendError::Full(message));
        }
        state.queue.push_back(message);
        let waker = state.receiver_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.state.borrow_mut().senders += 1;
        Sender { state: self.state.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub struct Receiver<T> {
    state: Rc<RefCell<ChannelState<T>>>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Receiver")
    }
}

impl<T> Receiver<T> {
    /// The next message, or `None` once every sender is gone and the queue is drained.
    pub async fn receive(&mut self) -> Option<T> {
        std::future::poll_fn(|context| {
            let mut state = self.state.borrow_mut();
            if let Some(message) = state.queue.pop_front() {
                let waker = state.sender_wakers.pop_front();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Poll::Ready(Some(message));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            state.receiver_waker = Some(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// A message if one is queued now.
    pub fn try_receive(&mut self) -> Option<T> {
        let mut state = self.state.borrow_mut();
        let message = state.queue.pop_front()?;
        let waker = state.sender_wakers.pop_front();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Some(message)
    }

    pub fn len(&self) -> usize {
        self.state.borrow().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let wakers = {
            let mut state = self.state.borrow_mut();
            state.receiver_alive = false;
            std::mem::take(&mut state.sender_wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

struct OneshotState<T> {
    value: Option<T>,
    sender_alive: bool,
    waker: Option<Waker>,
}

/// A single reply from one task to another.
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let state =
        Rc::new(RefCell::new(OneshotState { value: None, sender_alive: true, waker: None }));
    (OneshotSender { state: state.clone() }, OneshotReceiver { state })
}

pub struct OneshotSender<T> {
    state: Rc<RefCell<OneshotState<T>>>,
}

impl<T> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OneshotSender")
    }
}

impl<T> OneshotSender<T> {
    pub fn send(self, value: T) {
        self.state.borrow_mut().value = Some(value);
        // Drop wakes the receiver.
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.sender_alive = false;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub struct OneshotReceiver<T> {
    state: Rc<RefCell<OneshotState<T>>>,
}

impl<T> std::fmt::Debug for OneshotReceiver<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OneshotReceiver")
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Result<T, Closed>> {
        let mut state = self.state.borrow_mut();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Ok(value));
        }
        if !state.sender_alive {
            return Poll::Ready(Err(Closed));
        }
        state.waker = Some(context.waker().clone());
        Poll::Pending
    }
}

/// A slot that a backend fills when an operation completes, and the future that waits on it.
/// This is how completion-based I/O meets `async`: the backend keeps the [`Completer`], the
/// caller awaits the [`Completion`].
pub fn completion<T>() -> (Completer<T>, Completion<T>) {
    let (sender, receiver) = oneshot();
    (Completer { sender }, Completion { receiver })
}

pub struct Completer<T> {
    sender: OneshotSender<T>,
}

impl<T> std::fmt::Debug for Completer<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Completer")
    }
}

impl<T> Completer<T> {
    pub fn complete(self, value: T) {
        self.sender.send(value);
    }
}

pub struct Completion<T> {
    receiver: OneshotReceiver<T>,
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Completion")
    }
}

impl<T> Future for Completion<T> {
    /// `None` if the backend dropped the operation (its node stopped): the caller never sees it,
    /// because the caller's task is dropped in the same step.
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.receiver).poll(context).map(Result::ok)
    }
}

/// A bounded queue from any thread to a task on one thread: how the cores of
/// [`crate::uring::run_cores`] pass messages. The receiver's task is woken across threads (its
/// reactor is roused from the kernel if it sleeps there).
pub fn cross_channel<T: Send>(capacity: usize) -> (CrossSender<T>, CrossReceiver<T>) {
    assert!(capacity > 0, "a channel needs room for one message");
    let shared = std::sync::Arc::new(CrossShared {
        state: std::sync::Mutex::new(CrossState {
            queue: VecDeque::new(),
            waker: None,
            senders: 1,
        }),
        capacity,
    });
    (CrossSender { shared: shared.clone() }, CrossReceiver { shared })
}

struct CrossState<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    senders: usize,
}

struct CrossShared<T> {
    state: std::sync::Mutex<CrossState<T>>,
    capacity: usize,
}

pub struct CrossSender<T> {
    shared: std::sync::Arc<CrossShared<T>>,
}

impl<T> std::fmt::Debug for CrossSender<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CrossSender")
    }
}

impl<T> CrossSender<T> {
    /// Queues `message`, or gives it back if the queue is full.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut state = self.shared.state.lock().expect("cross channel poisoned");
            if state.queue.len() >= self.shared.capacity {
                return Err(TrySendError::Full(message));
            }
            state.queue.push_back(message);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for CrossSender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().expect("cross channel poisoned").senders += 1;
        CrossSender { shared: self.shared.clone() }
    }
}

impl<T> Drop for CrossSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.state.lock().expect("cross channel poisoned");
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub struct CrossReceiver<T> {
    shared: std::sync::Arc<CrossShared<T>>,
}

impl<T> std::fmt::Debug for CrossReceiver<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CrossReceiver")
    }
}

impl<T> CrossReceiver<T> {
    /// The next message, or `None` once every sender is gone and the queue is drained.
    pub async fn receive(&mut self) -> Option<T> {
        std::future::poll_fn(|context| {
            let mut state = self.shared.state.lock().expect("cross channel poisoned");
            if let Some(message) = state.queue.pop_front() {
                return Poll::Ready(Some(message));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            state.waker = Some(context.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let waker = Waker::noop();
        let mut context = Context::from_waker(waker);
        Pin::new(future).poll(&mut context)
    }

    #[test]
    fn channel_delivers_in_order_and_closes() {
        let (sender, mut receiver) = channel(2);
        assert!(sender.try_send(1).is_ok());
        assert!(sender.try_send(2).is_ok());
        assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(receiver.try_receive(), Some(1));
        drop(sender);
        let mut next = Box::pin(receiver.receive());
        assert_eq!(poll_once(&mut next), Poll::Ready(Some(2)));
        drop(next);
        let mut end = Box::pin(receiver.receive());
        assert_eq!(poll_once(&mut end), Poll::Ready(None));
    }

    #[test]
    fn send_to_dropped_receiver_fails() {
        let (sender, receiver) = channel::<u8>(1);
        drop(receiver);
        assert_eq!(sender.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[test]
    fn oneshot_reports_a_dropped_sender() {
        let (sender, mut receiver) = oneshot::<u8>();
        assert_eq!(poll_once(&mut receiver), Poll::Pending);
        drop(sender);
        assert_eq!(poll_once(&mut receiver), Poll::Ready(Err(Closed)));
        let (sender, mut receiver) = oneshot();
        sender.send(5);
        assert_eq!(poll_once(&mut receiver), Poll::Ready(Ok(5)));
    }
}
