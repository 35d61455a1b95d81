//! The ONNX Runtime environment: finding the shared library, checking its version, and making
//! sessions on the requested device.
//!
//! ONNX Runtime is loaded at run time (ort's `load-dynamic`), so the same binary works with a
//! library beside the executable, inside a plugin bundle, or in the set-up location written by
//! `cargo xtask setup`. ort panics when the library is older than the API level it was compiled
//! for, so [`probe_library`] opens the file itself and reads its version before ort ever sees it.
//! A process that will ask for CUDA looks for the GPU build first ([`RuntimeOptions::gpu_build`]);
//! what it takes to register CUDA on it is in [`gpu_runtime`](crate::engine::priors::gpu_runtime).
//! A GPU device that cannot be used falls back to the CPU, saying why once per process.

use std::ffi::{c_char, CStr};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::engine::priors::data_dir::{data_dir, non_empty_env};
use crate::engine::priors::gpu_runtime::{prepare_cuda, GPU_DIR};
use crate::engine::priors::verified_files::{ExternalData, VerifiedGraph};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use ort::ep::ExecutionProvider;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

/// Environment variable naming the ONNX Runtime library (a file, or a folder holding it).
pub const ORT_LIB_ENV: &str = "STEMFLOW_ORT_LIB";
/// The ONNX Runtime API level ort is compiled for (`api-22`): an older library cannot work.
pub const MIN_MINOR_VERSION: u32 = 22;
/// The ONNX Runtime release Stemflow is tested with and `cargo xtask setup` installs.
pub const TESTED_VERSION: &str = "1.31.1";

/// The library's file names on this platform, most specific first.
#[cfg(target_os = "linux")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so.1.31.1", "libonnxruntime.so"];
/// The library's file names on this platform, most specific first.
#[cfg(target_os = "macos")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.1.31.1.dylib", "libonnxruntime.dylib"];
/// The library's file names on this platform, most specific first.
#[cfg(target_os = "windows")]
pub const LIBRARY_NAMES: &[&str] = &["onnxruntime.dll"];
/// The library's file names on this platform, most specific first.
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so"];

/// Everything that can go wrong between "find ONNX Runtime" and "here is a session".
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No candidate file exists; `tried` lists every path looked at, in lookup order.
    #[error("ONNX Runtime library not found; tried: {}", display_paths(.tried))]
    NotFound {
        /// Every path checked, in the order checked.
        tried: Vec<PathBuf>,
    },
    /// The file exists but is not a loadable ONNX Runtime library.
    #[error("{} is not an ONNX Runtime library: {reason}", .path.display())]
    NotALibrary {
        /// The file that was opened.
        path: PathBuf,
        /// What the loader or the symbol lookup said.
        reason: String,
    },
    /// The library is an ONNX Runtime, but one this build cannot use.
    #[error("{} is ONNX Runtime {found}; expected {expected} (tested with {tested})", .path.display())]
    WrongVersion {
        /// The file that was opened.
        path: PathBuf,
        /// The versions that work, e.g. `>= 1.22`.
        expected: String,
        /// The version Stemflow is tested with.
        tested: String,
        /// The version string the library reported.
        found: String,
    },
    /// ort refused to create its environment.
    #[error("could not initialise ONNX Runtime from {}: {reason}", .path.display())]
    Init {
        /// The library ort was given.
        path: PathBuf,
        /// ort's message.
        reason: String,
    },
    /// A session could not be created from a model file (missing, corrupt, or unsupported ops).
    #[error("could not load ONNX model {}: {reason}", .path.display())]
    Session {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// A device name that is not one of the supported ones.
    #[error("expected a device `cpu`, `cuda` or `directml`, found `{found}`")]
    UnknownDevice {
        /// The text that was given.
        found: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the caller wants the runtime looked for, besides the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// A library given explicitly (CLI flag, API argument): a file or a folder holding it. When
    /// set, nothing else is tried, so a typo is reported rather than silently bypassed.
    pub library: Option<PathBuf>,
    /// Folders to search before the set-up location: the CLI passes its executable's folder, the
    /// plugin its bundle folder. Each is searched directly and in its `lib/` subfolder.
    pub beside: Vec<PathBuf>,
    /// Look only in `beside`: no environment variable, no set-up location. An installed plugin
    /// must find the runtime of its own bundle, whatever the host's environment says.
    pub only_beside: bool,
    /// Look for the GPU build first: in each location's `gpu/` folder (see
    /// [`gpu_runtime`](crate::engine::priors::gpu_runtime)) before the location itself. Set when
    /// the process will ask for CUDA; the CPU build stays the default otherwise.
    pub gpu_build: bool,
}

/// Which lookup rule produced the library, so `stemflow doctor`-style output can say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// [`RuntimeOptions::library`].
    Explicit,
    /// The `STEMFLOW_ORT_LIB` environment variable.
    EnvVar,
    /// One of [`RuntimeOptions::beside`] (the folder that matched is given).
    Beside(PathBuf),
    /// `data_dir()/runtime/`, where `cargo xtask setup` installs it.
    SetUpLocation,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibrarySource::Explicit => f.write_str("explicit path"),
            LibrarySource::EnvVar => write!(f, "${ORT_LIB_ENV}"),
            LibrarySource::Beside(dir) => write!(f, "beside {}", dir.display()),
            LibrarySource::SetUpLocation => f.write_str("set-up location"),
        }
    }
}

