"""Loading: any Hugging Face causal LM (hub id, local folder, GGUF file) or an embedded
model, wrapped in a `Model` that holds the HF model, its tokenizer and a family adapter."""
from __future__ import annotations

import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import WorkbenchError
from .embedded import DEFAULT_MODEL, EMBEDDED, materialize
from .families import FamilyAdapter, adapter_for


class Model:
    """A causal LM ready for analysis.

    hf: the transformers model (eval mode); tokenizer: its fast tokenizer;
    adapter: how this family exposes layers, final norm, lm_head and routers.
    """

    def __init__(self, hf: nn.Module, tokenizer, *, name: str, revision: str | None = None):
        self.hf = hf.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.revision = revision
        self.adapter: FamilyAdapter = adapter_for(hf)
        if getattr(tokenizer, "chat_template", None) is None and self.adapter.default_chat_template:
            tokenizer.chat_template = self.adapter.default_chat_template

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return len(self.adapter.layers(self.hf))

    @property
    def hidden_size(self) -> int:
        return self.hf.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.adapter.lm_head(self.hf).weight.shape[0]

    @property
    def context_length(self) -> int | None:
        """Longest input the model was built for (positions), when its config says."""
        config = self.hf.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def eos_ids(self) -> list[int]:
        """The tokens that end a sequence: the tokenizer's end-of-sequence token and those of
        the generation config."""
        ids = [self.tokenizer.eos_token_id]
        config_eos = getattr(getattr(self.hf, "generation_config", None), "eos_token_id", None)
        ids += config_eos if isinstance(config_eos, list) else [config_eos]
        return [i for i in ids if i is not None]

    def analyze(
        self,
        text: str | None = None,
        *,
        messages: Sequence[dict] | None = None,
        signals: Sequence[str] = ("uncertainty",),
        top_k: int = 5,
        truncate: bool = False,
        progress: bool = True,
    ):
        """Run `text` (or chat `messages`) through the model once and compute per-token
        signals. Returns a `Run`. See `workbench.pipelines.analyze.analyze`."""
        from ..pipelines.analyze import analyze

        return analyze(self, text, messages=messages, signals=signals, top_k=top_k, truncate=truncate,
                       progress=progress)

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[dict] | None = None,
        sampler=None,
        max_new_tokens: int = 64,
        seed: int | None = None,
        stop=None,
        top_k: int = 5,
        progress: bool = True,
        draft=None,
        gamma: int = 4,
    ):
        """Sample a continuation with the KV cache, recording each step's entropy before and
        after truncation, kept-set size, rank and probability. Returns a `Run` whose table
        marks generated tokens. With `draft` (a model sharing this one's vocabulary, or its
        name), exact speculative sampling with `gamma` drafted tokens per step, traced. See
        `workbench.pipelines.generate.generate`."""
        from ..pipelines.generate import generate

        return generate(self, prompt, messages=messages, sampler=sampler, max_new_tokens=max_new_tokens,
                        seed=seed, stop=stop, top_k=top_k, progress=progress, draft=draft, gamma=gamma)

    def rollouts(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[dict] | None = None,
        n: int = 8,
        reward=None,
        sampler=None,
        max_new_tokens: int = 64,
        seed: int | None = None,
        chat: bool | None = None,
        thr: str | None = "auto",
        progress: bool = True,
    ):
        """Sample `n` responses in one batch, score them with `reward` (an expected answer, a
        `workbench.rewards` reward or any callable text -> number), and return a `Group`
        with GRPO advantages and per-token logprob, entropy, D3S priority and Token Hidden
        Reward. See `workbench.pipelines.rollouts.rollouts`."""
        from ..pipelines.rollouts import rollouts

        return rollouts(self, prompt, messages=messages, n=n, reward=reward, sampler=sampler,
                        max_new_tokens=max_new_tokens, seed=seed, chat=chat, thr=thr, progress=progress)

    def compare(
        self,
        text: str | None = None,
        *,
        messages: Sequence[dict] | None = None,
        reference: "Model | None" = None,
        context: str | None = None,
        reference_context: str | None = None,
        beta: float = 0.1,
        cdpo_beta: float = 1.0,
        top_k: int = 5,
        commitment: bool = False,
        branches: int = 8,
        branch_tokens: int = 6,
        progress: bool = True,
    ):
        """Compare the same tokens under this model (p) and a reference (q): another model with
        the same vocabulary (`reference=`), or this model reading another context
        (`context=` / `reference_context=`: texts before the scored text, or system prompts
        with `messages=`). Returns a `Run` with per-token KL both ways, JS, speculative
        acceptance, log-ratio (DPO implicit reward, RHO-1 excess loss), cDPO weight, top-1
        agreement and ranks; optionally commitment layers and branches at divergent positions.
        See `workbench.pipelines.compare.compare`."""
        from ..pipelines.compare import compare

        return compare(self, text, messages=messages, reference=reference, context=context,
                       reference_context=reference_context, beta=beta, cdpo_beta=cdpo_beta, top_k=top_k,
                       commitment=commitment, branches=branches, branch_tokens=branch_tokens, progress=progress)

    def attribute(
        self,
        prompt: str,
        *,
        continuation: str | None = None,
        max_new_tokens: int | None = None,
        method: str = "saliency",
        targets: Sequence[int] | None = None,
        foil=None,
        progress: bool = True,
        **options,
    ):
        """Which earlier tokens made the model produce each token of `continuation` (or of
        `max_new_tokens` greedily generated ones): a `Run` with run.arrays["attr_<method>"]
        [target, source] and per-source totals in run.table. method: "saliency",
        "input_x_gradient", "integrated_gradients", "occlusion" or "reagent"; foil: contrast
        each target with this token. options: each method's settings (steps, baseline,
        level, replacement, ...). See `workbench.pipelines.attribute.attribute`."""
        from ..pipelines.attribute import attribute

        return attribute(self, prompt, continuation=continuation, max_new_tokens=max_new_tokens, method=method,
                         targets=targets, foil=foil, progress=progress, **options)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.hf.parameters())
        return (
            f"Model({self.name!r}, family={self.adapter.name}, layers={self.n_layers}, "
            f"vocab={self.vocab_size}, params={params / 1e6:.1f}M, dtype={self.dtype}, device={self.device})"
        )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there); bf16 on GPUs that support it."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise WorkbenchError(f"unknown dtype '{dtype}'; use one of {', '.join(names)}")
    return names[dtype]


