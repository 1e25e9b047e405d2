"""Estimate before allocating: refuse work that would not fit, with a message, rather
than crash half-way (or get the process killed) on a long input."""
from __future__ import annotations

import os

import torch

from ..errors import MemoryEstimateExceeded

HEADROOM = 0.8  # use at most this share of what is available
GIB = 2**30


def available_bytes(device: torch.device) -> int:
    """Free memory where the work will run: the GPU's free memory, or the host's
    MemAvailable (what can be allocated without swapping)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def forward_bytes(model, n_tokens: int) -> int:
    """Transient memory of one forward of `n_tokens` (batch of one), weights excluded: a few
    residual-width tensors plus one MLP's intermediate activations per position, and the
    T x T score matrix of one layer's heads when attention is eager (fused attention
    kernels do not materialize it)."""
    config = model.hf.config
    element = torch.finfo(model.dtype).bits // 8
    intermediate = getattr(config, "intermediate_size", None) or 4 * model.hidden_size
    per_token = (8 * model.hidden_size + 3 * intermediate) * element
    total = n_tokens * per_token
    if getattr(config, "_attn_implementation", "eager") == "eager":
        heads = getattr(config, "num_attention_heads", 1)
        total += 2 * heads * n_tokens * n_tokens * element
    return total


def check_fits(what: str, needed: int, device: torch.device, advice: str) -> None:
    """Raise MemoryEstimateExceeded (nothing allocated yet) when `needed` bytes exceed the
    usable share of what is available on `device`."""
    available = available_bytes(device)
    if needed > HEADROOM * available:
        raise MemoryEstimateExceeded(
            f"{what} needs about {needed / GIB:.1f} GiB but {available / GIB:.1f} GiB is available "
            f"on {device.type}; {advice}"
        )


def check_signals_fit(model, n_tokens: int, specs) -> None:
    """Refuse a forward of `n_tokens` whose transient memory plus that of the signals `specs`
    (each `SignalSpec.memory_bytes`) would not fit."""
    check_batch_fits(model, 1, n_tokens, specs, "analyze a shorter text (truncate) or request fewer signals")


def check_batch_fits(model, batch: int, width: int, specs, advice: str) -> None:
    """Refuse a forward of `batch` sequences padded to `width` tokens (`batch` times the
    transient memory of one, `forward_bytes`) plus the signals `specs` on every position."""
    needed = batch * forward_bytes(model, width) + sum(s.memory_bytes(model, batch * width) for s in specs)
    names = ", ".join(s.name for s in specs)
    what = f"analyzing {width} tokens" if batch == 1 else f"a batch of {batch} x {width} tokens"
    check_fits(f"{what} with {names}", needed, model.device, advice)
