"""The quantity an attribution explains: the log-probability of a target token, or its contrast
with a foil.

For the token y_t at position t (predicted from the hidden state at t - 1):

    f_t = log p(y_t | x_<t)                                 (plain)
    f_t = log p(y_t | x_<t) - log p(foil_t | x_<t)          (contrastive; Yin & Neubig 2022,
                                                             "Interpreting Language Models with
                                                             Contrastive Explanations")

Every method (gradients, occlusion, ReAGent) scores its inputs through `scores`, so a foil makes
every method contrastive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..model.handle import Model


@dataclass(frozen=True)
class Targets:
    """K target tokens of one sequence.

    positions: [K] int64, each >= 1 (a target is predicted from the rows before it);
    ids: [K] the tokens y_t at those positions; foils: [K] contrastive foil tokens, or None.
    """

    positions: torch.Tensor
    ids: torch.Tensor
    foils: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, rows: slice | torch.Tensor) -> "Targets":
        return Targets(self.positions[rows], self.ids[rows], None if self.foils is None else self.foils[rows])


def scores(model: "Model", hidden: torch.Tensor, ids: torch.Tensor, foils: torch.Tensor | None) -> torch.Tensor:
    """f for final-normed hidden states hidden [..., d] predicting ids [...] (foils [...] or
    None): log p(id) or log p(id) - log p(foil), in float32 or wider. Builds the logits of these
    rows only ([..., V])."""
    logits = model.adapter.logits(model.hf, hidden)
    logprobs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    value = logprobs.gather(-1, ids[..., None])[..., 0]
    if foils is not None:
        value = value - logprobs.gather(-1, foils[..., None])[..., 0]
    return value


def hidden_states(model: "Model", *, input_ids: torch.Tensor | None = None,
                  inputs_embeds: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Final-normed hidden states [B, L, d] of a batch (no KV cache). Sequences of different
    lengths [B] are padded on the right; under the causal mask no real token sees the padding
    anyway, and the attention mask built from `lengths` says so to the model."""
    backbone = model.adapter.backbone(model.hf)
    mask = None
    if lengths is not None:
        width = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        mask = (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).long()
    return backbone(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=mask,
                    use_cache=False).last_hidden_state