/// The lookup's inputs with the environment already read, so lookup order is testable without
/// mutating process-global environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryLookup {
    /// See [`RuntimeOptions::library`].
    pub explicit: Option<PathBuf>,
    /// The value of `STEMFLOW_ORT_LIB`, if set and non-empty (authoritative like `explicit`).
    pub env_var: Option<PathBuf>,
    /// See [`RuntimeOptions::beside`].
    pub beside: Vec<PathBuf>,
    /// `data_dir()/runtime`, if a data folder is known.
    pub set_up_dir: Option<PathBuf>,
    /// See [`RuntimeOptions::gpu_build`].
    pub gpu_build: bool,
}

/// A library file that exists, and the rule that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedLibrary {
    /// The file.
    pub path: PathBuf,
    /// The rule that found it.
    pub source: LibrarySource,
}

impl LibraryLookup {
    /// The lookup for `options` and the current process environment.
    pub fn from_env(options: &RuntimeOptions) -> LibraryLookup {
        let environment = !options.only_beside;
        LibraryLookup {
            explicit: options.library.clone(),
            env_var: non_empty_env(ORT_LIB_ENV)
                .filter(|_| environment)
                .map(PathBuf::from),
            beside: options.beside.clone(),
            set_up_dir: data_dir().filter(|_| environment).map(|d| d.join("runtime")),
            gpu_build: options.gpu_build,
        }
    }

    /// The first existing candidate in the order explicit → env var → beside dirs (dir, then
    /// `dir/lib`) → set-up location (with [`Self::gpu_build`], each of those folders' `gpu/`
    /// before them all), whether or not it is usable ([`Self::locate_usable`] with a
    /// check that accepts anything; what the tests of the lookup order use).
    #[cfg(test)]
    pub fn locate(&self) -> Result<LocatedLibrary, RuntimeError> {
        self.locate_usable(|_| Ok(())).map(|(located, ())| located)
    }
}

impl LibraryLookup {
    /// Like [`LibraryLookup::locate`], but a candidate must also pass `probe` (the version check):
    /// a file that exists but is not a usable runtime (foreign, too old) is passed over for the
    /// next location, and only when none passes is the first such refusal returned (or, if no
    /// file existed, the list of paths tried). An explicit path or the env var stays the only
    /// candidate, its refusal final.
    pub fn locate_usable<V>(
        &self,
        probe: impl Fn(&Path) -> Result<V, RuntimeError>,
    ) -> Result<(LocatedLibrary, V), RuntimeError> {
        let mut tried = Vec::new();
        let authoritative = [
            (&self.explicit, LibrarySource::Explicit),
            (&self.env_var, LibrarySource::EnvVar),
        ];
        for (path, source) in authoritative {
            if let Some(path) = path {
                let path = find_in_file_or_dir(path, &mut tried)
                    .ok_or(RuntimeError::NotFound { tried: tried.clone() })?;
                let value = probe(&path)?;
                return Ok((LocatedLibrary { path, source }, value));
            }
        }
        let mut locations: Vec<(PathBuf, LibrarySource)> = Vec::new();
        for dir in &self.beside {
            for candidate_dir in [dir.clone(), dir.join("lib")] {
                locations.push((candidate_dir, LibrarySource::Beside(dir.clone())));
            }
        }
        if let Some(dir) = &self.set_up_dir {
            locations.push((dir.clone(), LibrarySource::SetUpLocation));
        }
        let gpu_locations = locations
            .iter()
            .filter(|_| self.gpu_build)
            .map(|(dir, source)| (dir.join(GPU_DIR), source.clone()));
        let searched: Vec<(PathBuf, LibrarySource)> = gpu_locations.chain(locations.clone()).collect();
        let mut refused = None;
        for (dir, source) in searched {
            for name in LIBRARY_NAMES {
                let path = dir.join(name);
                tried.push(path.clone());
                if !path.is_file() {
                    continue;
                }
                match probe(&path) {
                    Ok(value) => return Ok((LocatedLibrary { path, source }, value)),
                    Err(error) => {
                        log::info!("{} is not usable ({error}); looking further", path.display());
                        refused.get_or_insert(error);
                    }
                }
            }
        }
        Err(refused.unwrap_or(RuntimeError::NotFound { tried }))
    }
}

