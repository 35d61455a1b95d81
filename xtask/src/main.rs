//! Project tasks: `cargo xtask setup`, `cargo xtask test`, `cargo xtask bundle stemflow [--release]`
//! and `cargo xtask train-prior --stem STEM` (see `train.rs`).
//!
//! `setup` is idempotent: it fetches the ONNX Runtime library from the `onnxruntime` wheel on the
//! Python package index with pip, checks its sha256 and installs it in the set-up location
//! (`$STEMFLOW_DATA_DIR`, else `$XDG_DATA_HOME/stemflow`, else `~/.local/share/stemflow`), where
//! the engine looks for it last. `setup --python` also makes the training venv (`.venv`).

mod bundle;
mod train;

use sha2::{Digest, Sha256};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The ONNX Runtime release the engine is built and tested against.
const ORT_VERSION: &str = "1.31.1";

/// One library file taken out of the wheel, with the hash it must have.
struct RuntimeFile {
    /// Path inside the wheel.
    member: &'static str,
    /// File name in the set-up location.
    name: &'static str,
    /// sha256 of the file (Linux x86_64 wheel, manylinux_2_28).
    sha256: &'static str,
}

/// What the Linux x86_64 wheel of `onnxruntime==1.31.1` carries that the engine needs.
const LINUX_X86_64_FILES: &[RuntimeFile] = &[
    RuntimeFile {
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        name: "libonnxruntime.so.1.31.1",
        sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    },
    RuntimeFile {
        member: "onnxruntime/capi/libonnxruntime_providers_shared.so",
        name: "libonnxruntime_providers_shared.so",
        sha256: "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(args.iter().any(|a| a == "--python")),
        Some("test") => test(),
        Some("bundle") => bundle_plugin(&args[1..]),
        Some("train-prior") => train::train_prior(&repo_root(), &args[1..]),
        _ => Err(
            "usage: cargo xtask <setup [--python] | test | bundle stemflow [--release] | train-prior --stem STEM>"
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

fn sha256_file(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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

/// The runtime files of this platform, or why set-up cannot provide them here.
fn runtime_files() -> Result<&'static [RuntimeFile], String> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Ok(LINUX_X86_64_FILES)
    } else {
        Err(format!(
            "set-up knows the ONNX Runtime {ORT_VERSION} files for Linux x86_64 only; on this \
             platform install the library yourself and pass --ort-lib or set STEMFLOW_ORT_LIB"
        ))
    }
}

/// Fetch, check and install the ONNX Runtime library (skipped when already in place).
fn setup_runtime() -> Result<PathBuf, String> {
    let files = runtime_files()?;
    let dir = data_dir()?.join("runtime");
    let installed = |f: &RuntimeFile| sha256_file(&dir.join(f.name)).is_ok_and(|h| h == f.sha256);
    if files.iter().all(installed) {
        println!(
            "ONNX Runtime {ORT_VERSION}: already installed in {}",
            dir.display()
        );
        return Ok(dir);
    }
    let download = env::temp_dir().join(format!("stemflow-ort-{}", std::process::id()));
    fs::create_dir_all(&download).map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    println!("ONNX Runtime {ORT_VERSION}: fetching the onnxruntime wheel with pip");
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps"])
        .args([
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
            "--dest",
        ])
        .arg(&download)
        .arg(format!("onnxruntime=={ORT_VERSION}")))?;
    let wheel = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for file in files {
        let staged = download.join(file.name);
        let script = "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))";
        run(Command::new("python3")
            .args(["-c", script])
            .arg(&wheel)
            .arg(file.member)
            .arg(&staged))?;
        let found = sha256_file(&staged)?;
        if found != file.sha256 {
            return Err(format!(
                "{} from {} has sha256 {found}, expected {}",
                file.member,
                wheel.display(),
                file.sha256
            ));
        }
        fs::rename(&staged, dir.join(file.name))
            .or_else(|_| fs::copy(&staged, dir.join(file.name)).map(|_| ()))
            .map_err(|e| format!("cannot install {} into {}: {e}", file.name, dir.display()))?;
    }
    let _ = fs::remove_dir_all(&download);
    println!(
        "ONNX Runtime {ORT_VERSION}: installed and verified in {}",
        dir.display()
    );
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

fn setup(python: bool) -> Result<(), String> {
    setup_runtime()?;
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
/// the renderer's tests and of Ardour).
fn test() -> Result<(), String> {
    setup_runtime()?;
    let python = setup_python()?;
    setup_debian_packages()?;
    let root = repo_root();
    run(Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
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

/// The plugin bundles (CLAP and VST3) with the runtime and the shipped priors inside.
fn bundle_plugin(args: &[String]) -> Result<(), String> {
    let runtime_dir = setup_runtime()?;
    let names: Vec<&str> = runtime_files()?.iter().map(|f| f.name).collect();
    bundle::bundle(&repo_root(), args, &runtime_dir, &names).map(|_| ())
}
