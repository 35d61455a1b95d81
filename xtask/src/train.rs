//! `cargo xtask train-prior --stem STEM [--minutes M] [--steps N] [--dry-run]`: one instrument
//! prior of `models/priors/` from the rendered data, with the settings the shipped priors used.
//!
//! The data cache is rendered first when it lacks the stem: `models/training/.cache/data` for the
//! four shipped stems, `models/training/.cache/data-<stem>` (render.py `--extra-stem`) for
//! `strings` and `organ`. Training resumes from `models/training/checkpoints/<stem>/`.

use std::path::Path;
use std::process::Command;

/// The shipped instrument stems (render.py `STEMS`).
const SHIPPED_STEMS: &[&str] = &["bass", "drums", "guitar", "piano"];
/// Fifth stems render.py makes with `--extra-stem` (render.py `EXTRA_STEMS`).
const EXTRA_STEMS: &[&str] = &["organ", "strings"];
/// The shipped priors' wall-clock limit per run, minutes.
const DEFAULT_MINUTES: &str = "36";
/// The shipped priors' optimizer steps.
const DEFAULT_STEPS: &str = "8000";
/// The shipped priors' batch.
const BATCH: &str = "16";
/// Seconds of audio taken for training and for validation: all of the rendered data.
const ALL_AUDIO_SECONDS: &str = "100000";

/// The parsed options.
struct Options {
    stem: String,
    minutes: String,
    steps: String,
    dry_run: bool,
}

const USAGE: &str = "usage: cargo xtask train-prior --stem bass|drums|guitar|piano|strings|organ \
                     [--minutes M (36)] [--steps N (8000)] [--dry-run]";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        stem: String::new(),
        minutes: DEFAULT_MINUTES.into(),
        steps: DEFAULT_STEPS.into(),
        dry_run: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--stem" => options.stem = value("--stem")?,
            "--minutes" => options.minutes = value("--minutes")?,
            "--steps" => options.steps = value("--steps")?,
            "--dry-run" => options.dry_run = true,
            other => return Err(format!("unknown option `{other}`; {USAGE}")),
        }
    }
    if !SHIPPED_STEMS.contains(&options.stem.as_str()) && !EXTRA_STEMS.contains(&options.stem.as_str()) {
        return Err(format!("no rendered data for stem `{}`; {USAGE}", options.stem));
    }
    if !options.minutes.parse::<f64>().is_ok_and(|m| m > 0.0) {
        return Err(format!(
            "--minutes must be a positive number, found `{}`",
            options.minutes
        ));
    }
    if !options.steps.parse::<u32>().is_ok_and(|s| s > 0) {
        return Err(format!(
            "--steps must be a positive whole number, found `{}`",
            options.steps
        ));
    }
    Ok(options)
}

/// Renders the data (when missing) and trains `models/priors/<stem>` with the project venv (made
/// first, except for a dry run, which only prints the commands).
pub fn train_prior(root: &Path, args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let stem = options.stem.as_str();
    let training = root.join("models/training");
    let extra = EXTRA_STEMS.contains(&stem);
    let cache = if extra {
        format!(".cache/data-{stem}")
    } else {
        ".cache/data".to_string()
    };
    let (train_dir, valid_dir) = (format!("{cache}/train/{stem}"), format!("{cache}/valid/{stem}"));
    let python = if options.dry_run {
        root.join(".venv/bin/python")
    } else {
        crate::setup_python()?
    };
    let command = |module: &str| {
        let mut command = Command::new(&python);
        command
            .current_dir(&training)
            .env("PYTHONPATH", ".")
            .env("OMP_NUM_THREADS", "1")
            .args(["-m", module]);
        command
    };
    let mut steps = Vec::new();
    if !(training.join(&train_dir).is_dir() && training.join(&valid_dir).is_dir()) {
        let mut render = command("stemflow_training.render");
        render.args(["--out", &cache]);
        if extra {
            render
                .args(["--extra-stem", stem, "--manifest"])
                .arg(format!("../data-manifest-{stem}.json"));
        }
        steps.push(render);
    }
    let mut train = command("stemflow_training.train");
    train
        .args(["--stem", stem, "--source"])
        .arg(format!("dir:{train_dir},{valid_dir}"))
        .args([
            "--seconds-of-audio",
            ALL_AUDIO_SECONDS,
            "--valid-seconds",
            ALL_AUDIO_SECONDS,
        ])
        .args([
            "--steps",
            &options.steps,
            "--batch",
            BATCH,
            "--max-minutes",
            &options.minutes,
        ])
        .args(["--ckpt-dir", &format!("checkpoints/{stem}"), "--out"])
        .arg(format!("../priors/{stem}"));
    steps.push(train);
    println!(
        "train-prior {stem}: checkpoints in {} (run again to resume; delete it to start over)",
        training.join("checkpoints").join(stem).display()
    );
    for mut step in steps {
        if options.dry_run {
            println!("would run: {step:?}");
        } else {
            crate::run(&mut step)?;
        }
    }
    Ok(())
}
