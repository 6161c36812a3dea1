//! Graceful shutdown: SIGTERM and SIGINT set a flag that every loop checks
//! between bounded waits, and wake every thread sleeping in
//! [`Shutdown::sleep`] at once.
//!
//! No signal crate: std links libc already. The handler only stores to an
//! atomic and writes one byte to a socket, both async-signal-safe; a small
//! thread reads that byte and notifies the sleepers' condition variable
//! (which a handler may not touch). Sleeping threads therefore wake only
//! when their time is up or the node stops: an idle node does no polling
//! (a 5 ms polling sleep used to cost an idle leader about 1 % of a core).

use std::io::Read as _;
use std::os::fd::IntoRawFd as _;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// The write end of the signal wake-up socket, or -1 before installation.
static SIGNAL_WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Every sleeper of every [`Shutdown`] in the process waits on this; a
/// request or a signal wakes them all and each checks its own flag.
static WAKE: Condvar = Condvar::new();
static WAKE_LOCK: Mutex<()> = Mutex::new(());

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

const SIGSTOP: i32 = 19;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn raise(signum: i32) -> i32;
    fn write(fd: i32, buffer: *const u8, count: usize) -> isize;
}

fn wake_lock() -> MutexGuard<'static, ()> {
    WAKE_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes every sleeper; taking the lock first means none of them can be
/// between checking its flag and starting to wait.
fn wake_all_sleepers() {
    let _guard = wake_lock();
    WAKE.notify_all();
}

/// Freezes the whole process (all threads) as `kill -STOP` would; it runs
/// on when something sends SIGCONT. Only the fault-injection failpoint uses it.
pub fn stop_whole_process() {
    // SAFETY: `raise` is the C library function; SIGSTOP cannot be caught.
    unsafe {
        raise(SIGSTOP);
    }
}

extern "C" fn on_signal(_signum: i32) {
    SIGNALLED.store(true, Ordering::SeqCst);
    let fd = SIGNAL_WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the socket is non-blocking,
        // so a full buffer (the thread is already awake) drops the byte.
        unsafe {
            write(fd, &byte, 1);
        }
    }
}

/// Installs the SIGTERM/SIGINT handler for the whole process, and the
/// thread that turns a signal into a wake-up of every sleeper.
pub fn install_signal_handlers() {
    // Without the wake-up thread sleepers still see the flag when their
    // sleep ends; only the prompt wake-up is lost.
    if let Ok((mut reader, writer)) = UnixStream::pair() {
        if writer.set_nonblocking(true).is_ok() {
            let spawned = std::thread::Builder::new().name("signal-wake".into()).spawn(move || {
                let mut byte = [0u8; 1];
                // Each byte is a signal; the thread ends when the process does.
                while reader.read(&mut byte).is_ok_and(|n| n > 0) {
                    wake_all_sleepers();
                }
            });
            if spawned.is_ok() {
                SIGNAL_WAKE_FD.store(writer.into_raw_fd(), Ordering::SeqCst);
            }
        }
    }
    let handler = on_signal as extern "C" fn(i32) as usize;
    // SAFETY: `signal` is the C library function; the handler only performs
    // an atomic store and a write(2), both async-signal-safe.
    unsafe {
        signal(SIGTERM, handler);
        signal(SIGINT, handler);
    }
}

/// A shutdown flag for one node: set by a signal or by `request()` (tests
/// run several nodes in one process and stop them one by one), or by
/// `fail()` when a role meets an error waiting cannot fix.
#[derive(Clone, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    /// Why the node must stop with a failure (the first reason given).
    failure: Arc<Mutex<Option<String>>>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        wake_all_sleepers();
    }

    /// Stops the node because of an error that will not heal (a refused
    /// password, a database that does not exist): the binary prints
    /// `reason` as its last line and exits non-zero.
    pub fn fail(&self, reason: String) {
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(reason);
        self.request();
    }

    /// The reason given to `fail`, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst) || SIGNALLED.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until shutdown; returns false on shutdown.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = wake_lock();
        loop {
            if self.is_requested() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            guard = WAKE.wait_timeout(guard, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        // Bounded waits all the same: a wake-up lost to a failed signal
        // socket costs at most this long.
        while self.sleep(Duration::from_secs(1)) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_wakes_a_long_sleep_and_only_its_own_sleepers_stop() {
        let (stopping, running) = (Shutdown::new(), Shutdown::new());
        let sleeper = {
            let stopping = stopping.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (stopping.sleep(Duration::from_secs(600)), started.elapsed())
            })
        };
        let bystander = {
            let running = running.clone();
            std::thread::spawn(move || running.sleep(Duration::from_millis(300)))
        };
        std::thread::sleep(Duration::from_millis(50));
        stopping.request();
        let (slept_through, elapsed) = sleeper.join().unwrap();
        assert!(!slept_through, "a requested shutdown ends the sleep early");
        // Not a speed goal: without the wake-up this would take 600 s.
        assert!(elapsed < Duration::from_secs(60), "woke after {elapsed:?}");
        assert!(bystander.join().unwrap(), "another node's sleep runs its full time");
        assert!(!running.is_requested());
        assert!(!stopping.sleep(Duration::from_secs(600)), "after a request, sleeps return at once");
    }

    #[test]
    fn a_failure_stops_the_node_and_keeps_the_first_reason() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.failure(), None);
        shutdown.clone().fail("Redis refused the password".into());
        shutdown.fail("a later, consequential error".into());
        assert!(shutdown.is_requested());
        assert_eq!(shutdown.failure().as_deref(), Some("Redis refused the password"));
    }
}
