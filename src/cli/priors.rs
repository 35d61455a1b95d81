//! `stemflow priors`: every installed prior, where it is, and what its manifest says.

use super::shared::SharedArgs;
use super::stored_level_gains::store_level_gains;
use super::CliError;
use crate::engine::priors::catalog::PriorCatalog;
use crate::engine::priors::domain::Domain;
use crate::engine::priors::manifest::{Manifest, MANIFEST_FILE};
use clap::Args;
use serde_json::json;

/// Arguments of `priors`.
#[derive(Debug, Args)]
pub struct PriorsArgs {
    /// One JSON document: the folders searched and each prior with its status and full manifest.
    #[arg(long)]
    pub json: bool,
    /// Compute every installed spectrogram prior's level gains with the engine and store them in
    /// its manifest.json, so loading it need not decode latent samples (`train-prior` does this
    /// for the priors it makes).
    #[arg(long, conflicts_with = "json")]
    pub store_level_gains: bool,
}

/// One line describing a verified manifest.
pub(super) fn describe(manifest: &Manifest) -> String {
    let m = &manifest.model;
    let field = |name: &str, value: Option<u64>| value.map(|v| format!(" {name}={v}")).unwrap_or_default();
    let nmf = manifest
        .nmf
        .as_ref()
        .map(|n| format!(" + NMF {} atoms ({}/{})", n.atoms, n.n_fft, n.hop))
        .unwrap_or_default();
    let annealing = manifest
        .annealing
        .as_ref()
        .map(|a| format!(" + noise-conditioned score ({} levels)", a.sigmas.len()))
        .unwrap_or_default();
    let domain = match manifest.domain() {
        Domain::Waveform => format!(
            "time-domain (waveform) prior, time_multiple={}: ",
            manifest.time_multiple
        ),
        Domain::Spectrogram => String::new(),
    };
    format!(
        "{domain}{}{}{}{}{nmf}{annealing}",
        m.kind,
        field("K", m.steps),
        field("hidden", m.hidden),
        field("params", m.parameters)
    )
}

/// Run `priors`: list, verify (fields and hashes) and describe every prior found; with `--json`,
/// one JSON document instead of lines (nothing else on standard output).
pub fn run(shared: &SharedArgs, args: PriorsArgs) -> Result<(), CliError> {
    let dirs = shared.search_dirs();
    let catalog = shared.catalog();
    if args.store_level_gains {
        return store_every_level_gains(shared, &catalog);
    }
    if args.json {
        let mut priors: Vec<serde_json::Value> = catalog
            .entries()
            .iter()
            .map(|entry| match Manifest::load_verified(&entry.dir) {
                Ok(manifest) => json!({
                    "stem": entry.stem, "dir": entry.dir, "status": "ok", "manifest": manifest,
                }),
                Err(error) => json!({
                    "stem": entry.stem, "dir": entry.dir, "status": "broken",
                    "error": error.to_string(),
                }),
            })
            .collect();
        priors.extend(
            catalog
                .shadowed()
                .iter()
                .map(|entry| json!({ "stem": entry.stem, "dir": entry.dir, "status": "hidden" })),
        );
        let document = json!({ "searched": dirs, "priors": priors });
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        return Ok(());
    }
    println!(
        "searched, in order: {}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if catalog.entries().is_empty() {
        println!("no priors installed");
        return Ok(());
    }
    for entry in catalog.entries() {
        match Manifest::load_verified(&entry.dir) {
            Ok(manifest) => println!(
                "{:<12} ok      {}  ({})",
                entry.stem,
                describe(&manifest),
                entry.dir.display()
            ),
            Err(error) => println!("{:<12} BROKEN  {error}", entry.stem),
        }
    }
    for entry in catalog.shadowed() {
        println!(
            "{:<12} hidden  by an earlier folder: {}",
            entry.stem,
            entry.dir.display()
        );
    }
    Ok(())
}

/// `--store-level-gains`: stores the level gains of every prior the catalogue lists, saying what
/// it did for each.
fn store_every_level_gains(shared: &SharedArgs, catalog: &PriorCatalog) -> Result<(), CliError> {
    let runtime = shared.runtime()?;
    for entry in catalog.entries() {
        let stored = store_level_gains(&runtime, &entry.dir, &shared.session_options())?;
        let what = if stored {
            "level gains stored in"
        } else {
            "a time-domain prior, no level gains:"
        };
        println!(
            "{:<12} {what} {}",
            entry.stem,
            entry.dir.join(MANIFEST_FILE).display()
        );
    }
    Ok(())
}
