//! Time-domain ("waveform") priors with the analytic fixtures of
//! `tests/fixtures/make_waveform_fixtures.py` (`quiet`: x ~ N(0, 0.01·I), `loud`: N(0, 0.09·I)):
//! the manifest's checks, the score graphs against their closed form, the Langevin separators
//! against the Gaussian posterior mean in waveform output, and the separator's refusals
//! (consistent output is in `tests/separation.rs`, the command line in `tests/cli_separate.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use stemflow::engine::priors::domain::Domain;
use stemflow::engine::priors::manifest::Manifest;
use stemflow::engine::priors::manifest_error::ManifestError;
use stemflow::engine::priors::prior::Prior;
use stemflow::engine::priors::prior_error::PriorError;
use stemflow::engine::priors::runtime::{Runtime, RuntimeOptions, SessionOptions};
use stemflow::engine::search::chain_settings::AnnealedSettings;
use stemflow::engine::search::chain_settings::{LangevinDomain, LangevinForm, LangevinSettings};
use stemflow::engine::search::gaussian_noise::GaussianNoise;
use stemflow::engine::search::separation_error::SeparationError;
use stemflow::engine::search::separator::Separator;
use stemflow::engine::search::settings::{OutputMode, SearchKind, SeparationSettings};

/// The fixtures' variances.
const QUIET: f64 = 0.01;
const LOUD: f64 = 0.09;
/// The fixtures' rate and frame.
const RATE: u32 = 22_050;
const FRAME: usize = 110_250;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn fixture(stem: &str) -> PathBuf {
    repo("tests/fixtures/waveform_priors").join(stem)
}

fn runtime() -> std::sync::Arc<Runtime> {
    Runtime::load(&RuntimeOptions::default()).expect("ONNX Runtime (run `cargo xtask setup`)")
}

fn load(dir: &Path) -> Result<Prior, PriorError> {
    Prior::load(&runtime(), dir, &SessionOptions::default())
}

fn waveform_priors() -> Vec<Prior> {
    ["quiet", "loud"]
        .iter()
        .map(|stem| load(&fixture(stem)).unwrap())
        .collect()
}

/// A copy of the prior folder `source` (same folder name) in a new temporary folder, its
/// manifest edited by `edit`.
fn edited_copy(source: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(source.file_name().unwrap());
    fs::create_dir(&dir).unwrap();
    for entry in fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    (root, dir)
}

