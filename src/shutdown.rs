//! Graceful shutdown: SIGTERM and SIGINT set a flag that every loop checks
//! between bounded waits.
//!
//! No signal crate: std links libc already, and the handler only stores to
//! an atomic, which is async-signal-safe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// How often a sleeping loop looks at the flag: the bound on how long a
/// SIGTERM waits for a thread to notice.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

const SIGSTOP: i32 = 19;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn raise(signum: i32) -> i32;
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
}

/// Installs the SIGTERM/SIGINT handler for the whole process.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(i32) as usize;
    // SAFETY: `signal` is the C library function; the handler only performs
    // an atomic store, which is async-signal-safe.
    unsafe {
        signal(SIGTERM, handler);
        signal(SIGINT, handler);
    }
}

/// A shutdown flag for one node: set by a signal or by `request()` (tests
/// run several nodes in one process and stop them one by one).
#[derive(Clone, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst) || SIGNALLED.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until shutdown; returns false on shutdown.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.is_requested() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(POLL_INTERVAL));
        }
    }
}
