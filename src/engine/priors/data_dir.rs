//! Stemflow's per-user data folder, where the set-up runtime, user-trained priors and training
//! checkpoints live, and the environment variables that move it.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable overriding [`data_dir`].
pub const DATA_DIR_ENV: &str = "STEMFLOW_DATA_DIR";

/// Stemflow's per-user data folder: `$STEMFLOW_DATA_DIR`, else `$XDG_DATA_HOME/stemflow`, else
/// `$HOME/.local/share/stemflow` (on Windows `%LOCALAPPDATA%\stemflow`). The runtime lives in
/// `data_dir()/runtime/`, user-trained priors in `data_dir()/priors/`. `None` when none of
/// those variables is set.
pub fn data_dir() -> Option<PathBuf> {
    data_dir_from(
        non_empty_env(DATA_DIR_ENV),
        non_empty_env("XDG_DATA_HOME"),
        non_empty_env("HOME"),
        non_empty_env("LOCALAPPDATA"),
    )
}

/// The per-user data folder by the platform's conventions only (`$XDG_DATA_HOME/stemflow`,
/// `~/.local/share/stemflow`, `%LOCALAPPDATA%\stemflow`), ignoring `$STEMFLOW_DATA_DIR`: what an
/// installed plugin uses, so a host's environment cannot redirect it.
pub fn conventional_data_dir() -> Option<PathBuf> {
    data_dir_from(
        None,
        non_empty_env("XDG_DATA_HOME"),
        non_empty_env("HOME"),
        non_empty_env("LOCALAPPDATA"),
    )
}

/// [`data_dir`] from explicit variable values, so the rule can be tested without touching the
/// process environment.
pub fn data_dir_from(
    stemflow_data_dir: Option<OsString>,
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
    local_app_data: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(dir) = stemflow_data_dir {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = xdg_data_home {
        return Some(PathBuf::from(dir).join("stemflow"));
    }
    if let Some(home) = home {
        return Some(PathBuf::from(home).join(".local").join("share").join("stemflow"));
    }
    local_app_data.map(|dir| PathBuf::from(dir).join("stemflow"))
}

/// An environment variable's value, treating an empty value as unset.
pub fn non_empty_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_prefers_the_override_then_xdg_then_home() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            data_dir_from(some("/d"), some("/x"), some("/h"), None),
            Some("/d".into())
        );
        assert_eq!(
            data_dir_from(None, some("/x"), some("/h"), None),
            Some("/x/stemflow".into())
        );
        assert_eq!(
            data_dir_from(None, None, some("/h"), None),
            Some("/h/.local/share/stemflow".into())
        );
        assert_eq!(data_dir_from(None, None, None, None), None);
    }
}
