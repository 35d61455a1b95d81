//! `cargo xtask bundle stemflow [--release] [--gpu]`: nice-plug-xtask builds the crate and writes the
//! CLAP and VST3 bundles to `bundled/` in the build's target folder (`target/`, or
//! `$CARGO_TARGET_DIR`); this then makes them self-contained by copying the
//! ONNX Runtime library (from the set-up location, installed first if missing) and the shipped
//! priors (`models/priors/*`) into them, where the plugin looks relative to its own binary:
//!
//! With `--gpu` the GPU runtime (`setup --gpu`'s files) goes into `lib/gpu/` of both bundles.
//!
//! ```text
//! target/bundled/Stemflow/Stemflow.clap        CLAP (one file; hosts scan CLAP folders recursively)
//! target/bundled/Stemflow/lib/                 libonnxruntime.so.1.31.1, providers_shared
//! target/bundled/Stemflow/lib/gpu/             with --gpu: the GPU build, CUDA/cuDNN, licences
//! target/bundled/Stemflow/priors/<stem>/       manifest.json + ONNX graphs
//! target/bundled/Stemflow/stemflow             the command line (finds lib/ and priors/ too)
//! target/bundled/Stemflow/training/            the Python trainer `stemflow train-prior` runs
//! target/bundled/Stemflow.vst3/Contents/x86_64-linux/Stemflow.so
//! target/bundled/Stemflow.vst3/Contents/Resources/{lib,priors}/
//! ```

use std::fs;
use std::path::{Path, PathBuf};

/// The bundle name from `bundler.toml`.
const BUNDLE_NAME: &str = "Stemflow";

/// The folder of `lib/` the GPU runtime goes to; the engine looks there for CUDA
/// (`engine::priors::gpu_runtime::GPU_DIR`).
const GPU_DIR: &str = "gpu";

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            fs::copy(&path, &target)
                .map_err(|e| format!("cannot copy {} to {}: {e}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

/// A set-up runtime to put in the bundles: its folder and the files in it.
pub struct BundledRuntime {
    /// The set-up folder holding the files.
    pub dir: PathBuf,
    /// The files, relative to `dir` (a licence may sit in a subfolder).
    pub names: Vec<&'static str>,
}

impl BundledRuntime {
    /// Copies the files into `to` (made, with any subfolders).
    fn copy_into(&self, to: &Path) -> Result<(), String> {
        for name in &self.names {
            let (from, target) = (self.dir.join(name), to.join(name));
            let folder = target.parent().unwrap_or(to);
            fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
            fs::copy(&from, &target)
                .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), target.display()))?;
        }
        Ok(())
    }
}

/// Puts `lib/` (the CPU runtime's files, and the GPU runtime's in `lib/gpu/` when given) and
/// `priors/` (every shipped prior) into `dir`.
fn add_resources(
    dir: &Path,
    cpu: &BundledRuntime,
    gpu: Option<&BundledRuntime>,
    priors: &Path,
) -> Result<(), String> {
    let lib = dir.join("lib");
    let _ = fs::remove_dir_all(&lib);
    cpu.copy_into(&lib)?;
    if let Some(gpu) = gpu {
        gpu.copy_into(&lib.join(GPU_DIR))?;
    }
    let target = dir.join("priors");
    let _ = fs::remove_dir_all(&target);
    copy_dir(priors, &target)
}

