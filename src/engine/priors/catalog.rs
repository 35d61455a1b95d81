//! The catalogue of prior folders: where priors are looked for, in which order, and which stems
//! they offer. Discovery only lists folders; loading and verifying is `Prior::load`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::priors::data_dir::{conventional_data_dir, data_dir, non_empty_env};
use crate::engine::priors::manifest::MANIFEST_FILE;

/// Environment variable listing extra prior folders (path-list syntax, like `PATH`).
pub const PRIORS_ENV: &str = "STEMFLOW_PRIORS";

/// A stem asked for that the catalogue does not have.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A requested stem has no prior folder in any search directory.
    #[error("no prior for stem `{stem}`; available: {}", display_list(.available))]
    UnknownStem {
        /// The name asked for.
        stem: String,
        /// Every stem the catalog found.
        available: Vec<String>,
    },
}

fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// A prior folder found on disk (not yet verified: that happens in `Prior::load`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorEntry {
    /// The folder name, which is the stem name.
    pub stem: String,
    /// The prior folder.
    pub dir: PathBuf,
    /// The search directory it was found in (so a UI can say "user-trained" or "shipped").
    pub search_dir: PathBuf,
}

/// Every prior folder in a list of search directories; the first directory wins a name clash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriorCatalog {
    /// Usable priors, sorted by stem.
    entries: Vec<PriorEntry>,
    /// Priors hidden by one of the same name in an earlier search directory.
    shadowed: Vec<PriorEntry>,
}

impl PriorCatalog {
    /// Lists every `<dir>/<stem>/manifest.json` in `search_dirs`, in order. Missing or
    /// unreadable directories are skipped: discovery never fails.
    pub fn discover(search_dirs: &[PathBuf]) -> PriorCatalog {
        let mut found: BTreeMap<String, PriorEntry> = BTreeMap::new();
        let mut shadowed = Vec::new();
        for search_dir in search_dirs {
            let Ok(read_dir) = std::fs::read_dir(search_dir) else {
                continue;
            };
            let mut here: Vec<PriorEntry> = read_dir
                .filter_map(Result::ok)
                .filter(|entry| entry.path().join(MANIFEST_FILE).is_file())
                .filter_map(|entry| {
                    let stem = entry.file_name().to_str()?.to_string();
                    Some(PriorEntry {
                        stem,
                        dir: entry.path(),
                        search_dir: search_dir.clone(),
                    })
                })
                .collect();
            here.sort_by(|a, b| a.stem.cmp(&b.stem));
            for entry in here {
                if found.contains_key(&entry.stem) {
                    shadowed.push(entry);
                } else {
                    found.insert(entry.stem.clone(), entry);
                }
            }
        }
        PriorCatalog {
            entries: found.into_values().collect(),
            shadowed,
        }
    }

    /// Usable priors, sorted by stem.
    pub fn entries(&self) -> &[PriorEntry] {
        &self.entries
    }

    /// Priors hidden by an earlier search directory's prior of the same name.
    pub fn shadowed(&self) -> &[PriorEntry] {
        &self.shadowed
    }

    /// The stem names available.
    pub fn stems(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.stem.clone()).collect()
    }

    /// The entry for `stem`, if any.
    pub fn get(&self, stem: &str) -> Option<&PriorEntry> {
        self.entries.iter().find(|e| e.stem == stem)
    }

    /// The folders of `stems`, in the order asked, or the first unknown one with the list of
    /// available stems.
    pub fn select<S: AsRef<str>>(&self, stems: &[S]) -> Result<Vec<PathBuf>, CatalogError> {
        stems
            .iter()
            .map(|stem| {
                let stem = stem.as_ref();
                self.get(stem)
                    .map(|e| e.dir.clone())
                    .ok_or_else(|| CatalogError::UnknownStem {
                        stem: stem.to_string(),
                        available: self.stems(),
                    })
            })
            .collect()
    }
}

/// The repository's shipped priors, when running from a checkout.
pub fn shipped_priors_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/priors"));
    dir.is_dir().then_some(dir)
}