fn find_in_file_or_dir(path: &Path, tried: &mut Vec<PathBuf>) -> Option<PathBuf> {
    if path.is_dir() {
        find_in_dir(path, tried)
    } else {
        tried.push(path.to_path_buf());
        path.is_file().then(|| path.to_path_buf())
    }
}

fn find_in_dir(dir: &Path, tried: &mut Vec<PathBuf>) -> Option<PathBuf> {
    for name in LIBRARY_NAMES {
        let candidate = dir.join(name);
        tried.push(candidate.clone());
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// An ONNX Runtime release number as the library reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeVersion {
    /// Major release (1 for every release so far).
    pub major: u32,
    /// Minor release: equals the C API level the library provides.
    pub minor: u32,
    /// Patch release.
    pub patch: u32,
}

impl FromStr for RuntimeVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('.');
        let mut next = |what: &str| -> Result<u32, String> {
            let part = parts.next().ok_or_else(|| format!("no {what} number in `{s}`"))?;
            // Tolerate suffixes such as `1.31.1-dev`.
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits
                .parse()
                .map_err(|_| format!("the {what} number in `{s}` is not a number"))
        };
        let major = next("major")?;
        let minor = next("minor")?;
        let patch = next("patch").unwrap_or(0);
        Ok(RuntimeVersion { major, minor, patch })
    }
}

impl fmt::Display for RuntimeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Opens `path`, reads its version via `OrtGetApiBase()->GetVersionString()`, and checks it is
/// one this build can use; never panics, whatever the file is. The library is closed again.
pub fn probe_library(path: &Path) -> Result<RuntimeVersion, RuntimeError> {
    let not_a_library = |reason: String| RuntimeError::NotALibrary {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: loading runs the library's initialisers; a file found by the lookup is trusted to
    // be what it claims (the same trust ort itself places in it).
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| not_a_library(e.to_string()))?;
    type GetApiBase = unsafe extern "system" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
    let get_api_base = unsafe { library.get::<GetApiBase>(b"OrtGetApiBase") }
        .map_err(|e| not_a_library(format!("no `OrtGetApiBase` symbol ({e})")))?;
    // SAFETY: calling the C entry point; it takes no arguments and returns a static pointer.
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return Err(not_a_library("`OrtGetApiBase` returned null".into()));
    }
    // SAFETY: `base` is non-null and points at the library's static `OrtApiBase`.
    let version_ptr: *const c_char = unsafe { ((*base).GetVersionString)() };
    if version_ptr.is_null() {
        return Err(not_a_library("`GetVersionString` returned null".into()));
    }
    // SAFETY: ONNX Runtime returns a static NUL-terminated string.
    let found = unsafe { CStr::from_ptr(version_ptr) }
        .to_string_lossy()
        .into_owned();
    let wrong_version = || RuntimeError::WrongVersion {
        path: path.to_path_buf(),
        expected: format!(">= 1.{MIN_MINOR_VERSION}"),
        tested: TESTED_VERSION.to_string(),
        found: found.clone(),
    };
    let version: RuntimeVersion = found.parse().map_err(|_| wrong_version())?;
    if version.major != 1 || version.minor < MIN_MINOR_VERSION {
        return Err(wrong_version());
    }
    drop(library);
    Ok(version)
}

/// The compute device a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU provider (always available).
    #[default]
    Cpu,
    /// NVIDIA CUDA (needs an onnxruntime-gpu library and the CUDA/cuDNN libraries).
    Cuda,
    /// DirectML on Windows (needs an onnxruntime-directml library).
    DirectMl,
}

impl FromStr for Device {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "directml" => Ok(Device::DirectMl),
            _ => Err(RuntimeError::UnknownDevice { found: s.to_string() }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::DirectMl => "directml",
        })
    }
}

/// The device a session actually runs on: differs from the requested [`Device`] when the GPU
/// provider could not be registered and the session fell back to the CPU.
pub type Backend = Device;