/// The field a manifest error names.
fn field_of(result: Result<Manifest, ManifestError>) -> String {
    match result {
        Err(ManifestError::FieldMismatch { field, .. } | ManifestError::MissingField { field, .. }) => {
            field.to_string()
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}

/// The mono mixture of two independent white Gaussian sources of the fixtures' variances.
fn gaussian_mix(samples: usize, seed: u64) -> Vec<f32> {
    let mut noise = GaussianNoise::new(seed);
    let (a, b) = (QUIET.sqrt() as f32, LOUD.sqrt() as f32);
    (0..samples)
        .map(|_| a * noise.sample() + b * noise.sample())
        .collect()
}

/// The least-squares share ⟨s, m⟩/⟨m, m⟩ of the mix in a stem: vₖ/(Σv + σ²) for the posterior
/// mean, 1/2 for the even split. The chains' own fluctuations are independent of m, so this is a
/// sharp measure of where their mean went.
fn share_of_mix(stem: &[f32], mix: &[f32]) -> f64 {
    let dot: f64 = stem
        .iter()
        .zip(mix)
        .map(|(s, m)| f64::from(*s) * f64::from(*m))
        .sum();
    dot / mix.iter().map(|m| f64::from(*m).powi(2)).sum::<f64>()
}

/// ‖a − share·m‖ / ‖share·m‖.
fn relative_error(stem: &[f32], mix: &[f32], share: f64) -> f64 {
    let diff: f64 = stem
        .iter()
        .zip(mix)
        .map(|(s, m)| (f64::from(*s) - share * f64::from(*m)).powi(2))
        .sum();
    let norm: f64 = mix.iter().map(|m| (share * f64::from(*m)).powi(2)).sum();
    (diff / norm).sqrt()
}

fn sgld(form: LangevinForm, steps: usize, eta: f32, sigma: f32, seed: u64) -> SearchKind {
    SearchKind::Langevin(LangevinSettings {
        steps,
        eta,
        sigma,
        form,
        domain: LangevinDomain::Magnitude,
        seed,
        preconditioned: false,
        average: true,
    })
}

fn settings(search: SearchKind, mode: OutputMode) -> SeparationSettings {
    SeparationSettings {
        search,
        mode,
        ..SeparationSettings::default()
    }
}

/// Separates one mono 22.05 kHz frame; returns the stems' first channels.
fn separate_mono(priors: Vec<Prior>, settings: SeparationSettings, mix: &[f32]) -> Vec<Vec<f32>> {
    let mut separator = Separator::new(priors, settings, RATE, 1).unwrap();
    assert_eq!(separator.frame_len(), FRAME);
    separator.separate_frame(&[mix]).unwrap();
    separator.stems().iter().map(|s| s[0].clone()).collect()
}

/// Each stem's share of the mix is the posterior mean's within `tolerance`, and its relative
/// error to the posterior mean is below `fraction` of the even split's (the quiet stem above all:
/// the even split gives it five times its share).
fn assert_posterior_mean(stems: &[Vec<f32>], mix: &[f32], shares: [f64; 2], tolerance: f64, fraction: f64) {
    for ((stem, share), name) in stems.iter().zip(shares).zip(["quiet", "loud"]) {
        let found = share_of_mix(stem, mix);
        let error = relative_error(stem, mix, share);
        let even: Vec<f32> = mix.iter().map(|m| m / 2.0).collect();
        let baseline = relative_error(&even, mix, share);
        println!(
            "{name}: share {found:.4} (posterior mean {share:.4}), relative error {error:.3} \
             (even split {baseline:.3})"
        );
        assert!(
            (found - share).abs() < tolerance,
            "{name}: share {found}, expected {share}"
        );
        assert!(
            error < fraction * baseline,
            "{name}: relative error {error}, even split {baseline}"
        );
    }
}

#[test]
fn a_waveform_manifest_loads_and_its_bad_fields_are_named() {
    let manifest = Manifest::load_verified(&fixture("quiet")).unwrap();
    assert_eq!(manifest.domain(), Domain::Waveform);
    assert_eq!(manifest.time_multiple, 16);
    assert!(manifest.spectrogram.is_none());
    let (_, files) = Manifest::load_with_files(&fixture("quiet")).unwrap();
    assert!(files.decode.is_none() && files.score.is_some());
    assert!(files.annealing.unwrap().weights.is_none());

    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("domain", "time".into()),
        ("domain", "Waveform".into()),
        ("time_multiple", 0.into()),
        ("time_multiple", 3.into()),
        ("time_multiple", 8192.into()),
        ("sample_rate", 44_100.into()),
    ];
    for (field, value) in cases {
        let (_root, dir) = edited_copy(&fixture("quiet"), |j| j[field] = value.clone());
        let result = Manifest::load_verified(&dir);
        let message = result.as_ref().unwrap_err().to_string();
        println!("{field} = {value}: {message}");
        assert_eq!(field_of(result), field, "{field} = {value}");
        assert!(message.contains(&value.to_string().replace('"', "")), "{message}");
    }
    let (_root, dir) = edited_copy(&fixture("quiet"), |j| j["domain"] = "mel".into());
    let message = Manifest::load_verified(&dir).unwrap_err().to_string();
    assert!(
        message.contains("`spectrogram`") && message.contains("`waveform`") && message.contains("`mel`"),
        "{message}"
    );
    let (_root, dir) = edited_copy(&fixture("quiet"), |j| {
        j["graphs"].as_object_mut().unwrap().remove("score");
    });
    assert_eq!(field_of(Manifest::load_verified(&dir)), "graphs.score");
    let (_root, dir) = edited_copy(&fixture("quiet"), |j| {
        j["annealing"]["domain"] = "standardised-log-magnitude".into()
    });
    assert_eq!(field_of(Manifest::load_verified(&dir)), "annealing.domain");
    // The STFT fields mean nothing to a waveform prior: present or not, they are ignored.
    let (_root, dir) = edited_copy(&fixture("quiet"), |j| {
        j["n_fft"] = 4096.into();
        j["hop"] = "any".into();
    });
    assert!(Manifest::load_verified(&dir).unwrap().spectrogram.is_none());
}

/// The spectrogram fixtures load as before: no `domain` means a spectrogram prior, `spectrogram`
/// says so explicitly, and one without an STFT field is still a parse error naming it.
#[test]
fn spectrogram_priors_are_unchanged() {
    for stem in ["sine", "noise"] {
        let dir = repo("tests/fixtures/priors").join(stem);
        let manifest = Manifest::load_verified(&dir).unwrap();
        assert_eq!(manifest.domain(), Domain::Spectrogram);
        assert!(manifest.domain.is_none());
        assert_eq!(manifest.spectrogram.as_ref().unwrap().frames, 432);
        let prior = load(&dir).unwrap();
        assert_eq!((prior.domain(), prior.time_multiple()), (Domain::Spectrogram, 2));
    }
    let sine = repo("tests/fixtures/priors/sine");
    let (_root, dir) = edited_copy(&sine, |j| j["domain"] = "spectrogram".into());
    assert_eq!(
        Manifest::load_verified(&dir).unwrap().domain(),
        Domain::Spectrogram
    );
    let (_root, dir) = edited_copy(&sine, |j| {
        j.as_object_mut().unwrap().remove("bins");
    });
    match Manifest::load_verified(&dir) {
        Err(ManifestError::Parse { message, .. }) => assert!(message.contains("bins"), "{message}"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

/// The score graph gives −x/v and the Gaussian log-density of the whole segment; the noisy graph
/// the same with v + σ². Wrong lengths and calls of the other domain are typed errors.
#[test]
fn the_score_graphs_match_the_closed_form() {
    let mut prior = load(&fixture("loud")).unwrap();
    assert_eq!((prior.domain(), prior.time_multiple()), (Domain::Waveform, 16));
    let t = 1024;
    let x = gaussian_mix(t, 4);
    let mut score = vec![0.0; t];
    for sigma in [None, Some(0.1f32), Some(0.01)] {
        let v = LOUD + sigma.map_or(0.0, |s| f64::from(s).powi(2));
        let logp = match sigma {
            None => prior.waveform_score_into(&x, &mut score).unwrap(),
            Some(sigma) => prior.waveform_noisy_score_into(&x, sigma, &mut score).unwrap(),
        };
        let energy: f64 = x.iter().map(|x| f64::from(*x).powi(2)).sum();
        let expected = -0.5 * energy / v - (t as f64 / 2.0) * (2.0 * std::f64::consts::PI * v).ln();
        assert!(
            (f64::from(logp) - expected).abs() <= 1e-5 * expected.abs(),
            "σ {sigma:?}: logp {logp}, expected {expected}"
        );
        for (g, x) in score.iter().zip(&x) {
            let expected = -f64::from(*x) / v;
            assert!((f64::from(*g) - expected).abs() <= 1e-5 * (1.0 + expected.abs()));
        }
    }
    assert!(matches!(
        prior.waveform_score_into(&x[..1000], &mut score[..1000]),
        Err(PriorError::BadSamples {
            samples: 1000,
            multiple: 16,
            ..
        })
    ));
    assert!(matches!(
        prior.waveform_score_into(&x, &mut score[..16]),
        Err(PriorError::BufferLength { .. })
    ));
    assert!(prior.waveform_noisy_score_into(&x, 0.0, &mut score).is_err());
    let err = prior
        .score_into(&vec![1.0; 513 * 2], 2, &mut vec![0.0; 513 * 2])
        .unwrap_err();
    assert!(matches!(err, PriorError::WrongDomain { .. }), "{err}");
    assert!(err.to_string().contains("`loud` is a waveform prior"), "{err}");
    let err = prior
        .decode_into(&vec![0.0; 513 * 2], 2, &mut vec![0.0; 513 * 2])
        .unwrap_err();
    assert!(matches!(err, PriorError::WrongDomain { .. }), "{err}");
    let mut sine = load(&repo("tests/fixtures/priors/sine")).unwrap();
    let err = sine.waveform_score_into(&x, &mut score).unwrap_err();
    assert!(matches!(err, PriorError::WrongDomain { .. }), "{err}");
}

/// Textbook SGLD over the waveforms of a mix of the two Gaussians finds the posterior mean
/// vₖ/(Σv + σ²)·m (waveform output: the chains themselves, averaged over the second half); the
/// same seed gives the same stems, another seed others.
#[test]
fn waveform_sgld_finds_the_gaussian_posterior_mean() {
    let mix = gaussian_mix(FRAME, 1);
    let sigma = 0.1f32;
    let run = |seed: u64| {
        let search = sgld(LangevinForm::TextbookGaussian, 300, 2e-3, sigma, seed);
        separate_mono(waveform_priors(), settings(search, OutputMode::Waveform), &mix)
    };
    let stems = run(3);
    let total = QUIET + LOUD + f64::from(sigma).powi(2);
    assert_posterior_mean(&stems, &mix, [QUIET / total, LOUD / total], 0.01, 0.5);
    assert_eq!(run(3), stems, "the same seed gives the same stems");
    assert_ne!(run(4), stems, "another seed gives other stems");
}

/// The annealed chains under the noisy graphs, down the fixtures' ladder 0.3 … 0.01, end at the
/// last level's posterior mean (priors N(0, v + σ²), likelihood width λσ). Their shares of the mix
/// are close to it; at the last level the step η·(σ_L/σ₁)² barely moves a chain along the
/// directions only the priors hold, so the average is near one posterior sample there and beats
/// the even split by less than the SGLD chains' does (measured: 2.9 against 4.0 for `quiet`).
#[test]
fn waveform_annealed_chains_find_the_gaussian_posterior_mean() {
    let mix = gaussian_mix(FRAME, 2);
    let search = SearchKind::Annealed(AnnealedSettings {
        steps_per_level: 200,
        eta: 0.04,
        likelihood_scale: 1.0,
        seed: 1,
        average: true,
        preconditioned: false,
    });
    let stems = separate_mono(waveform_priors(), settings(search, OutputMode::Waveform), &mix);
    let last = 0.01f64 * 0.01;
    let total = QUIET + LOUD + 3.0 * last;
    let shares = [(QUIET + last) / total, (LOUD + last) / total];
    assert_posterior_mean(&stems, &mix, shares, 0.02, 1.0);
}

/// Refusals, each a typed error before any frame: Adam with a waveform prior, spectrogram and
/// waveform priors in one run, the KL rule on waveforms, waveform output from spectrogram
/// priors, and annealing with a waveform prior that has no noise-conditioned graph.
#[test]
fn the_separator_refuses_what_waveform_priors_cannot_do() {
    let adam = SeparationSettings::default();
    match Separator::new(waveform_priors(), adam, RATE, 1) {
        Err(e @ SeparationError::WaveformWithAdam { .. }) => {
            let message = e.to_string();
            for needle in [
                "`quiet`",
                "time-domain",
                "--separator sgld",
                "--separator annealed",
            ] {
                assert!(message.contains(needle), "{message}");
            }
        }
        other => panic!("expected WaveformWithAdam, got {:?}", other.err()),
    }
    let sine = load(&repo("tests/fixtures/priors/sine")).unwrap();
    let quiet = load(&fixture("quiet")).unwrap();
    let search = sgld(LangevinForm::TextbookGaussian, 2, 1e-4, 0.1, 0);
    match Separator::new(
        vec![sine, quiet],
        settings(search, OutputMode::Consistent),
        RATE,
        1,
    ) {
        Err(SeparationError::MixedDomains {
            spectrogram,
            waveform,
        }) => assert_eq!((spectrogram.as_str(), waveform.as_str()), ("sine", "quiet")),
        other => panic!("expected MixedDomains, got {:?}", other.err()),
    }
    let kl = sgld(LangevinForm::TextbookKl, 2, 1e-4, 0.1, 0);
    assert!(matches!(
        Separator::new(waveform_priors(), settings(kl, OutputMode::Consistent), RATE, 1),
        Err(SeparationError::KlOnWaveforms { .. })
    ));
    let spectrogram = vec![load(&repo("tests/fixtures/priors/sine")).unwrap()];
    let kl_spectrogram = sgld(LangevinForm::TextbookKl, 2, 1e-4, 0.1, 0);
    assert!(matches!(
        Separator::new(
            spectrogram,
            settings(kl_spectrogram, OutputMode::Waveform),
            RATE,
            1
        ),
        Err(SeparationError::WaveformModeWithSpectrograms { .. })
    ));
    let (_root, dir) = edited_copy(&fixture("quiet"), |j| {
        j.as_object_mut().unwrap().remove("annealing");
    });
    let annealed = SearchKind::Annealed(AnnealedSettings::DEFAULT);
    match Separator::new(
        vec![load(&dir).unwrap()],
        settings(annealed, OutputMode::Consistent),
        RATE,
        1,
    ) {
        Err(SeparationError::NoNoisyScore { stem }) => assert_eq!(stem, "quiet"),
        other => panic!("expected NoNoisyScore, got {:?}", other.err()),
    }
    // Cancelled before the frame: the chains stop.
    let mut separator =
        Separator::new(waveform_priors(), settings(search, OutputMode::Waveform), RATE, 1).unwrap();
    separator
        .cancel_flag()
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mix = vec![0.1f32; FRAME];
    assert!(separator.separate_frame(&[&mix]).is_err());
}