DEVICES = "cpu, cuda, cuda:N (N a GPU index), mps, or auto (cuda when available, else cpu)"


def _parse_device(device) -> torch.device:
    """None or "auto": `default_device()`; else a cpu, cuda, cuda:N or mps device (a string or
    a torch.device) that this machine has."""
    if device is None or device == "auto":
        return default_device()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise WorkbenchError(f"unknown device {device!r}; use one of {DEVICES}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise WorkbenchError("device 'cuda' was asked for but no CUDA GPU is available; use device='cpu'")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise WorkbenchError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise WorkbenchError("device 'mps' was asked for but Apple's MPS is not available here; use device='cpu'")
    return parsed


def _is_local_path(name: str) -> bool:
    """Whether `name` can only be a local path: no Hugging Face id ("name" or "owner/name")
    starts with '/', '~' or '.', ends with '/', has two '/' or a Windows separator."""
    return (name.startswith(("/", "~", ".")) or name.endswith("/") or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def load(
    name: str | os.PathLike | None = None,
    *,
    dtype=None,
    device=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Model:
    """Load a causal LM for analysis.

    name: an embedded name (`workbench:smollm2-135m`, the default), a tiny random test
    model (`tiny:<family>`, see `workbench.model.tiny`), a `.gguf` file, a local folder with
    safetensors weights, or a Hugging Face model id. Weights load only as safetensors or
    GGUF, and remote code runs only with `trust_remote_code=True`. A `Path`, or a name no
    Hugging Face id can be (starting with /, ~ or ., ending with /, or with two /), is a
    local path and must exist.
    device: cpu, cuda, cuda:N, mps, or auto / None (cuda when available, else cpu).
    """
    local = isinstance(name, os.PathLike) or (name is not None and _is_local_path(str(name)))
    name = DEFAULT_MODEL if name is None else str(name)
    torch_device = _parse_device(device)
    torch_dtype = _parse_dtype(dtype) or default_dtype(torch_device)

    if name.startswith("tiny:"):
        from .tiny import tiny_model

        model = tiny_model(name.split(":", 1)[1])
        model.hf.to(device=torch_device, dtype=torch_dtype)
        return model
    if name.startswith("workbench:"):
        if name not in EMBEDDED:
            raise WorkbenchError(f"unknown embedded model '{name}'; embedded models: {', '.join(EMBEDDED)}")
        source, kwargs = materialize(EMBEDDED[name]), {}
    elif name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise WorkbenchError(f"GGUF file not found: {path}")
        source, kwargs = path.parent, {"gguf_file": path.name}
    else:
        source, kwargs = name, {"use_safetensors": True, "revision": revision}
        path = Path(name).expanduser()
        if path.is_dir():
            source = path
            if not any(source.glob("*.safetensors")):
                raise WorkbenchError(
                    f"{source} has no .safetensors weights; only safetensors and GGUF are loaded "
                    "(convert with model.save_pretrained(dir, safe_serialization=True))"
                )
        elif local or path.exists():  # "model.bin" beside us is a file, not a Hugging Face id
            problem = f"{name} is a file, not a model folder" if path.exists() else f"folder {name} does not exist"
            raise WorkbenchError(f"{problem}; give a folder with safetensors weights, a .gguf file or a Hugging Face "
                                 "model id")
        else:
            _check_hub_reachable(name, revision)
    return _load_hf(name, source, kwargs, torch_dtype, torch_device, revision, trust_remote_code)


HUB_PROBE_SECONDS = 3.0


def _check_hub_reachable(name: str, revision: str | None) -> None:
    """A Hugging Face id that is not in the local cache needs the hub. Offline, transformers
    retries five times (about 50 s) before it fails; one connection attempt of a few seconds
    says the same at once. Nothing is checked when the hub is off (HF_HUB_OFFLINE) or the
    model's config is cached."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return  # transformers answers from the cache, or fails at once
    try:
        if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
            return
    except ValueError:
        return  # not a valid id: transformers says why
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as error:
        raise WorkbenchError(
            f"'{name}' is not in the local Hugging Face cache and {host} cannot be reached "
            f"({error.strerror or error}){_missing_folder_note(name)}; connect to the network, give a local folder or .gguf file, "
            f"or use an embedded model, which works offline: {', '.join(EMBEDDED)}") from None


def _missing_folder_note(name: str) -> str:
    """For an 'owner/name' that was read as a Hugging Face id while its first part is a local
    folder ('models/foo' beside a models/ folder): the user probably meant a path."""
    path = Path(name).expanduser()
    if "/" in name and path.parent.is_dir() and not path.exists():
        return f"; if you meant a local folder: {path.resolve()} does not exist"
    return ""


@contextmanager
def _quiet_progress(enabled: bool):
    """Hide transformers' per-load progress bars (a cached load takes about a second)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if enabled and was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled and was_enabled:
            hf_logging.enable_progress_bar()


def _load_hf(name, source, kwargs, dtype, device, revision, trust_remote_code) -> Model:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer_kwargs = {k: v for k, v in kwargs.items() if k in ("gguf_file", "revision")}
    try:
        with _quiet_progress(enabled="gguf_file" not in kwargs):  # GGUF dequantization is slow: keep its bar
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **tokenizer_kwargs)
            hf = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs
            )
    except (OSError, ValueError, struct.error) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "gguf_file" in kwargs and not isinstance(error, OSError):  # the reader ran out of data or met junk
            raise WorkbenchError(f"the GGUF file {name} is truncated or damaged ({first_line}); "
                                 "download or convert it again") from None
        raise WorkbenchError(
            f"could not load '{name}': {first_line}{_missing_folder_note(name)} "
            f"(embedded models, which work offline: {', '.join(EMBEDDED)})"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise WorkbenchError(
            f"'{name}' has only a slow tokenizer; token offsets need a fast (tokenizers) one"
        )
    hf.to(device)
    if "gguf_file" in kwargs:  # dequantized on load; the marker only blocks saving
        hf.config.quantization_config = None
    return Model(hf, tokenizer, name=name, revision=revision)