/// How a session should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Requested device; a GPU request falls back to the CPU with a warning.
    pub device: Device,
    /// Intra-op threads (0 lets ONNX Runtime choose). Inter-op is always 1: the graphs are
    /// sequential and parallel mode only doubled the cost in measurements.
    pub threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            device: Device::Cpu,
            threads: 1,
        }
    }
}

/// The loaded ONNX Runtime: the library that was used and ort's process-wide environment.
pub struct Runtime {
    /// The library file in use.
    library: PathBuf,
    /// Which lookup rule found it.
    source: LibrarySource,
    /// Its version.
    version: RuntimeVersion,
    /// ort's environment; sessions are built from it. There is one per process.
    environment: ort::environment::Environment,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// ort allows one environment (and one loaded library) per process: the first successful
/// [`Runtime::load`] is kept here and shared.
static LOADED: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

impl Runtime {
    /// Finds the library (see [`LibraryLookup::locate`]), checks its version, and initialises ort.
    /// A later call returns the runtime already loaded (ort cannot switch libraries in a running
    /// process), with a warning if it would have picked a different file.
    pub fn load(options: &RuntimeOptions) -> Result<Arc<Runtime>, RuntimeError> {
        let (located, version) = LibraryLookup::from_env(options).locate_usable(probe_library)?;
        let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(runtime) = loaded.as_ref() {
            if !same_file(&runtime.library, &located.path) {
                log::warn!(
                    "ONNX Runtime is already loaded from {}; ignoring {} ({})",
                    runtime.library.display(),
                    located.path.display(),
                    located.source
                );
            }
            return Ok(Arc::clone(runtime));
        }
        let path = std::path::absolute(&located.path).unwrap_or_else(|_| located.path.clone());
        let init = |reason: String| RuntimeError::Init {
            path: path.clone(),
            reason,
        };
        let environment = ort::init_from(&path)
            .map_err(|e| init(e.to_string()))?
            .with_name("stemflow")
            .with_telemetry(false)
            .build()
            .map_err(|e| init(e.to_string()))?;
        log::info!(
            "ONNX Runtime {version} from {} ({})",
            path.display(),
            located.source
        );
        let runtime = Arc::new(Runtime {
            library: path,
            source: located.source,
            version,
            environment,
        });
        *loaded = Some(Arc::clone(&runtime));
        Ok(runtime)
    }

