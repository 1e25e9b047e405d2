"""Pipelines, orchestration only: `analyze` (one forward), `generate` and `rollouts` (through the
decode engine, `workbench.decoding.engine`)."""
