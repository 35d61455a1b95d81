//! ONNX Runtime's GPU build: where it is installed, how to tell it from the CPU build, and what
//! must happen before its CUDA provider can be registered.
//!
//! `cargo xtask setup --gpu` installs the GPU build of the tested release, with the CUDA 13 and
//! cuDNN 9 libraries its CUDA provider needs, in a [`GPU_DIR`] folder beside the CPU build
//! (`<data dir>/runtime/gpu/`; `lib/gpu/` in a GPU bundle), so the CPU build stays the default
//! and a CUDA request looks there first. The provider library
//! (`libonnxruntime_providers_cuda.so`) has no run path, so its CUDA libraries are loaded here
//! first, globally, from the runtime's own folder ([`CUDA_PRELOAD`]): the provider and cuDNN then
//! find them by name without `LD_LIBRARY_PATH`. The NVIDIA driver ([`CUDA_DRIVER`]) is the user's;
//! without it CUDA is refused before ONNX Runtime tries, with that as the reason.
//!
//! ONNX Runtime is loaded once per process, so the first load decides the build: a GPU build
//! also runs every CPU session (its CPU provider is the CPU build's), while a process that
//! loaded the CPU build cannot use CUDA until it is restarted ([`CudaUnavailable::CpuBuild`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folder, inside a runtime location, that holds the GPU build.
pub const GPU_DIR: &str = "gpu";

/// The CUDA provider library: only a GPU build has it beside its main library.
#[cfg(windows)]
pub const CUDA_PROVIDER: &str = "onnxruntime_providers_cuda.dll";
/// The CUDA provider library: only a GPU build has it beside its main library.
#[cfg(not(windows))]
pub const CUDA_PROVIDER: &str = "libonnxruntime_providers_cuda.so";

/// The NVIDIA driver's CUDA library, which the system provides (never installed by set-up).
#[cfg(windows)]
pub const CUDA_DRIVER: &str = "nvcuda.dll";
/// The NVIDIA driver's CUDA library, which the system provides (never installed by set-up).
#[cfg(not(windows))]
pub const CUDA_DRIVER: &str = "libcuda.so.1";

/// The libraries the CUDA provider links or loads by name, dependencies first: cudart, cuBLASLt,
/// cuBLAS and cuRAND are linked; cuFFT, NVRTC and cuDNN are opened at run time. Their own
/// dependencies (cuDNN's sub-libraries, NVRTC's builtins, nvJitLink) sit beside them and are
/// found through their `$ORIGIN` run path. Each one present in the runtime's folder is loaded.
#[cfg(target_os = "linux")]
pub const CUDA_PRELOAD: &[&str] = &[
    "libcudart.so.13",
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libcurand.so.10",
    "libcufft.so.12",
    "libnvrtc.so.13",
    "libcudnn.so.9",
];
/// Elsewhere set-up installs no CUDA libraries: a GPU build there finds the user's CUDA
/// installation through the system's library search.
#[cfg(not(target_os = "linux"))]
pub const CUDA_PRELOAD: &[&str] = &[];

/// Why the CUDA provider cannot be used in this process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaUnavailable {
    /// The process runs ONNX Runtime's CPU build, which has no CUDA provider.
    #[error(
        "the ONNX Runtime in use ({}) is the CPU build; CUDA needs the GPU build \
         (`cargo xtask setup --gpu`), loaded first in a process",
        .library.display()
    )]
    CpuBuild {
        /// The library the process loaded.
        library: PathBuf,
    },
    /// One of the GPU build's CUDA libraries is there but cannot be loaded.
    #[error("{} could not be loaded ({reason}); run `cargo xtask setup --gpu` again", .path.display())]
    Library {
        /// The library file.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// The NVIDIA driver is not installed (or not for this architecture).
    #[error("no NVIDIA driver ({name} was not found: {reason})")]
    NoDriver {
        /// The driver library looked for.
        name: &'static str,
        /// What the loader said.
        reason: String,
    },
}

/// Whether `library` (an ONNX Runtime main library) is a GPU build: its CUDA provider sits
/// beside it.
pub fn is_gpu_build(library: &Path) -> bool {
    library
        .parent()
        .is_some_and(|dir| dir.join(CUDA_PROVIDER).is_file())
}

/// The outcome of [`prepare_cuda`] for the folder it was asked for; the libraries it loads stay
/// loaded for the life of the process, so it runs once.
static PREPARED: Mutex<Option<(PathBuf, Result<(), CudaUnavailable>)>> = Mutex::new(None);

