//! Project tasks: `cargo xtask setup [--python] [--gpu]`, `cargo xtask test`,
//! `cargo xtask bundle stemflow [--release] [--gpu]`, `cargo xtask gpu-check` (see
//! `gpu_check.rs`) and `cargo xtask train-prior --stem STEM` (see `train.rs`).
//!
//! `setup` is idempotent: it fetches the ONNX Runtime library from the `onnxruntime` wheel on the
//! Python package index with pip, checks its sha256 and installs it in the set-up location
//! (`$STEMFLOW_DATA_DIR`, else `$XDG_DATA_HOME/stemflow`, else `~/.local/share/stemflow`), where
//! the engine looks for it last. `setup --gpu` also installs the GPU build with its CUDA and
//! cuDNN libraries in `runtime/gpu/` (`runtime_files.rs` lists them), `setup --python` the
//! training venv (`.venv`). `gpu-check` compares CUDA with the CPU on a machine with a GPU.

mod bundle;
mod gpu_check;
mod runtime_files;
mod train;
mod wheel_install;

use runtime_files::{RuntimeSet, CPU_LINUX_X86_64, GPU_LINUX_X86_64, ORT_VERSION};
use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(
            args.iter().any(|a| a == "--python"),
            args.iter().any(|a| a == "--gpu"),
        ),
        Some("test") => test(),
        Some("bundle") => bundle_plugin(&args[1..]),
        Some("gpu-check") => gpu_check::gpu_check(&repo_root(), &args[1..]),
        Some("train-prior") => train::train_prior(&repo_root(), &args[1..]),
        _ => Err(
            "usage: cargo xtask <setup [--python] [--gpu] | test | bundle stemflow [--release] [--gpu] \
             | gpu-check [--debug] | train-prior --stem STEM>"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root (the workspace that holds `xtask/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_path_buf()
}

/// Where set-up installs the runtime; must agree with `engine::priors::data_dir::data_dir`.
fn data_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("STEMFLOW_DATA_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("stemflow"));
    }
    env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".local/share/stemflow"))
        .ok_or_else(|| "cannot find a data directory: set STEMFLOW_DATA_DIR or HOME".to_string())
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

/// A runtime set of this platform (the GPU one when `gpu`), or why set-up cannot provide it here.
fn runtime_set(gpu: bool) -> Result<&'static RuntimeSet, String> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Ok(if gpu { &GPU_LINUX_X86_64 } else { &CPU_LINUX_X86_64 })
    } else if gpu {
        Err(format!(
            "set-up installs ONNX Runtime {ORT_VERSION}'s GPU build for Linux x86_64 only; on this \
             platform install a GPU build yourself and pass --ort-lib or set STEMFLOW_ORT_LIB"
        ))
    } else {
        Err(format!(
            "set-up knows the ONNX Runtime {ORT_VERSION} files for Linux x86_64 only; on this \
             platform install the library yourself and pass --ort-lib or set STEMFLOW_ORT_LIB"
        ))
    }
}

/// Fetch, check and install a runtime set (files already in place are kept); returns its folder:
/// `<data dir>/runtime/` for the CPU build, `<data dir>/runtime/gpu/` for the GPU build.
fn setup_runtime(gpu: bool) -> Result<PathBuf, String> {
    let set = runtime_set(gpu)?;
    let runtime = data_dir()?.join("runtime");
    let dir = match set.subdir {
        "" => runtime,
        subdir => runtime.join(subdir),
    };
    wheel_install::install(set, &dir)?;
    Ok(dir)
}

/// The Python environment that trains, exports and checks the priors.
fn setup_python() -> Result<PathBuf, String> {
    let root = repo_root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let requirements = root.join("models/training/requirements.txt");
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    println!("Python training environment ready in {}", venv.display());
    Ok(python)
}

fn setup(python: bool, gpu: bool) -> Result<(), String> {
    setup_runtime(false)?;
    if gpu {
        setup_runtime(true)?;
    }
    if python {
        setup_python()?;
    }
    Ok(())
}

/// The Debian packages the tests need: FluidSynth (libfluidsynth, which
/// `stemflow_training/fluid.py` loads) and the soundfonts `models/training/tests/test_render.py`
/// plays (paths and packages in `stemflow_training/render.py`), and Ardour 7, the real DAW
/// `tests/ardour_render.rs` renders the plugin in.
const TEST_DEBIAN_PACKAGES: &[&str] = &[
    "fluidsynth",
    "timgm6mb-soundfont",
    "avldrums.lv2-soundfont",
    "ardour",
];

/// Whether `dpkg` has a package installed.
fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `apt-get` as root, else through `sudo -n` (never prompting).
fn apt_get(args: &[&str]) -> Command {
    let mut command = if is_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    };
    command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
    command
}

/// Installs the missing `TEST_DEBIAN_PACKAGES` with apt-get (idempotent: nothing runs when all
/// are installed); fails naming the packages when they cannot be installed.
fn setup_debian_packages() -> Result<(), String> {
    let missing: Vec<&str> = TEST_DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    println!("installing the Debian packages the tests need: {list}");
    let installed = run(&mut apt_get(&["update", "-qq"]))
        .and_then(|()| run(apt_get(&["install", "-y", "-qq"]).args(&missing)));
    let still_missing: Vec<&str> = missing
        .into_iter()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if still_missing.is_empty() {
        return Ok(());
    }
    let reason = installed
        .err()
        .unwrap_or_else(|| "apt-get reported success".into());
    let packages = still_missing.join(" ");
    Err(format!(
        "the tests need the Debian packages {packages}, which could not be installed \
         ({reason}): run `apt-get install {packages}` as root"
    ))
}

/// Every test: the Rust workspace, the Python packages (trainer and research tools), then the
/// plugin in a real DAW, after installing what they need (the venv, and the Debian packages of
/// the renderer's tests and of Ardour). The GPU runtime is installed too (about a minute and
/// 2.5 GB), so `tests/gpu_runtime.rs` checks the pinned wheels and the CUDA fallback on every
/// run instead of skipping: it is told to fail rather than skip.
fn test() -> Result<(), String> {
    setup_runtime(false)?;
    setup_runtime(true)?;
    let python = setup_python()?;
    setup_debian_packages()?;
    let root = repo_root();
    run(Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .env("STEMFLOW_REQUIRE_GPU_RUNTIME", "1")
        .args(["test", "--workspace"]))?;
    for suite in ["models/training/tests", "models/research/tests"] {
        run(Command::new(&python)
            .current_dir(&root)
            .env("OMP_NUM_THREADS", "1")
            .args(["-m", "pytest", "-q", suite]))?;
    }
    real_daw_test(&root)
}

/// The plugin in a real DAW (`tests/ardour_render.rs`): bundles it (the test build's profile)
/// and runs that test, which needs the bundles and so is left out of a plain `cargo test`.
fn real_daw_test(root: &Path) -> Result<(), String> {
    bundle_plugin(&["stemflow".to_string()])?;
    let bundled = bundle::bundled_dir(root)?;
    run(Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .env("STEMFLOW_BUNDLE_DIR", &bundled)
        .args([
            "test",
            "--test",
            "ardour_render",
            "--",
            "--ignored",
            "--nocapture",
        ]))
}

/// The plugin bundles (CLAP and VST3) with the runtime and the shipped priors inside; with
/// `--gpu`, the GPU runtime too (in `lib/gpu/`).
fn bundle_plugin(args: &[String]) -> Result<(), String> {
    let gpu = args.iter().any(|a| a == "--gpu");
    let bundler_args: Vec<String> = args.iter().filter(|a| *a != "--gpu").cloned().collect();
    let cpu = bundle::BundledRuntime {
        dir: setup_runtime(false)?,
        names: runtime_set(false)?.files().map(|f| f.name).collect(),
    };
    let gpu = if gpu {
        Some(bundle::BundledRuntime {
            dir: setup_runtime(true)?,
            names: runtime_set(true)?.files().map(|f| f.name).collect(),
        })
    } else {
        None
    };
    bundle::bundle(&repo_root(), &bundler_args, &cpu, gpu.as_ref()).map(|_| ())
}
