//! A panic on the audio thread, caught by `Plugin::process`, without the panic hook's work
//! there: the default hook formats the message (allocating) and locks stderr, neither of which
//! the audio thread may do. While a block is processed the hook only raises a flag; the worker
//! reports it from its own thread ([`take_report`]). Panics anywhere else reach the hook that was
//! installed before, unchanged.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

thread_local! {
    /// Set while this thread processes a block for the host.
    static PROCESSING: Cell<bool> = const { Cell::new(false) };
}

/// Raised by a panic on the audio thread; cleared when reported.
static CAUGHT: AtomicBool = AtomicBool::new(false);

/// A panic hook.
type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Installs the hook once per process (main thread, when the plugin is made).
pub fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| std::panic::set_hook(quiet_while_processing(std::panic::take_hook())));
}

/// `previous`, except on a thread processing a block, where a panic only raises the flag.
fn quiet_while_processing(previous: Hook) -> Hook {
    Box::new(move |info| {
        if PROCESSING.with(Cell::get) {
            CAUGHT.store(true, Ordering::Relaxed);
        } else {
            previous(info);
        }
    })
}

/// Runs `f` as the processing of one block: a panic inside raises the flag instead of running
/// the previous hook; returns whether `f` finished without panicking.
pub fn process_block(f: impl FnOnce()) -> bool {
    PROCESSING.with(|p| p.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    PROCESSING.with(|p| p.set(false));
    result.is_ok()
}

/// Whether a panic was caught on the audio thread since the last call (worker thread).
pub fn take_report() -> bool {
    CAUGHT.swap(false, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_panic_while_processing_skips_the_previous_hook_and_is_reported() {
        static PREVIOUS_RAN: AtomicUsize = AtomicUsize::new(0);
        // A hook of our own underneath, counting the panics that reach it.
        let original: std::sync::Arc<Hook> = std::sync::Arc::new(std::panic::take_hook());
        let below = std::sync::Arc::clone(&original);
        std::panic::set_hook(quiet_while_processing(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() == Some(&"audio-thread test panic") {
                PREVIOUS_RAN.fetch_add(1, Ordering::SeqCst);
            } else {
                below(info);
            }
        })));
        assert!(!process_block(|| panic!("audio-thread test panic")));
        assert_eq!(
            PREVIOUS_RAN.load(Ordering::SeqCst),
            0,
            "the hook ran on the audio thread"
        );
        assert!(take_report());
        assert!(!take_report(), "reported once");
        // Outside a block, panics reach the hook below as before.
        assert!(std::panic::catch_unwind(|| panic!("audio-thread test panic")).is_err());
        assert_eq!(PREVIOUS_RAN.load(Ordering::SeqCst), 1);
        assert!(process_block(|| {}));
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| original(info)));
    }
}
