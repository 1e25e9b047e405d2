"""Samplers: temperature, then truncation, then a draw from the kept set.

Each sampler is a small value object that turns into per-row parameters of
`workbench.kernels.sample` (Triton on GPUs, the PyTorch reference on CPUs), so every sampler
draws through the same exact code. Compose with `+`:

    wb.samplers.Temperature(0.7) + wb.samplers.TopP(0.9)     # temperature, then top-p
    wb.samplers.TopH(alpha=0.4)

`filter(logits)` returns the kept set and its renormalized probabilities (for views);
`sample(logits, generator)` draws. Definitions: docs/signals.md (Sampling) and workbench/kernels/sample.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import WorkbenchError
from .kernels import SampleResult, kept_set_reference, sample as sample_kernel
from .sampler_parameters import BY_NAME, DEFAULT_SAMPLER

NEUTRAL = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "top_h": 0.0}


@dataclass(frozen=True)
class Sampler:
    """Temperature and truncation rules; a rule at its neutral value is off. The named
    samplers below (`TopP(0.9)`, ...) are subclasses that set one rule; a sampler equals
    any other with the same rules, whatever its class (`TopP(0.9) == Sampler(top_p=0.9)`)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    top_h: float = 0.0
    adaptive: "AdaptiveTemperature | None" = field(default=None, repr=False)

    def __post_init__(self):
        checks = [
            (self.temperature >= 0, f"temperature must be >= 0 (0 = greedy), got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}"),
            (0 <= self.top_h <= 1, f"top-H alpha must be in [0, 1], got {self.top_h}"),
        ]
        for ok, message in checks:
            if not ok:
                raise WorkbenchError(message)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sampler):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in (*NEUTRAL, "adaptive"))

    def __add__(self, other: "Sampler") -> "Sampler":
        """Combine two samplers: each rule set to a non-neutral value in either applies."""
        merged = {}
        for name, neutral in NEUTRAL.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != neutral and theirs != neutral and mine != theirs:
                raise WorkbenchError(f"both samplers set {name} ({mine} and {theirs}); keep one")
            merged[name] = theirs if mine == neutral else mine
        if self.adaptive is not None and other.adaptive is not None:
            raise WorkbenchError("only one adaptive temperature can be composed")
        return Sampler(**merged, adaptive=self.adaptive or other.adaptive)

    def temperatures(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-row temperature [B]: fixed, or HAPO's entropy-dependent one."""
        if self.adaptive is None:
            return torch.full(logits.shape[:1], float(self.temperature), device=logits.device)
        return self.adaptive.temperatures(logits) * self.temperature

    def filter(self, logits: torch.Tensor):
        """Kept set (bool) and sampling distribution q for logits [V] or [B, V]."""
        rows = logits if logits.ndim == 2 else logits[None]
        kept, q = kept_set_reference(rows, **self._params(rows))
        return (kept, q) if logits.ndim == 2 else (kept[0], q[0])

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> SampleResult:
        """One draw per row of logits [B, V]; reports kept-set size and entropies."""
        return sample_kernel(logits, **self._params(logits), generator=generator)

    def _params(self, logits) -> dict:
        return {"temperature": self.temperatures(logits), "top_k": self.top_k, "top_p": self.top_p,
                "min_p": self.min_p, "top_h": self.top_h}

    def describe(self) -> str:
        """The label in meta["sampler"] of `generate` and `rollouts` (shown by the dashboard's
        status line, the sampling chart's title and the CLI), e.g. "top-p 0.9, temperature 0.7"
        or "greedy": each rule in force, named as in `BY_NAME`, then the temperature."""
        rules = [f"{name} {getattr(self, parameter.rule):g}" for name, parameter in BY_NAME.items()
                 if parameter is not None and parameter.rule != "temperature"
                 and getattr(self, parameter.rule) != NEUTRAL[parameter.rule]]
        if self.temperature == 0 and not rules:
            return "greedy"
        if self.adaptive is None:
            temperature = f"temperature {self.temperature:g}"
        else:
            temperature = f"adaptive temperature {self.temperature:g} (HAPO, tau {self.adaptive.tau:g})"
        return ", ".join([*rules, temperature])


class Greedy(Sampler):
    """Always the most likely token (temperature 0)."""

    def __init__(self):
        super().__init__(temperature=0.0)


class Temperature(Sampler):
    """Sample from softmax(z / T)."""

    def __init__(self, temperature: float):
        super().__init__(temperature=temperature)


class Gumbel(Sampler):
    """Gumbel-max: argmax(z / T + g), g ~ Gumbel(0, 1) from the seeded generator; exactly a
    draw from softmax(z / T). (Every sampler here draws this way on its kept set.)"""

    def __init__(self, temperature: float = 1.0):
        super().__init__(temperature=temperature)


class TopK(Sampler):
    """The k most likely tokens."""

    def __init__(self, k: int, temperature: float = 1.0):
        super().__init__(temperature=temperature, top_k=k)


class TopP(Sampler):
    """Nucleus sampling (Holtzman et al. 2020): the smallest prefix with mass >= p."""

    def __init__(self, p: float, temperature: float = 1.0):
        super().__init__(temperature=temperature, top_p=p)


class MinP(Sampler):
    """Keep tokens with p >= m * max p (Nguyen et al. 2024)."""

    def __init__(self, m: float, temperature: float = 1.0):
        super().__init__(temperature=temperature, min_p=m)


class TopH(Sampler):
    """Top-H (Baghaei et al. 2025, Algorithm 1 of the paper): the largest prefix whose
    renormalized entropy is at most alpha * H(p). The authors' released code stops by a
    different rule (keeps 4 of a uniform 10 at alpha .45 where the paper's rule keeps 2)."""

    def __init__(self, alpha: float, temperature: float = 1.0):
        super().__init__(temperature=temperature, top_h=alpha)


@dataclass(frozen=True)
class AdaptiveTemperature:
    """HAPO's entropy-adaptive temperature, sign-preserving.

    From the log-entropies of a reference batch of tokens: m = their 0.8-quantile, s = their
    RMS deviation from m. At a step with entropy H_t: h = (log H_t - m) / s; h_hat = h / (max
    positive h of the reference) for h > 0 and h / |most negative h| for h < 0, clipped to
    [-1, 1]; T_t = T (1 + tau h_hat). Low-entropy tokens are cooled and high-entropy tokens
    heated (the released code loses the sign for h < 0; this keeps it).
    """

    center: float  # m
    scale: float  # s
    h_max: float  # largest positive h over the reference
    h_min: float  # |most negative h| over the reference
    tau: float = 0.5

    @classmethod
    def from_entropies(cls, entropies, tau: float = 0.5) -> "AdaptiveTemperature":
        log_h = np.log(np.asarray([e for e in entropies if e is not None and e > 0], dtype=np.float64))
        if len(log_h) < 2:
            raise WorkbenchError("adaptive temperature needs the entropies of at least 2 reference tokens")
        center = float(np.quantile(log_h, 0.8))
        scale = float(np.sqrt(np.mean((log_h - center) ** 2))) or 1.0
        h = (log_h - center) / scale
        return cls(center, scale, float(max(h.max(), 1e-6)), float(max(-h.min(), 1e-6)), tau)

    def h_hat(self, entropy: torch.Tensor) -> torch.Tensor:
        h = (entropy.clamp_min(1e-12).log() - self.center) / self.scale
        return torch.where(h > 0, h / self.h_max, h / self.h_min).clamp(-1.0, 1.0)

    def temperatures(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-row multiplier (1 + tau h_hat) from each row's entropy at temperature 1."""
        logp = torch.log_softmax(logits.float(), -1)
        entropy = -(logp.exp() * logp).nan_to_num().sum(-1)
        return 1.0 + self.tau * self.h_hat(entropy)


class Adaptive(Sampler):
    """HAPO adaptive temperature with reference statistics from a `Run` (its entropy column)
    or a sequence of token entropies."""

    def __init__(self, reference, tau: float = 0.5, temperature: float = 1.0):
        entropies = reference.table["entropy"].dropna().to_numpy(float) if hasattr(reference, "table") else reference
        super().__init__(temperature=temperature, adaptive=AdaptiveTemperature.from_entropies(entropies, tau))


def from_spec(spec: str, temperature: float | None = None) -> Sampler:
    """"top-p:0.9" / "top-h:0.4" / "greedy" -> that named sampler (the CLI's --compare items, the
    dashboard's choice; names and parameters in `BY_NAME`). `temperature`, when given, comes
    before the truncation; the temperature and Gumbel samplers take theirs from the spec."""
    name, _, value = spec.partition(":")
    name = name.strip().lower()
    if name not in BY_NAME:
        raise WorkbenchError(f"unknown sampler '{name}'; choose from {', '.join(BY_NAME)}")
    parameter = BY_NAME[name]
    if parameter is None:
        return NAMED[name]()
    if not value:
        raise WorkbenchError(f"sampler '{name}' needs a value, e.g. {name}:{parameter.default:g}")
    try:
        number = int(value) if parameter.allowed.whole else float(value)
    except ValueError:
        raise WorkbenchError(f"'{value}' is not a number (sampler {name})") from None
    if number not in parameter.allowed:
        greedy = " (for the most likely token, use 'greedy')" if parameter.rule == "temperature" and number == 0 else ""
        raise WorkbenchError(f"sampler {name}'s {parameter.name} must be {parameter.allowed.words()}, got {value}{greedy}")
    if parameter.rule == "temperature" or temperature is None:
        return NAMED[name](number)
    return NAMED[name](number, temperature)


# The named samplers by their names in `BY_NAME` (the CLI's, the dashboard's and the spec strings').
NAMED = {"greedy": Greedy, "temperature": Temperature, "gumbel": Gumbel, "top-k": TopK, "top-p": TopP, "min-p": MinP,
         "top-h": TopH}


def default_spec(command: str) -> str:
    """The spec of the sampler `command` ("generate", "rollouts") uses when none is given:
    `DEFAULT_SAMPLER[command]` at its value in `BY_NAME`, e.g. "top-p:0.9"."""
    name = DEFAULT_SAMPLER[command]
    return f"{name}:{BY_NAME[name].default:g}"


def as_sampler(sampler, default: Sampler) -> Sampler:
    """What `generate` and `rollouts` accept as a sampler: a `Sampler` (wb.samplers.TopP(0.9)),
    a spec string for `from_spec` ("top-p:0.9", "greedy"), or None for `default`."""
    if sampler is None:
        return default
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, str):
        return from_spec(sampler)
    raise WorkbenchError(f"sampler must be a workbench.samplers sampler (e.g. wb.samplers.TopP(0.9)) or a spec "
                         f"string such as 'top-p:0.9' or 'greedy' (names: {', '.join(BY_NAME)}); "
                         f"got {type(sampler).__name__}")


__all__ = ["Adaptive", "AdaptiveTemperature", "BY_NAME", "Greedy", "Gumbel", "MinP", "Sampler", "Temperature",
           "TopH", "TopK", "TopP", "as_sampler", "default_spec", "from_spec"]
