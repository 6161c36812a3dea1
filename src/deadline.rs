//! A value owned by a thread of its own, whose calls the caller waits for
//! at most a deadline.
//!
//! Why: a PostgreSQL server whose process hangs (SIGSTOP, a stuck host
//! process, a primary Patroni has not fenced yet) keeps its TCP connections
//! up: the kernel acknowledges every byte, so neither `tcp_user_timeout`
//! nor keepalives fire, the server-side `statement_timeout` never runs, and
//! the postgres crate's blocking calls (and its startup exchange, which its
//! connect timeout does not cover) wait for as long as the process hangs.
//! The roles that must follow a database failover (the producer, the lease
//! thread's fence read) therefore call through [`OnWorker`]: a call past its
//! deadline is abandoned with the connection it runs on, and the role
//! connects afresh, which reaches the new primary.
//!
//! An abandoned worker's thread ends when its call returns (the hung server
//! resumes, is fenced and closes the connection, or dies). Those threads are
//! counted; past [`MAX_HANGING_WORKERS`] no new worker starts, so a server
//! that hangs for ever costs a bounded number of threads.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Abandoned workers whose call has not returned yet, process-wide.
static HANGING_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// At most this many abandoned workers may hang at once.
pub const MAX_HANGING_WORKERS: usize = 32;

/// How many abandoned workers hang now (the cap's count; tests read it).
pub fn hanging_workers() -> usize {
    HANGING_WORKERS.load(Ordering::Relaxed)
}

/// One call's fate, decided once by whichever side gets there first: the
/// worker finishing it, or the caller giving up on it.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

struct Job<T> {
    run: Box<dyn FnOnce(&mut T) + Send>,
    fate: Arc<AtomicU8>,
}

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late<E> {
    /// No answer within the deadline: the worker (and the value it owns)
    /// is abandoned.
    TimedOut(Duration),
    /// Too many abandoned workers still hang: none was started.
    TooManyHanging(usize),
    /// The worker is gone (an earlier call timed out, or its thread could
    /// not start or panicked).
    Gone,
    /// Making the value failed (only from [`OnWorker::start`]).
    Failed(E),
}

/// A value living on its own thread; see the module documentation.
pub struct OnWorker<T> {
    jobs: Option<SyncSender<Job<T>>>,
}

impl<T: 'static> OnWorker<T> {
    /// Starts a thread named `name` that makes the value with `make` and
    /// then runs calls on it; waits at most `within` for `make`.
    pub fn start<E: Send + 'static>(
        name: &str,
        within: Duration,
        make: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<OnWorker<T>, Late<E>> {
        let hanging = hanging_workers();
        if hanging >= MAX_HANGING_WORKERS {
            return Err(Late::TooManyHanging(hanging));
        }
        let (jobs, job_receiver) = mpsc::sync_channel::<Job<T>>(1);
        let (made, made_receiver) = mpsc::sync_channel::<Result<(), E>>(1);
        let fate = Arc::new(AtomicU8::new(RUNNING));
        let worker_fate = Arc::clone(&fate);
        let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            let value = make();
            if !finished(&worker_fate) {
                return;
            }
            match value {
                Ok(value) => {
                    let _ = made.send(Ok(()));
                    serve(value, &job_receiver);
                }
                Err(error) => {
                    let _ = made.send(Err(error));
                }
            }
        });
        if spawned.is_err() {
            return Err(Late::Gone);
        }
        match wait(&made_receiver, &fate, within) {
            Ok(Ok(())) => Ok(OnWorker { jobs: Some(jobs) }),
            Ok(Err(error)) => Err(Late::Failed(error)),
            Err(late) => Err(late),
        }
    }

    /// Runs `job` on the value and waits at most `within` for its result.
    /// After a timeout the worker is abandoned and every later call is
    /// [`Late::Gone`].
    pub fn call<R: Send + 'static, E>(
        &mut self,
        within: Duration,
        job: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> Result<R, Late<E>> {
        let jobs = self.jobs.as_ref().ok_or(Late::Gone)?;
        let (answer, answer_receiver) = mpsc::sync_channel::<R>(1);
        let fate = Arc::new(AtomicU8::new(RUNNING));
        let run = Box::new(move |value: &mut T| {
            // The caller may have stopped waiting: nobody to tell then.
            let _ = answer.send(job(value));
        });
        // The worker takes one job at a time and the caller waits for each:
        // the channel is never full while the worker lives.
        if jobs.try_send(Job { run, fate: Arc::clone(&fate) }).is_err() {
            self.jobs = None;
            return Err(Late::Gone);
        }
        let result = wait(&answer_receiver, &fate, within);
        if result.is_err() {
            self.jobs = None;
        }
        result
    }
}

