"""Backend choice for every kernel: Triton for CUDA tensors, the PyTorch reference on CPU.

`backend="auto"` picks Triton when the tensor is on a CUDA device and a Triton
implementation of that kernel exists; `"torch"` forces the reference; `"triton"` demands
Triton and says why when it cannot be used (on CPU tensors it runs only under
`TRITON_INTERPRET=1`, which the tests use).

The Triton implementation of kernel `name` lives in `kernels/triton_<name>.py`, imported
on first use (so importing workbench never imports triton), and exposes `name` with the
reference's signature.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

import torch

BACKENDS = ("auto", "torch", "triton")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_implementation(kernel: str) -> Callable | None:
    """`kernels/triton_<kernel>.py`'s function `kernel`, or None when there is none or
    triton is not installed."""
    module = f"{__package__}.triton_{kernel}"
    if not triton_available() or importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), kernel)


def choose(kernel: str, reference: Callable, tensor: torch.Tensor, backend: str) -> Callable:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return reference
    if backend == "auto":
        implementation = triton_implementation(kernel) if tensor.is_cuda else None
        return implementation or reference
    if not triton_available():
        raise RuntimeError(f"backend='triton' for {kernel} needs the triton package (pip install triton)")
    implementation = triton_implementation(kernel)
    if implementation is None:
        raise NotImplementedError(f"{kernel} has no Triton implementation yet; use backend='torch'")
    return implementation
