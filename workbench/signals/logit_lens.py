"""Logit lens (nostalgebraist 2020): read every layer's residual stream through the final
norm and the lm_head, as if the model stopped there, and take the same next-token
statistics. Arrays are [layer, position] with layer 0 = the embeddings and layer L = the
last block (whose lens equals the model's own prediction); position t describes the
prediction of token t, so position 0 is NaN.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..forward.vocab_stats import hidden_vocab_stats, next_token_targets
from .registry import SignalOutput, register

LENS_ARRAYS = ("lens_entropy", "lens_surprisal", "lens_rank", "lens_top1_id", "lens_top1_prob")


def _memory_bytes(model, n_tokens: int) -> int:
    return n_tokens * (model.n_layers + 1) * (model.hidden_size * 4 + 64)  # stored residual streams + results


@register(
    "logit_lens",
    description="entropy, surprisal, rank and top-1 of every layer's residual stream read through the lm_head",
    needs=("layer_hidden",),
    arrays=LENS_ARRAYS,
    memory_bytes=_memory_bytes,
)
def logit_lens(capture, params) -> SignalOutput:
    model = capture.model
    targets = next_token_targets(capture.ids)
    rows = {name: [] for name in LENS_ARRAYS}
    layers = capture.layer_hidden
    quiet = not params["progress"] or len(capture.ids) < 512
    for hidden in tqdm(layers, desc="logit lens", unit="layer", disable=quiet, leave=False):
        stats = hidden_vocab_stats(model, hidden, targets, top_k=1, normed=False)
        rows["lens_entropy"].append(_shift(stats.entropy.double().cpu().numpy()))
        rows["lens_surprisal"].append(_shift(-stats.target_logprob.double().cpu().numpy()))
        rows["lens_rank"].append(_shift(stats.target_rank.cpu().numpy(), fill=-1))
        rows["lens_top1_id"].append(_shift(stats.topk_ids[:, 0].cpu().numpy(), fill=-1))
        rows["lens_top1_prob"].append(_shift(stats.topk_probs[:, 0].double().cpu().numpy()))
    arrays = {name: np.stack(values) for name, values in rows.items()}  # [L+1, T]
    return SignalOutput(arrays=arrays, meta={"logit_lens_layers": len(layers)})


def _shift(values: np.ndarray, fill=np.nan) -> np.ndarray:
    """Position t describes token t: shift right by one, `fill` first (NaN, or -1 for ids)."""
    out = np.empty_like(values)
    out[0] = fill
    out[1:] = values[:-1]
    return out
