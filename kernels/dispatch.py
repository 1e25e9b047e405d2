"""Backend choice for every kernel: Triton for CUDA tensors, the PyTorch reference on CPU.

`backend="auto"` picks Triton when the tensor is on a CUDA device and a Triton
implementation of that kernel is registered; `"torch"` forces the reference; `"triton"`
demands Triton and says why when it cannot be used.
"""
from __future__ import annotations

import importlib.util
from typing import Callable

import torch

BACKENDS = ("auto", "torch", "triton")
# kernel name -> Triton implementation (same signature as the reference); filled by the
# modules that implement them.
TRITON_IMPLEMENTATIONS: dict[str, Callable] = {}


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def choose(kernel: str, reference: Callable, tensor: torch.Tensor, backend: str) -> Callable:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return reference
    implementation = TRITON_IMPLEMENTATIONS.get(kernel)
    if backend == "auto":
        use_triton = implementation is not None and tensor.is_cuda and triton_available()
        return implementation if use_triton else reference
    if implementation is None:
        raise NotImplementedError(f"{kernel} has no Triton implementation yet; use backend='torch'")
    if not triton_available():
        raise RuntimeError(f"backend='triton' for {kernel} needs the triton package (pip install triton)")
    return implementation