/// Where user-trained priors are installed (`stemflow train-prior`) and searched:
/// `data_dir()/priors`.
pub fn user_priors_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("priors"))
}

/// Where priors are looked for, first wins: `explicit`, `$STEMFLOW_PRIORS` (a path list),
/// `data_dir()/priors` (user-trained), `<beside>/priors` for each beside dir, and the
/// repository's `models/priors` when it exists.
pub fn default_search_dirs(explicit: Option<&Path>, beside: &[PathBuf]) -> Vec<PathBuf> {
    let env: Vec<PathBuf> = non_empty_env(PRIORS_ENV)
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    search_dirs_from(
        explicit,
        &env,
        user_priors_dir().as_deref(),
        beside,
        shipped_priors_dir().as_deref(),
    )
}

/// Where an installed plugin looks for priors, first wins: the user's `priors/` folder by the
/// platform's conventions (where `train-prior` installs when no override is set), then
/// `<beside>/priors` for each bundle folder. No environment override and no source tree: the
/// plugin sees what is installed.
pub fn installed_search_dirs(beside: &[PathBuf]) -> Vec<PathBuf> {
    search_dirs_from(
        None,
        &[],
        conventional_data_dir().map(|d| d.join("priors")).as_deref(),
        beside,
        None,
    )
}

/// [`default_search_dirs`] from explicit inputs, so the order is testable without the environment.
pub fn search_dirs_from(
    explicit: Option<&Path>,
    env: &[PathBuf],
    user_priors: Option<&Path>,
    beside: &[PathBuf],
    shipped: Option<&Path>,
) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(explicit.map(Path::to_path_buf));
    dirs.extend(env.iter().cloned());
    dirs.extend(user_priors.map(Path::to_path_buf));
    dirs.extend(beside.iter().map(|d| d.join("priors")));
    dirs.extend(shipped.map(Path::to_path_buf));
    let mut unique = Vec::with_capacity(dirs.len());
    for dir in dirs {
        if !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn discovery_prefers_earlier_dirs_and_records_shadowed() {
        let root = tempfile::tempdir().unwrap();
        let first = root.path().join("first");
        let second = root.path().join("second");
        for (dir, stem) in [
            (&first, "bass"),
            (&second, "bass"),
            (&second, "drums"),
            (&second, "not_a_prior"),
        ] {
            fs::create_dir_all(dir.join(stem)).unwrap();
            if stem != "not_a_prior" {
                fs::write(dir.join(stem).join(MANIFEST_FILE), "{}").unwrap();
            }
        }
        let missing = root.path().join("missing");
        let catalog = PriorCatalog::discover(&[missing, first.clone(), second.clone()]);
        assert_eq!(catalog.stems(), vec!["bass", "drums"]);
        assert_eq!(catalog.get("bass").unwrap().dir, first.join("bass"));
        assert_eq!(catalog.shadowed().len(), 1);
        assert_eq!(catalog.shadowed()[0].dir, second.join("bass"));
        assert_eq!(
            catalog.select(&["drums", "bass"]).unwrap(),
            vec![second.join("drums"), first.join("bass")]
        );
        match catalog.select(&["piano"]) {
            Err(CatalogError::UnknownStem { stem, available }) => {
                assert_eq!(stem, "piano");
                assert_eq!(available, vec!["bass", "drums"]);
            }
            other => panic!("expected UnknownStem, got {other:?}"),
        }
    }

    #[test]
    fn search_dirs_come_in_the_documented_order() {
        let dirs = search_dirs_from(
            Some(Path::new("/explicit")),
            &[PathBuf::from("/env1"), PathBuf::from("/env2")],
            Some(Path::new("/data/priors")),
            &[PathBuf::from("/exe")],
            Some(Path::new("/repo/models/priors")),
        );
        let expected: Vec<PathBuf> = [
            "/explicit",
            "/env1",
            "/env2",
            "/data/priors",
            "/exe/priors",
            "/repo/models/priors",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, expected);
        assert_eq!(
            search_dirs_from(None, &[], None, &[], None),
            Vec::<PathBuf>::new()
        );
    }
}
