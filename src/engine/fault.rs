//! Faults a test injects into the engine, to check that the plugin and the command line survive
//! them: a panic or a hang while a prior loads or while a frame is separated. Only a build with the
//! `fault-injection` feature has them (the test build turns it on through the dev-dependency on
//! this crate); there `STEMFLOW_FAULT` names the fault. Every other build compiles [`inject`] to
//! nothing.

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// At the start of loading one prior (`Prior::load`).
    PriorLoad,
    /// At the start of separating one frame (`Separator::separate_frame`).
    Frame,
}

/// The faults `STEMFLOW_FAULT` can name, and where each strikes.
#[cfg(feature = "fault-injection")]
const FAULTS: [(&str, Site, Fault); 5] = [
    ("load-panic", Site::PriorLoad, Fault::Panic),
    ("load-hang", Site::PriorLoad, Fault::Hang),
    ("frame-panic", Site::Frame, Fault::Panic),
    ("frame-hang", Site::Frame, Fault::Hang),
    ("frame-stall", Site::Frame, Fault::Stall),
];

/// What an injected fault does.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Panics.
    Panic,
    /// Never returns (a read from a stalled disk, a runtime stuck in a lock).
    Hang,
    /// Shows no sign of work until the file `STEMFLOW_FAULT_RELEASE` names exists (at most a
    /// minute), then goes on (a disk that stalls and recovers): the plugin gives up waiting and
    /// must wait again once the worker moves.
    Stall,
}

/// Strikes the fault `STEMFLOW_FAULT` names if it belongs to `site`. A frame fault lets the first
/// frame of the process through and strikes the second, so a test sees a fault partway through.
#[cfg(feature = "fault-injection")]
pub fn inject(site: Site) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FRAMES: AtomicUsize = AtomicUsize::new(0);
    let Ok(name) = std::env::var("STEMFLOW_FAULT") else {
        return;
    };
    let Some(&(_, _, fault)) = FAULTS.iter().find(|(n, s, _)| *n == name && *s == site) else {
        return;
    };
    if site == Site::Frame && FRAMES.fetch_add(1, Ordering::SeqCst) == 0 {
        return;
    }
    match fault {
        Fault::Panic => panic!("fault injected by a test: {name}"),
        Fault::Hang => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Fault::Stall => {
            let release = std::env::var_os("STEMFLOW_FAULT_RELEASE").map(std::path::PathBuf::from);
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_secs(60)
                && !release.as_ref().is_some_and(|file| file.exists())
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// No faults in this build.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn inject(_site: Site) {}

/// `default`, or in a fault-injection build the seconds `STEMFLOW_STALL_SECONDS` gives, so a test
/// of a stuck worker does not wait the plugin's full stall limit.
pub fn stall_limit(default: std::time::Duration) -> std::time::Duration {
    #[cfg(feature = "fault-injection")]
    if let Some(seconds) = std::env::var("STEMFLOW_STALL_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
    {
        return std::time::Duration::from_secs_f64(seconds);
    }
    default
}
