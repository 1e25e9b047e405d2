"""Decoding: the one loop that draws tokens with the KV cache (`engine.decode`), used by
`generate`, `rollouts` and the critical-token and R2R searches of `workbench.credit`."""