/// Runs `work` on a thread of its own and waits at most `within` for its
/// result (a connect, whose value then moves to the caller). Past the
/// deadline the thread is abandoned like a worker's call.
pub fn run_within<R: Send + 'static, E>(
    name: &str,
    within: Duration,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Late<E>> {
    let hanging = hanging_workers();
    if hanging >= MAX_HANGING_WORKERS {
        return Err(Late::TooManyHanging(hanging));
    }
    let (answer, answer_receiver) = mpsc::sync_channel::<R>(1);
    let fate = Arc::new(AtomicU8::new(RUNNING));
    let worker_fate = Arc::clone(&fate);
    let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let result = work();
        if finished(&worker_fate) {
            let _ = answer.send(result);
        }
    });
    if spawned.is_err() {
        return Err(Late::Gone);
    }
    wait(&answer_receiver, &fate, within)
}

/// Marks the call done unless its caller abandoned it; an abandoned one
/// counts itself out of the hanging workers. Returns whether to go on.
fn finished(fate: &AtomicU8) -> bool {
    if fate.compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        return true;
    }
    HANGING_WORKERS.fetch_sub(1, Ordering::Relaxed);
    false
}

/// The worker's loop: one job at a time until the owner drops its sender
/// or abandons a job.
fn serve<T>(mut value: T, jobs: &Receiver<Job<T>>) {
    while let Ok(job) = jobs.recv() {
        (job.run)(&mut value);
        if !finished(&job.fate) {
            return;
        }
    }
}

/// The caller's side: the answer within `within`, or the call abandoned
/// (unless the worker finished it in the same instant, whose answer is
/// then taken).
fn wait<R, E>(answers: &Receiver<R>, fate: &AtomicU8, within: Duration) -> Result<R, Late<E>> {
    match answers.recv_timeout(within) {
        Ok(answer) => Ok(answer),
        Err(RecvTimeoutError::Timeout) => {
            if fate.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                HANGING_WORKERS.fetch_add(1, Ordering::Relaxed);
                return Err(Late::TimedOut(within));
            }
            // Done just now: its answer is sent (or it sent nothing because
            // the worker failed); either way it comes without waiting.
            answers.recv_timeout(Duration::from_millis(100)).map_err(|_| Late::Gone)
        }
        Err(RecvTimeoutError::Disconnected) => Err(Late::Gone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// The tests that abandon workers move the process-wide count: one at
    /// a time.
    static COUNTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    const SHORT: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn calls_run_on_the_value_in_order() {
        let mut worker = OnWorker::start("t-order", LONG, || Ok::<_, ()>(Vec::<u32>::new())).unwrap();
        for n in 0..3 {
            worker.call::<_, ()>(LONG, move |v| v.push(n)).unwrap();
        }
        assert_eq!(worker.call::<_, ()>(LONG, |v| v.clone()), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn work_within_its_deadline_returns_its_value() {
        assert_eq!(run_within::<_, ()>("t-run", LONG, || 7), Ok(7));
        let _one = COUNTER.lock();
        let before = hanging_workers();
        let late = run_within::<_, ()>("t-run-late", SHORT, || std::thread::sleep(Duration::from_millis(300)));
        assert_eq!(late, Err(Late::TimedOut(SHORT)));
        let deadline = std::time::Instant::now() + LONG;
        while hanging_workers() > before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hanging_workers(), before);
    }

    #[test]
    fn a_failed_make_is_reported() {
        let result = OnWorker::<u32>::start("t-fail", LONG, || Err::<u32, _>("refused"));
        assert_eq!(result.err(), Some(Late::Failed("refused")));
    }

    #[test]
    fn a_hung_call_is_abandoned_and_counted_until_it_returns() {
        let _one = COUNTER.lock();
        let (release, released) = channel::<()>();
        let released = std::sync::Mutex::new(released);
        let mut worker = OnWorker::start("t-hang", LONG, || Ok::<_, ()>(0u32)).unwrap();
        let before = hanging_workers();
        let late = worker.call::<_, ()>(SHORT, move |_| {
            let _ = released.lock().map(|r| r.recv());
        });
        assert_eq!(late, Err(Late::TimedOut(SHORT)));
        assert!(hanging_workers() > before, "the abandoned worker is counted");
        assert_eq!(worker.call::<_, ()>(LONG, |v| *v), Err(Late::Gone), "abandoned for good");
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + LONG;
        while hanging_workers() > before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hanging_workers(), before, "counted out once its call returned");
    }

    #[test]
    fn a_hung_make_is_abandoned() {
        let _one = COUNTER.lock();
        let before = hanging_workers();
        let result = OnWorker::<u32>::start("t-hang-make", SHORT, || {
            std::thread::sleep(Duration::from_millis(300));
            Ok::<u32, ()>(1)
        });
        assert_eq!(result.err(), Some(Late::TimedOut(SHORT)));
        let deadline = std::time::Instant::now() + LONG;
        while hanging_workers() > before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hanging_workers(), before, "counted out once make returned");
    }
}
