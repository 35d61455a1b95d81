//! A panic while one track of a batch is in work (a bug, in Stemflow or in a library it calls)
//! fails that track only: the batch goes on, and the report and summary say which track failed
//! and why. Its partial files go with the unwinding (they remove themselves when dropped).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

/// Set while [`isolate`] runs a track: a panic then is that track's failure, not the process's.
static IN_TRACK: AtomicBool = AtomicBool::new(false);

/// The first panic's message and place while [`IN_TRACK`] (a worker thread's panic reaches the
/// track's thread as a bare payload, so the hook keeps what it says).
static MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Installs the panic hook once: inside [`isolate`] it keeps the message for the track's error
/// line (nothing is printed then); elsewhere the default hook runs as before.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TRACK.load(Ordering::SeqCst) {
                return default(info);
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            let place = info
                .location()
                .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
            let mut kept = MESSAGE.lock().unwrap_or_else(|e| e.into_inner());
            kept.get_or_insert(format!("{message}{place}"));
        }));
    });
}

/// Runs one track's work; a panic in it comes back as its message (with [`install`]ed, the
/// place it happened) instead of ending the process.
pub fn isolate<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    *MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    IN_TRACK.store(true, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(work));
    IN_TRACK.store(false, Ordering::SeqCst);
    result.map_err(|payload| {
        let kept = MESSAGE.lock().unwrap_or_else(|e| e.into_inner()).take();
        kept.or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_comes_back_as_its_message() {
        install();
        assert_eq!(isolate(|| 7), Ok(7));
        let error = isolate(|| -> u32 { panic!("broken frame {}", 3) }).unwrap_err();
        assert!(error.starts_with("broken frame 3 at "), "{error}");
        assert!(error.contains("track_panic.rs"), "{error}");
    }
}
