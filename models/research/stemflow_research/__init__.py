"""Evaluation, labs and screens for the Stemflow priors, kept apart from what `stemflow
train-prior` imports (the `stemflow_training` package: render, train, export).

- `evaluate`: per-stem SDR of the baselines (mixture/N, oracle masks, KL-NMF) and of the Rust
  CLI's separation on rendered validation mixtures.
- `prior_check`: the log-density matrix of priors × instruments through `encode.onnx`.
- `search_lab`: a numpy re-implementation of the latent search, to screen variants on 5-s frames
  (a screening tool: the figures quoted for a setting come from `evaluate`).
- `restart_selection_lab`: whether the priors' own likelihood can choose among restarts.
- `graph_timing`: milliseconds per call of each graph of a prior.

This package imports `stemflow_training` (STFT, audio reading, file hashes); `stemflow_training`
never imports it. Run from `models/research` with `PYTHONPATH=../training`, e.g.
`PYTHONPATH=../training python -m stemflow_research.evaluate --help`.
"""