/// Puts the trainer `stemflow train-prior` runs into `dir/training`: `models/training`'s
/// `requirements.txt` and the `stemflow_training` package's modules (no tests, caches or
/// checkpoints). The command line looks for it beside its executable.
fn add_trainer(dir: &Path, root: &Path) -> Result<(), String> {
    let from = root.join("models").join("training");
    let to = dir.join("training");
    let _ = fs::remove_dir_all(&to);
    let package = to.join("stemflow_training");
    fs::create_dir_all(&package).map_err(|e| format!("cannot create {}: {e}", package.display()))?;
    let copy = |from: &Path, to: &Path| {
        fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
    };
    copy(&from.join("requirements.txt"), &to.join("requirements.txt"))?;
    let source = from.join("stemflow_training");
    for entry in fs::read_dir(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "py") {
            copy(&path, &package.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(())
}

/// The folder nice-plug-xtask writes bundles to: `bundled/` in the target folder cargo reports
/// for the workspace (which follows `CARGO_TARGET_DIR` and cargo's configuration).
pub fn bundled_dir(root: &Path) -> Result<PathBuf, String> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .map_err(|e| format!("cargo metadata failed: {e}"))?;
    Ok(metadata.target_directory.as_std_path().join("bundled"))
}

/// Runs nice-plug-xtask's bundler with `args` (e.g. `stemflow --release`), then adds the runtime
/// (`cpu`, and `gpu` when given) and the priors.
pub fn bundle(
    root: &Path,
    args: &[String],
    cpu: &BundledRuntime,
    gpu: Option<&BundledRuntime>,
) -> Result<PathBuf, String> {
    let bundled = bundled_dir(root)?;
    // nice-plug-xtask writes the CLI to `bundled/Stemflow`: a folder from an earlier run goes.
    let previous = bundled.join(BUNDLE_NAME);
    if previous.is_dir() {
        fs::remove_dir_all(&previous).map_err(|e| format!("cannot remove {}: {e}", previous.display()))?;
    }
    nice_plug_xtask::main_with_args(
        "cargo xtask",
        std::iter::once("bundle".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| format!("bundling failed: {e:#}"))?;
    let priors = root.join("models").join("priors");

    // CLAP: one file, moved into a folder with the runtime and priors beside it. nice-plug-xtask
    // also copies the package's binary (the CLI) to `bundled/Stemflow`; it goes into the folder.
    let folder = bundled.join(BUNDLE_NAME);
    let cli = if folder.is_file() {
        let bytes = fs::read(&folder).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
        fs::remove_file(&folder).map_err(|e| e.to_string())?;
        Some(bytes)
    } else {
        None
    };
    fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    if let Some(bytes) = cli {
        let path = folder.join("stemflow");
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
        }
    }
    let clap = bundled.join(format!("{BUNDLE_NAME}.clap"));
    let clap_in_folder = folder.join(format!("{BUNDLE_NAME}.clap"));
    if clap.exists() {
        let _ = fs::remove_file(&clap_in_folder);
        fs::rename(&clap, &clap_in_folder).map_err(|e| format!("cannot move {}: {e}", clap.display()))?;
    }
    if !clap_in_folder.exists() {
        return Err(format!("no CLAP plugin at {}", clap_in_folder.display()));
    }
    add_resources(&folder, cpu, gpu, &priors)?;
    add_trainer(&folder, root)?;
    println!(
        "CLAP: {} (with lib/, priors/ and the command line's training/)",
        clap_in_folder.display()
    );

    // VST3: the runtime and priors go to Contents/Resources.
    let vst3 = bundled.join(format!("{BUNDLE_NAME}.vst3"));
    if vst3.is_dir() {
        let resources = vst3.join("Contents").join("Resources");
        add_resources(&resources, cpu, gpu, &priors)?;
        println!(
            "VST3: {} (with Contents/Resources/lib and priors)",
            vst3.display()
        );
    }
    Ok(clap_in_folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU runtime goes to `lib/`, the GPU runtime (licences in their subfolder) to
    /// `lib/gpu/`, and a second run replaces the first's `lib/`.
    #[test]
    fn the_gpu_runtime_goes_to_lib_gpu_beside_the_cpu_runtime() {
        let root = std::env::temp_dir().join(format!("stemflow-bundle-gpu-{}", std::process::id()));
        let (cpu_dir, gpu_dir, priors, out) = (
            root.join("runtime"),
            root.join("runtime/gpu"),
            root.join("priors"),
            root.join("bundle"),
        );
        fs::create_dir_all(gpu_dir.join("licenses")).unwrap();
        fs::create_dir_all(priors.join("bass")).unwrap();
        fs::write(priors.join("bass/manifest.json"), b"{}").unwrap();
        fs::write(cpu_dir.join("libonnxruntime.so.1.31.1"), b"cpu").unwrap();
        fs::write(gpu_dir.join("libonnxruntime.so.1.31.1"), b"gpu").unwrap();
        fs::write(gpu_dir.join("libcudart.so.13"), b"cudart").unwrap();
        fs::write(gpu_dir.join("licenses/NVIDIA-CUDA-License.txt"), b"licence").unwrap();
        let cpu = BundledRuntime {
            dir: cpu_dir,
            names: vec!["libonnxruntime.so.1.31.1"],
        };
        let gpu = BundledRuntime {
            dir: gpu_dir,
            names: vec![
                "libonnxruntime.so.1.31.1",
                "libcudart.so.13",
                "licenses/NVIDIA-CUDA-License.txt",
            ],
        };
        add_resources(&out, &cpu, Some(&gpu), &priors).unwrap();
        let read = |path: &str| fs::read(out.join(path)).unwrap();
        assert_eq!(read("lib/libonnxruntime.so.1.31.1"), b"cpu");
        assert_eq!(read("lib/gpu/libonnxruntime.so.1.31.1"), b"gpu");
        assert_eq!(read("lib/gpu/libcudart.so.13"), b"cudart");
        assert_eq!(read("lib/gpu/licenses/NVIDIA-CUDA-License.txt"), b"licence");
        assert_eq!(read("priors/bass/manifest.json"), b"{}");
        // Without --gpu, a bundle made again has no GPU runtime left over.
        add_resources(&out, &cpu, None, &priors).unwrap();
        assert!(!out.join("lib/gpu").exists());
        assert_eq!(read("lib/libonnxruntime.so.1.31.1"), b"cpu");
        fs::remove_dir_all(&root).unwrap();
    }

    /// The bundle carries the trainer package and its requirements, and nothing else of
    /// `models/training`.
    #[test]
    fn the_bundle_carries_the_trainer_package() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = std::env::temp_dir().join(format!("stemflow-bundle-test-{}", std::process::id()));
        add_trainer(&dir, root).unwrap();
        let training = dir.join("training");
        assert!(training.join("requirements.txt").is_file());
        assert!(training.join("stemflow_training/train.py").is_file());
        assert!(training.join("stemflow_training/__init__.py").is_file());
        let top: Vec<_> = fs::read_dir(&training)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top.len(), 2, "{top:?}");
        let all_python = fs::read_dir(training.join("stemflow_training"))
            .unwrap()
            .all(|e| e.unwrap().path().extension().is_some_and(|x| x == "py"));
        assert!(all_python);
        fs::remove_dir_all(&dir).unwrap();
    }
}
