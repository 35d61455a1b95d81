//! The `sine` test prior's (`tests/fixtures/priors/sine`) exported adjoint graph against reference
//! values computed by JAX autograd (`python -m stemflow_training.make_reference`), so the Rust side
//! checks the gradient without Python: max error ≤ 1e-4 of the reference's largest magnitude, float32.

use serde_json::Value;
use std::path::{Path, PathBuf};
use stemflow::engine::priors::manifest::Manifest;
use stemflow::engine::priors::prior::Prior;
use stemflow::engine::priors::runtime::{Runtime, RuntimeOptions, SessionOptions};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grad_reference")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture().join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// max |a − b| / max |b|.
fn relative_error(found: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(found.len(), expected.len());
    let scale = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let worst = found
        .iter()
        .zip(expected)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

#[test]
fn exported_gradient_matches_autograd_reference() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap()).unwrap();
    let stem = reference["stem"].as_str().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/priors")
        .join(stem);
    let manifest = Manifest::load_verified(&dir).unwrap();
    assert_eq!(
        manifest
            .graphs
            .grad
            .as_ref()
            .map(|g| g.sha256.as_str())
            .unwrap_or(""),
        reference["grad_onnx_sha256"].as_str().unwrap(),
        "the reference was made for another grad.onnx: run `python -m stemflow_training.make_reference`"
    );
    let frames = reference["T"].as_u64().unwrap() as usize;
    let gamma = reference["gamma"].as_f64().unwrap() as f32;
    let (z, g) = (read_f32("z.bin"), read_f32("g.bin"));
    let (s_expected, grad_expected, logp_expected) =
        (read_f32("s.bin"), read_f32("grad_z.bin"), read_f32("logp.bin"));

    let runtime = Runtime::load(&RuntimeOptions::default()).expect("run `cargo xtask setup`");
    let mut prior = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
    let mut s = vec![0.0; z.len()];
    let mut grad = vec![0.0; z.len()];
    let logp = prior.grad_into(&z, &g, gamma, frames, &mut s, &mut grad).unwrap();

    let s_error = relative_error(&s, &s_expected);
    let grad_error = relative_error(&grad, &grad_expected);
    let logp_error = (logp - logp_expected[0]).abs() / logp_expected[0].abs();
    println!("relative errors: s {s_error:.2e}, grad_z {grad_error:.2e}, logp {logp_error:.2e}");
    assert!(s_error <= 1e-4, "s differs from autograd by {s_error:.2e}");
    assert!(
        grad_error <= 1e-4,
        "grad_z differs from autograd by {grad_error:.2e}"
    );
    assert!(
        logp_error <= 1e-4,
        "logp differs from autograd by {logp_error:.2e}"
    );

    // decode agrees with grad's own s output.
    let mut decoded = vec![0.0; z.len()];
    prior.decode_into(&z, frames, &mut decoded).unwrap();
    assert!(relative_error(&decoded, &s) <= 1e-6);
}