/// Makes the CUDA provider of the GPU build `library` loadable: refuses a CPU build, loads the
/// [`CUDA_PRELOAD`] libraries found beside it (globally), then checks that the driver loads.
/// The first call's result is kept for the process.
pub fn prepare_cuda(library: &Path) -> Result<(), CudaUnavailable> {
    if !is_gpu_build(library) {
        return Err(CudaUnavailable::CpuBuild {
            library: library.to_path_buf(),
        });
    }
    let dir = library.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut prepared = PREPARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((done_for, result)) = prepared.as_ref() {
        if *done_for == dir {
            return result.clone();
        }
    }
    let result = preload_from(&dir).and_then(|()| find_driver());
    *prepared = Some((dir, result.clone()));
    result
}

/// Loads each [`CUDA_PRELOAD`] library present in `dir`, globally and for good.
fn preload_from(dir: &Path) -> Result<(), CudaUnavailable> {
    for name in CUDA_PRELOAD {
        let path = dir.join(name);
        if !path.is_file() {
            log::debug!("{} is not in {}; the system's copy is used", name, dir.display());
            continue;
        }
        let library = open_global(&path).map_err(|reason| CudaUnavailable::Library {
            path: path.clone(),
            reason,
        })?;
        // Kept loaded for the life of the process: the provider links against it.
        std::mem::forget(library);
    }
    Ok(())
}

/// Opens `path` with its symbols visible to libraries loaded later (`RTLD_GLOBAL`).
#[cfg(unix)]
fn open_global(path: &Path) -> Result<libloading::Library, String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; the file is one set-up installed after
    // checking its hash, or one the user placed beside their runtime.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map(libloading::Library::from)
        .map_err(|e| loader_message(&e))
}

/// Opens `path`; a loaded DLL satisfies later loads of the same name.
#[cfg(not(unix))]
fn open_global(path: &Path) -> Result<libloading::Library, String> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }.map_err(|e| loader_message(&e))
}

/// What the system loader said (libloading's own message is only `dlopen failed`).
fn loader_message(error: &libloading::Error) -> String {
    std::error::Error::source(error).map_or_else(|| error.to_string(), ToString::to_string)
}

/// Whether the NVIDIA driver's library loads by the system's search.
fn find_driver() -> Result<(), CudaUnavailable> {
    // SAFETY: the driver's initialisers run as they would when the provider loads it.
    match unsafe { libloading::Library::new(CUDA_DRIVER) } {
        Ok(_) => Ok(()),
        Err(e) => Err(CudaUnavailable::NoDriver {
            name: CUDA_DRIVER,
            reason: first_clause(&loader_message(&e)),
        }),
    }
}

/// The loader's message without the file name it repeats (`libcuda.so.1: cannot open shared
/// object file: No such file or directory` → `cannot open shared object file: No such file or
/// directory`), so the fallback line names the file once.
fn first_clause(message: &str) -> String {
    message
        .strip_prefix(CUDA_DRIVER)
        .map(|rest| rest.trim_start_matches(':').trim_start())
        .unwrap_or(message)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_library_is_a_gpu_build_when_its_cuda_provider_is_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("libonnxruntime.so.1.31.1");
        fs::write(&library, b"").unwrap();
        assert!(!is_gpu_build(&library));
        assert_eq!(
            prepare_cuda(&library),
            Err(CudaUnavailable::CpuBuild {
                library: library.clone()
            })
        );
        fs::write(dir.path().join(CUDA_PROVIDER), b"").unwrap();
        assert!(is_gpu_build(&library));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_broken_cuda_library_is_named_with_the_loader_s_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CUDA_PRELOAD[0]);
        fs::write(&path, b"not a library").unwrap();
        match preload_from(dir.path()) {
            Err(CudaUnavailable::Library { path: named, reason }) => {
                assert_eq!(named, path);
                assert!(!reason.is_empty());
            }
            other => panic!("expected Library, got {other:?}"),
        }
        // A folder without any of them leaves the search to the system.
        assert_eq!(preload_from(&dir.path().join("none")), Ok(()));
    }

    #[test]
    fn the_driver_s_message_names_the_file_once() {
        let message = format!("{CUDA_DRIVER}: cannot open shared object file: No such file or directory");
        assert_eq!(
            first_clause(&message),
            "cannot open shared object file: No such file or directory"
        );
        assert_eq!(first_clause("other"), "other");
    }
}
