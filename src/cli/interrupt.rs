//! Ctrl-C and termination requests during a long command: the first one asks the job to stop
//! (so it can remove what it started writing); a second one ends the process as usual.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when SIGINT or SIGTERM arrived since [`install`].
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The flag a job polls; set by the signal handler.
pub fn flag() -> &'static AtomicBool {
    &REQUESTED
}

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Routes the first SIGINT / SIGTERM to [`flag`]; the handler resets itself, so the next signal
/// has its default effect. Also ignores SIGXFSZ, so a write past the file-size limit fails with
/// an error the job reports (and cleans up after) instead of killing the process.
pub fn install() {
    REQUESTED.store(false, Ordering::Relaxed);
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" has no handler to run.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    #[cfg(unix)]
    // SAFETY: `on_signal` only stores to an atomic; the sigaction struct is fully initialised.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}
