//! Installing a [`RuntimeSet`]: each wheel fetched with `pip download`, the pinned files taken
//! out of it, checked against their sha256 and moved into the install folder. Idempotent: a file
//! already in place with the right hash is kept, and a wheel whose files are all in place is not
//! fetched again.

use crate::runtime_files::{RuntimeFile, RuntimeSet, Wheel};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The platform tags a Linux x86_64 wheel may carry (pip matches them exactly when a platform is
/// given, and NVIDIA's wheels use several).
const LINUX_X86_64_PLATFORMS: &[&str] = &[
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux2010_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
];

/// The sha256 of a file, read in pieces (the largest library is half a gigabyte).
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let cannot_read = |e: io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = fs::File::open(path).map_err(cannot_read)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(cannot_read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `file` is in `dir` with its pinned hash.
fn installed(dir: &Path, file: &RuntimeFile) -> bool {
    sha256_file(&dir.join(file.name)).is_ok_and(|hash| hash == file.sha256)
}

/// Total size of the set's files as installed in `dir`.
fn installed_bytes(set: &RuntimeSet, dir: &Path) -> u64 {
    set.files()
        .filter_map(|f| fs::metadata(dir.join(f.name)).ok())
        .map(|m| m.len())
        .sum()
}

/// Installs `set` into `dir` (made if missing) and says what it did, how big it is and how long
/// it took.
pub fn install(set: &RuntimeSet, dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    let missing: Vec<&Wheel> = set
        .wheels
        .iter()
        .filter(|wheel| !wheel.files.iter().all(|f| installed(dir, f)))
        .collect();
    if missing.is_empty() {
        println!("{}: already installed in {}", set.label, dir.display());
        return Ok(());
    }
    let download = std::env::temp_dir().join(format!("stemflow-wheels-{}", std::process::id()));
    let result = missing
        .iter()
        .try_for_each(|wheel| install_wheel(wheel, dir, &download));
    let _ = fs::remove_dir_all(&download);
    result?;
    println!(
        "{}: installed and verified in {} ({} files, {:.2} GB, {} wheel(s) fetched, {:.0} s)",
        set.label,
        dir.display(),
        set.files().count(),
        installed_bytes(set, dir) as f64 / 1e9,
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Fetches one wheel into a folder of its own under `download`, installs its files, and removes
/// the wheel again (the GPU set's wheels together are larger than what they install).
fn install_wheel(wheel: &Wheel, dir: &Path, download: &Path) -> Result<(), String> {
    let staging = download.join(wheel.requirement.replace("==", "-"));
    fs::create_dir_all(&staging).map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    println!("fetching {} with pip", wheel.requirement);
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--quiet", "--no-deps"])
        .args(["--disable-pip-version-check", "--only-binary=:all:"])
        .args(["--python-version", "3.11"]);
    for platform in LINUX_X86_64_PLATFORMS {
        pip.args(["--platform", platform]);
    }
    crate::run(pip.arg("--dest").arg(&staging).arg(wheel.requirement))?;
    let archive = find_wheel(&staging)?;
    for file in wheel.files {
        let target = dir.join(file.name);
        if installed(dir, file) {
            continue;
        }
        let folder = target.parent().unwrap_or(dir);
        fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        let staged = staging.join(format!("member-{}", file.sha256));
        extract(&archive, file.member, &staged)?;
        let found = sha256_file(&staged)?;
        if found != file.sha256 {
            return Err(format!(
                "{} from {} has sha256 {found}, expected {}",
                file.member,
                archive.display(),
                file.sha256
            ));
        }
        fs::rename(&staged, &target)
            .or_else(|_| fs::copy(&staged, &target).map(|_| ()))
            .map_err(|e| format!("cannot install {} into {}: {e}", file.name, dir.display()))?;
    }
    fs::remove_dir_all(&staging).map_err(|e| format!("cannot remove {}: {e}", staging.display()))
}

/// The one wheel pip left in `staging`.
fn find_wheel(staging: &Path) -> Result<PathBuf, String> {
    let wheels: Vec<PathBuf> = fs::read_dir(staging)
        .map_err(|e| format!("cannot read {}: {e}", staging.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [wheel] => Ok(wheel.clone()),
        _ => Err(format!(
            "expected one wheel from pip in {}, found {}",
            staging.display(),
            wheels.len()
        )),
    }
}

/// Copies `member` of the wheel (a zip archive) to `to`, streamed.
fn extract(archive: &Path, member: &str, to: &Path) -> Result<(), String> {
    let script = "import shutil, sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
                  shutil.copyfileobj(src, dst, 1 << 20)";
    crate::run(
        Command::new("python3")
            .args(["-c", script])
            .arg(archive)
            .arg(member)
            .arg(to),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file is installed only with its pinned hash; the hash is read in pieces.
    #[test]
    fn a_file_counts_as_installed_only_with_its_hash() {
        let dir = std::env::temp_dir().join(format!("stemflow-wheel-install-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.so"), b"abc").unwrap();
        let file = |sha256| RuntimeFile {
            member: "a.so",
            name: "a.so",
            sha256,
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&dir.join("a.so")).unwrap(), abc);
        assert!(installed(&dir, &file(abc)));
        let zeros = "0000000000000000000000000000000000000000000000000000000000000000";
        assert!(!installed(&dir, &file(zeros)));
        assert!(!installed(&dir.join("missing"), &file(abc)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