    /// The runtime already loaded in this process, if any.
    pub fn loaded() -> Option<Arc<Runtime>> {
        LOADED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The library file in use (tests hand it to child processes).
    pub fn library_path(&self) -> &Path {
        &self.library
    }

    /// Which lookup rule found the library.
    pub fn source(&self) -> &LibrarySource {
        &self.source
    }

    /// The library's version.
    pub fn version(&self) -> RuntimeVersion {
        self.version
    }

    /// A session for `graph` (its bytes as verified; `external` is the external-data file its
    /// tensors may name, also in memory, so ONNX Runtime opens no file itself): `threads`
    /// intra-op threads, one inter-op thread, no spinning, sequential execution, all graph
    /// optimisations. A GPU device whose provider cannot be registered falls back to the CPU
    /// (logged); the returned [`Backend`] says which ran.
    pub fn session(
        &self,
        graph: &VerifiedGraph,
        external: Option<&ExternalData>,
        options: &SessionOptions,
    ) -> Result<(Session, Backend), RuntimeError> {
        let session_error = |reason: String| RuntimeError::Session {
            path: graph.path.clone(),
            reason,
        };
        let builder = || self.builder(options.threads, external).map_err(session_error);
        let mut builder_for_device = builder()?;
        let backend = match options.device {
            Device::Cpu => Device::Cpu,
            gpu => match self.register_gpu(&mut builder_for_device, gpu) {
                Ok(()) => gpu,
                Err(reason) => {
                    report_fallback(gpu, &reason);
                    builder_for_device = builder()?;
                    Device::Cpu
                }
            },
        };
        match builder_for_device.commit_from_memory(&graph.bytes) {
            Ok(session) => Ok((session, backend)),
            // A GPU provider can register and still fail when the session is made (e.g. its
            // CUDA libraries are missing); the CPU is always worth one more try.
            Err(e) if backend != Device::Cpu => {
                report_fallback(backend, &format!("its session failed: {e}"));
                let session = builder()?
                    .commit_from_memory(&graph.bytes)
                    .map_err(|e| session_error(e.to_string()))?;
                Ok((session, Device::Cpu))
            }
            Err(e) => Err(session_error(e.to_string())),
        }
    }

    fn builder(&self, threads: usize, external: Option<&ExternalData>) -> Result<SessionBuilder, String> {
        let message = |e: ort::Error<SessionBuilder>| e.to_string();
        let builder = Session::builder(&self.environment)
            .map_err(|e| e.to_string())?
            .with_intra_threads(threads)
            .map_err(message)?
            .with_inter_threads(1)
            .map_err(message)?
            .with_intra_op_spinning(false)
            .map_err(message)?
            .with_inter_op_spinning(false)
            .map_err(message)?
            .with_parallel_execution(false)
            .map_err(message)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(message)?;
        match external {
            Some(data) => builder
                .with_external_initializer_file_in_memory(&data.location, data.bytes.clone())
                .map_err(message),
            None => Ok(builder),
        }
    }
}

impl Runtime {
    /// Registers `device`'s execution provider on `builder`. CUDA is first made loadable (and
    /// refused with the reason when it cannot be: a CPU build, a broken CUDA library, no driver)
    /// by [`prepare_cuda`], so ONNX Runtime is only asked when it can succeed.
    fn register_gpu(&self, builder: &mut SessionBuilder, device: Device) -> Result<(), String> {
        let result = match device {
            Device::Cpu => Ok(()),
            Device::Cuda => {
                prepare_cuda(&self.library).map_err(|e| e.to_string())?;
                ort::ep::CUDA::default().register(builder)
            }
            Device::DirectMl => ort::ep::DirectML::default().register(builder),
        };
        result.map_err(|e| e.to_string())
    }
}

/// The fallbacks already reported in this process, as (device, reason): a separation makes many
/// sessions, and why the GPU is not used needs saying once.
static REPORTED_FALLBACKS: Mutex<Vec<(Device, String)>> = Mutex::new(Vec::new());

/// Warns once per process and reason that `device` falls back to the CPU (later repeats go to
/// the debug log).
fn report_fallback(device: Device, reason: &str) {
    let reason = &one_line_reason(reason);
    let line = format!("{device} is not available: {reason}; using the CPU");
    let mut reported = REPORTED_FALLBACKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match reported.iter().position(|(d, r)| *d == device && r == reason) {
        Some(known) => {
            log::debug!("{line}");
            // The latest fallback goes last, where [`fallback_reason`] looks.
            let entry = reported.remove(known);
            reported.push(entry);
        }
        None => {
            log::warn!("{line}");
            reported.push((device, reason.to_string()));
        }
    }
}

/// A fallback reason on one line, and ONNX Runtime's messages without the source locations and
/// signatures it prefixes them with: a CUDA error is kept up to its own text (`CUDA failure 35:
/// CUDA driver version is insufficient for CUDA runtime version`), a failed status from its
/// `FAIL : ` on.
fn one_line_reason(raw: &str) -> String {
    let line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(at) = line.find("CUDA failure") {
        let cuda = &line[at..];
        return cuda.split(" ; ").next().unwrap_or(cuda).trim().to_string();
    }
    match line.rfind("FAIL : ") {
        Some(at) => line[at + "FAIL : ".len()..].trim().to_string(),
        None => line,
    }
}

/// Why the latest session asking for `device` in this process fell back to the CPU, if one did
/// (what the plugin's editor shows beside the backend).
pub fn fallback_reason(device: Device) -> Option<String> {
    REPORTED_FALLBACKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .rev()
        .find(|(d, _)| *d == device)
        .map(|(_, reason)| reason.clone())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The library `cargo xtask setup` installs, found the way users find it.
    fn set_up_library() -> PathBuf {
        data_dir()
            .expect("HOME is set")
            .join("runtime")
            .join(LIBRARY_NAMES[0])
    }

    #[cfg(unix)]
    fn link_library(dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let target = dir.join(LIBRARY_NAMES[0]);
        std::os::unix::fs::symlink(set_up_library(), &target).unwrap();
        target
    }

    #[test]
    fn loads_from_the_set_up_location_and_reports_its_version() {
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        assert_eq!(runtime.version().to_string(), "1.31.1");
        assert_eq!(
            probe_library(&set_up_library()).unwrap(),
            "1.31.1".parse().unwrap()
        );
        // A second load hands back the same process-wide runtime.
        let again = Runtime::load(&RuntimeOptions {
            library: Some(set_up_library()),
            beside: vec![],
            only_beside: false,
            gpu_build: false,
        })
        .unwrap();
        assert!(Arc::ptr_eq(&runtime, &again));
        // A different (valid) library cannot replace the loaded one: the first is reused.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join(LIBRARY_NAMES[0]);
        fs::copy(set_up_library(), &copy).unwrap();
        let other = Runtime::load(&RuntimeOptions {
            library: Some(copy),
            beside: vec![],
            only_beside: false,
            gpu_build: false,
        })
        .unwrap();
        assert!(Arc::ptr_eq(&runtime, &other));
        assert_ne!(other.library_path(), dir.path().join(LIBRARY_NAMES[0]));
    }

    #[test]
    fn nonexistent_explicit_path_is_not_found_and_listed() {
        let missing = PathBuf::from("/nonexistent/stemflow/libonnxruntime.so");
        let options = RuntimeOptions {
            library: Some(missing.clone()),
            beside: vec![],
            only_beside: false,
            gpu_build: false,
        };
        match Runtime::load(&options) {
            Err(RuntimeError::NotFound { tried }) => assert_eq!(tried, vec![missing]),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn text_file_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so");
        fs::write(&fake, "definitely not ELF\n").unwrap();
        match probe_library(&fake) {
            Err(RuntimeError::NotALibrary { path, reason }) => {
                assert_eq!(path, fake);
                assert!(!reason.is_empty());
            }
            other => panic!("expected NotALibrary, got {other:?}"),
        }
        let options = RuntimeOptions {
            library: Some(fake),
            beside: vec![],
            only_beside: false,
            gpu_build: false,
        };
        assert!(matches!(
            Runtime::load(&options),
            Err(RuntimeError::NotALibrary { .. })
        ));
    }

    #[test]
    fn a_library_without_the_entry_point_is_not_a_library() {
        // libm is a real shared library that has no `OrtGetApiBase`.
        let libm = Path::new("/lib/x86_64-linux-gnu/libm.so.6");
        if !libm.exists() {
            return;
        }
        match probe_library(libm) {
            Err(RuntimeError::NotALibrary { reason, .. }) => assert!(reason.contains("OrtGetApiBase")),
            other => panic!("expected NotALibrary, got {other:?}"),
        }
    }

    /// Builds a shared library exporting a fake `OrtGetApiBase` that reports `version`, or
    /// `None` when no C compiler is installed.
    #[cfg(unix)]
    fn fake_runtime(dir: &Path, version: &str) -> Option<PathBuf> {
        let source = dir.join("fake.c");
        let library = dir.join(LIBRARY_NAMES[0]);
        let code = format!(
            "typedef struct {{ const void* (*get_api)(unsigned); const char* (*version)(void); }} Base;\n\
             static const void* get_api(unsigned v) {{ (void)v; return 0; }}\n\
             static const char* version(void) {{ return \"{version}\"; }}\n\
             static const Base base = {{ get_api, version }};\n\
             const Base* OrtGetApiBase(void) {{ return &base; }}\n"
        );
        fs::write(&source, code).unwrap();
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&library)
            .arg(&source)
            .status()
            .ok()?;
        status.success().then_some(library)
    }

    #[test]
    #[cfg(unix)]
    fn an_old_or_odd_runtime_is_a_wrong_version_not_a_panic() {
        for version in ["1.20.0", "2.0.0", "banana"] {
            let dir = tempfile::tempdir().unwrap();
            let Some(library) = fake_runtime(dir.path(), version) else {
                eprintln!("no C compiler; skipping");
                return;
            };
            match probe_library(&library) {
                Err(RuntimeError::WrongVersion {
                    expected,
                    tested,
                    found,
                    ..
                }) => {
                    assert_eq!(expected, ">= 1.22");
                    assert_eq!(tested, "1.31.1");
                    assert_eq!(found, version);
                }
                other => panic!("{version}: expected WrongVersion, got {other:?}"),
            }
            let options = RuntimeOptions {
                library: Some(library),
                beside: vec![],
                only_beside: false,
                gpu_build: false,
            };
            let result = Runtime::load(&options);
            assert!(
                matches!(result, Err(RuntimeError::WrongVersion { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn version_strings_parse_and_old_versions_are_rejected_by_rule() {
        let v: RuntimeVersion = "1.31.1".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 31, 1));
        assert_eq!("1.22.0-dev".parse::<RuntimeVersion>().unwrap().minor, 22);
        assert!("garbage".parse::<RuntimeVersion>().is_err());
        assert!("1.21.0".parse::<RuntimeVersion>().unwrap().minor < MIN_MINOR_VERSION);
    }

    #[test]
    #[cfg(unix)]
    fn lookup_order_env_var_beats_beside_beats_set_up_location() {
        let root = tempfile::tempdir().unwrap();
        let env_lib = link_library(&root.path().join("env"));
        let beside_dir = root.path().join("beside");
        let beside_lib = link_library(&beside_dir.join("lib"));
        let set_up_dir = root.path().join("data/runtime");
        let set_up_lib = link_library(&set_up_dir);

        let mut lookup = LibraryLookup {
            explicit: None,
            env_var: Some(env_lib.clone()),
            beside: vec![root.path().join("empty"), beside_dir.clone()],
            set_up_dir: Some(set_up_dir.clone()),
            gpu_build: false,
        };
        let found = lookup.locate().unwrap();
        assert_eq!(
            (found.path, found.source),
            (env_lib.clone(), LibrarySource::EnvVar)
        );

        lookup.env_var = None;
        let found = lookup.locate().unwrap();
        assert_eq!(found.path, beside_lib);
        assert_eq!(found.source, LibrarySource::Beside(beside_dir.clone()));
        // Every probed library is the real runtime.
        assert_eq!(probe_library(&found.path).unwrap().minor, 31);

        lookup.beside = vec![root.path().join("empty")];
        let found = lookup.locate().unwrap();
        assert_eq!(
            (found.path, found.source),
            (set_up_lib, LibrarySource::SetUpLocation)
        );

        // Explicit beats everything, and accepts a folder.
        lookup.explicit = Some(env_lib.parent().unwrap().to_path_buf());
        lookup.env_var = Some(beside_dir.clone());
        let found = lookup.locate().unwrap();
        assert_eq!((found.path, found.source), (env_lib, LibrarySource::Explicit));

        // Nothing anywhere: every path tried is listed, in order.
        let lookup = LibraryLookup {
            explicit: None,
            env_var: None,
            beside: vec![root.path().join("empty")],
            set_up_dir: Some(root.path().join("nothing")),
            gpu_build: false,
        };
        match lookup.locate() {
            Err(RuntimeError::NotFound { tried }) => {
                let empty = root.path().join("empty");
                let mut expected: Vec<PathBuf> = LIBRARY_NAMES.iter().map(|n| empty.join(n)).collect();
                expected.extend(LIBRARY_NAMES.iter().map(|n| empty.join("lib").join(n)));
                expected.extend(LIBRARY_NAMES.iter().map(|n| root.path().join("nothing").join(n)));
                assert_eq!(tried, expected);
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    #[cfg(unix)]
    fn a_gpu_lookup_tries_every_gpu_folder_before_the_cpu_builds() {
        let root = tempfile::tempdir().unwrap();
        let beside_dir = root.path().join("bundle");
        let beside_cpu = link_library(&beside_dir.join("lib"));
        let set_up_dir = root.path().join("data/runtime");
        let set_up_gpu = link_library(&set_up_dir.join(GPU_DIR));
        let mut lookup = LibraryLookup {
            beside: vec![beside_dir.clone()],
            set_up_dir: Some(set_up_dir.clone()),
            gpu_build: true,
            ..LibraryLookup::default()
        };
        // The set-up GPU build beats the CPU build beside the executable ...
        let found = lookup.locate().unwrap();
        assert_eq!(
            (found.path, found.source),
            (set_up_gpu, LibrarySource::SetUpLocation)
        );
        // ... a bundle's own GPU build beats both ...
        let beside_gpu = link_library(&beside_dir.join("lib").join(GPU_DIR));
        assert_eq!(lookup.locate().unwrap().path, beside_gpu);
        // ... and without the GPU request the CPU build is found first.
        lookup.gpu_build = false;
        assert_eq!(lookup.locate().unwrap().path, beside_cpu);
        // With no GPU build anywhere, a GPU request finds the CPU build.
        fs::remove_file(&beside_gpu).unwrap();
        lookup.set_up_dir = None;
        lookup.gpu_build = true;
        assert_eq!(lookup.locate().unwrap().path, beside_cpu);
    }

    #[cfg(unix)]
    #[test]
    fn a_library_that_is_not_usable_is_passed_over_for_the_next_location() {
        let root = tempfile::tempdir().unwrap();
        let (first, second) = (root.path().join("first"), root.path().join("second"));
        fs::create_dir_all(&first).unwrap();
        fs::create_dir_all(second.join("lib")).unwrap();
        fs::write(first.join(LIBRARY_NAMES[0]), b"not a library").unwrap();
        std::os::unix::fs::symlink(set_up_library(), second.join("lib").join(LIBRARY_NAMES[0])).unwrap();
        let lookup = LibraryLookup {
            beside: vec![first.clone(), second.clone()],
            ..LibraryLookup::default()
        };
        // `locate` alone stops at the first file that exists ...
        assert_eq!(lookup.locate().unwrap().path, first.join(LIBRARY_NAMES[0]));
        // ... the version check passes it over for the one that works.
        let (located, version) = lookup.locate_usable(probe_library).unwrap();
        assert_eq!(located.path, second.join("lib").join(LIBRARY_NAMES[0]));
        assert_eq!(located.source, LibrarySource::Beside(second));
        assert!(version.minor >= MIN_MINOR_VERSION);
        // With only the foreign file, its refusal is what the user sees.
        let only_bad = LibraryLookup {
            beside: vec![first],
            ..LibraryLookup::default()
        };
        assert!(matches!(
            only_bad.locate_usable(probe_library),
            Err(RuntimeError::NotALibrary { .. })
        ));
    }

    #[test]
    fn a_lookup_confined_to_its_bundle_reads_no_environment() {
        let options = RuntimeOptions {
            beside: vec![PathBuf::from("/bundle")],
            only_beside: true,
            ..RuntimeOptions::default()
        };
        let lookup = LibraryLookup::from_env(&options);
        assert_eq!((lookup.env_var, lookup.set_up_dir), (None, None));
        assert_eq!(lookup.beside, vec![PathBuf::from("/bundle")]);
    }

    #[test]
    fn devices_parse_and_unknown_names_list_the_valid_ones() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("CUDA".parse::<Device>().unwrap(), Device::Cuda);
        assert_eq!("directml".parse::<Device>().unwrap(), Device::DirectMl);
        let message = "metal".parse::<Device>().unwrap_err().to_string();
        assert!(message.contains("`cpu`") && message.contains("`cuda`") && message.contains("`metal`"));
    }

    #[test]
    fn cuda_request_falls_back_to_cpu_and_says_so() {
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy_prior/toy/decode.onnx");
        let model = VerifiedGraph {
            bytes: fs::read(&path).unwrap(),
            path,
        };
        let options = SessionOptions {
            device: Device::Cuda,
            threads: 1,
        };
        let (session, backend) = runtime.session(&model, None, &options).unwrap();
        assert_eq!(backend, Device::Cpu);
        assert_eq!(session.inputs()[0].name(), "z");
        // The set-up library of the unit tests is the CPU build: that is the reason given.
        let reason = fallback_reason(Device::Cuda).unwrap();
        assert!(reason.contains("is the CPU build"), "{reason}");
        assert!(reason.contains("setup --gpu"), "{reason}");
        let options = SessionOptions {
            device: Device::DirectMl,
            threads: 1,
        };
        assert_eq!(runtime.session(&model, None, &options).unwrap().1, Device::Cpu);
    }

    #[test]
    fn onnx_runtime_s_messages_are_shortened_to_one_line() {
        let failed_load = "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 \
            onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : \
            Failed to load library /gpu/libonnxruntime_providers_cuda.so with error: \
            /gpu/libonnxruntime_providers_cuda.so: undefined symbol: cuTensorMapEncodeTiled\n    ";
        assert_eq!(
            one_line_reason(failed_load),
            "Failed to load library /gpu/libonnxruntime_providers_cuda.so with error: \
             /gpu/libonnxruntime_providers_cuda.so: undefined symbol: cuTensorMapEncodeTiled"
        );
        let cuda = "its session failed: /onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:154 \
            std::conditional_t<THRW, void, onnxruntime::common::Status> onnxruntime::CudaCall(ERRTYPE) \
            [with ERRTYPE = cudaError] CUDA failure 35: CUDA driver version is insufficient for CUDA \
            runtime version ; GPU=-1 ; hostname=vm ; line=355 ; expr=cudaSetDevice(info_.device_id); \n    \n    ";
        assert_eq!(
            one_line_reason(cuda),
            "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version"
        );
        assert_eq!(one_line_reason("no NVIDIA driver\n (x)"), "no NVIDIA driver (x)");
    }

    #[test]
    fn a_corrupt_model_is_a_session_error() {
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        let model = VerifiedGraph {
            path: PathBuf::from("decode.onnx"),
            bytes: b"\x08\x07garbage".to_vec(),
        };
        let result = runtime.session(&model, None, &SessionOptions::default());
        assert!(matches!(result, Err(RuntimeError::Session { .. })), "{result:?}");
    }
}
