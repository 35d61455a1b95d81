//! Where the plugin's own binary is, so the runtime and priors shipped in its bundle are found
//! with no environment variable: the CLAP folder holds `Stemflow.clap` with `lib/` and `priors/`
//! beside it; a VST3 bundle keeps them in `Contents/Resources/` next to `Contents/<arch>/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the worker looks for the ONNX Runtime library and the priors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// An installed plugin: the runtime only in its bundle, priors in the user's priors folder
    /// and the bundle. A host's environment cannot redirect it.
    Bundle,
    /// A program of its own (the standalone application): the command line's order, so it runs
    /// from a checkout after `cargo xtask setup` — `$STEMFLOW_ORT_LIB`, beside the executable,
    /// the set-up location; `$STEMFLOW_PRIORS`, the user's priors, beside the executable, the
    /// source tree's `models/priors`.
    Program,
}

/// Set once by a program that runs the plugin in its own process (see [`Lookup::Program`]).
static PROGRAM_LOOKUP: AtomicBool = AtomicBool::new(false);

/// Makes every worker started from now on in this process use [`Lookup::Program`].
pub fn use_program_lookup() {
    PROGRAM_LOOKUP.store(true, Ordering::Release);
}

/// The lookup this process's workers use: [`Lookup::Bundle`] unless
/// [`use_program_lookup`] was called.
pub fn lookup() -> Lookup {
    if PROGRAM_LOOKUP.load(Ordering::Acquire) {
        Lookup::Program
    } else {
        Lookup::Bundle
    }
}

/// The file this code was loaded from (the plugin's shared library), if the platform says.
#[cfg(unix)]
pub fn own_binary() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = own_binary as *const () as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; `dli_fname` points into the
    // loader's own storage, valid while the library stays loaded (it is: this code runs from it).
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    std::path::absolute(&path).ok()
}

/// The file this code was loaded from (the plugin's DLL, not the host's executable): the module
/// that contains this function's address.
#[cfg(windows)]
pub fn own_binary() -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    type Module = *mut std::ffi::c_void;
    /// `GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS`: the name argument is an address inside it.
    const FROM_ADDRESS: u32 = 0x4;
    /// `GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT`: no reference to release afterwards.
    const UNCHANGED_REFCOUNT: u32 = 0x2;
    #[link(name = "kernel32")]
    extern "system" {
        fn GetModuleHandleExW(flags: u32, name: *const u16, module: *mut Module) -> i32;
        fn GetModuleFileNameW(module: Module, filename: *mut u16, size: u32) -> u32;
    }
    let mut module: Module = std::ptr::null_mut();
    let address = own_binary as *const () as *const u16;
    // SAFETY: with FROM_ADDRESS the "name" is only used as an address inside a loaded module;
    // `module` receives a handle that stays valid while this code runs from it.
    if unsafe { GetModuleHandleExW(FROM_ADDRESS | UNCHANGED_REFCOUNT, address, &mut module) } == 0 {
        return None;
    }
    let mut name = vec![0u16; 32_768];
    // SAFETY: the buffer holds `name.len()` UTF-16 units; the call writes at most that many.
    let len = unsafe { GetModuleFileNameW(module, name.as_mut_ptr(), name.len() as u32) } as usize;
    if len == 0 || len >= name.len() {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsString::from_wide(&name[..len])))
}

/// The file this code was loaded from: the executable, where the platform cannot say more.
#[cfg(not(any(unix, windows)))]
pub fn own_binary() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

/// Keeps the module this code runs from loaded until the process ends, even if the host unloads
/// the plugin: called before a thread that may still run this code is left behind (a worker stuck
/// in a load at shutdown), so its code is not unmapped under it. False if the platform refused.
#[cfg(unix)]
pub fn keep_own_module_loaded() -> bool {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = keep_own_module_loaded as *const () as *const libc::c_void;
    // SAFETY: as in `own_binary`; dlopen with RTLD_NOLOAD only looks up the loaded module and
    // marks it RTLD_NODELETE; the handle is deliberately never closed.
    unsafe {
        if libc::dladdr(address, &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        !libc::dlopen(
            info.dli_fname,
            libc::RTLD_LAZY | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
        )
        .is_null()
    }
}

/// Keeps the module this code runs from loaded until the process ends (see the unix version).
#[cfg(windows)]
pub fn keep_own_module_loaded() -> bool {
    type Module = *mut std::ffi::c_void;
    /// `GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS`.
    const FROM_ADDRESS: u32 = 0x4;
    /// `GET_MODULE_HANDLE_EX_FLAG_PIN`: the module stays loaded until the process ends.
    const PIN: u32 = 0x1;
    #[link(name = "kernel32")]
    extern "system" {
        fn GetModuleHandleExW(flags: u32, name: *const u16, module: *mut Module) -> i32;
    }
    let mut module: Module = std::ptr::null_mut();
    let address = keep_own_module_loaded as *const () as *const u16;
    // SAFETY: as in `own_binary`.
    unsafe { GetModuleHandleExW(FROM_ADDRESS | PIN, address, &mut module) != 0 }
}

/// Nothing to keep loaded where the code is the executable itself.
#[cfg(not(any(unix, windows)))]
pub fn keep_own_module_loaded() -> bool {
    true
}

/// Folders to search for `lib/` (or the library itself) and `priors/`, nearest first: the
/// binary's folder, and for a VST3 bundle (`…/Contents/<arch>/x.so`) `…/Contents/Resources`.
pub fn bundle_dirs(binary: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = binary.parent() {
        dirs.push(dir.to_path_buf());
        if let Some(contents) = dir.parent() {
            if contents.file_name().is_some_and(|n| n == "Contents") {
                dirs.push(contents.join("Resources"));
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vst3_bundles_look_in_resources() {
        let dirs = bundle_dirs(Path::new("/p/Stemflow.vst3/Contents/x86_64-linux/Stemflow.so"));
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/p/Stemflow.vst3/Contents/x86_64-linux"),
                PathBuf::from("/p/Stemflow.vst3/Contents/Resources")
            ]
        );
        let dirs = bundle_dirs(Path::new("/p/Stemflow/Stemflow.clap"));
        assert_eq!(dirs, vec![PathBuf::from("/p/Stemflow")]);
    }

    #[test]
    fn finds_its_own_binary() {
        let binary = own_binary().expect("the test binary is known");
        assert!(binary.is_file(), "{}", binary.display());
    }
}
