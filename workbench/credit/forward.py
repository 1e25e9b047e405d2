"""Teacher-forced forwards over a group's responses: the prompt followed by each response,
and the model's log-probability (or logits) of every response token.

Response token k of response i is predicted at sequence position P + k - 1 (P prompt
tokens), so every table row maps to one (batch row, position, target) triple. Sequences
are right-padded under an attention mask: causal attention never lets a real token see the
padding after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ..errors import WorkbenchError
from ..model.handle import Model
from ..results.group import Group


@dataclass
class ResponseBatch:
    input_ids: torch.Tensor  # [B, L] prompt + response, right-padded
    attention_mask: torch.Tensor  # [B, L]
    rows: torch.Tensor  # [N] batch row of each scored token
    cols: torch.Tensor  # [N] the position that predicts it
    targets: torch.Tensor  # [N] its token id
    index: pd.Index  # [N] the group-table row of each scored token
    responses: list[int]  # group response of each batch row

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def response_batch(model: Model, group: Group, responses: Sequence[int], prompt_ids: Sequence[int] | None = None) -> ResponseBatch:
    """The prompt (the group's own, or `prompt_ids`) followed by each of `responses`."""
    prompt_ids = list(group.prompt_ids if prompt_ids is None else prompt_ids)
    if not prompt_ids:
        raise WorkbenchError("the prompt has no tokens")
    table = group.table[group.table["response"].isin(list(responses))].sort_values(["response", "position"], kind="stable")
    ids_of = {int(r): rows["token_id"].tolist() for r, rows in table.groupby("response", sort=True)}
    responses = [r for r in responses if ids_of.get(r)]
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    width = len(prompt_ids) + max((len(ids_of[r]) for r in responses), default=0)
    input_ids = torch.full((len(responses), width), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    rows, cols, targets, index = [], [], [], []
    for b, response in enumerate(responses):
        ids = prompt_ids + ids_of[response]
        input_ids[b, :len(ids)] = torch.tensor(ids)
        mask[b, :len(ids)] = 1
        part = table[table["response"] == response]
        rows += [b] * len(part)
        cols += (len(prompt_ids) - 1 + part["position"].to_numpy()).tolist()
        targets += part["token_id"].tolist()
        index += part.index.tolist()
    device = model.device
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return ResponseBatch(input_ids.to(device), mask.to(device), as_long(rows), as_long(cols), as_long(targets),
                         pd.Index(index), responses)


def chunks(items: Sequence[int], size: int | None) -> list[list[int]]:
    items = list(items)
    size = len(items) if not size else size
    return [items[i:i + size] for i in range(0, len(items), max(size, 1))]


class ResponseLogprobs(nn.Module):
    """forward(batch) -> log pi(y) [N] of every scored token: the backbone, the hidden states
    at the predicting positions only, then the lm_head ([N, V] logits, not [B, L, V]).
    A module around the model, so that `torch.func.functional_call` can swap its parameters
    (names are the model's own, prefixed "hf.")."""

    def __init__(self, model: Model):
        super().__init__()
        self.hf = model.hf
        self.adapter = model.adapter

    def forward(self, input_ids, attention_mask, rows, cols, targets):
        hidden = self.adapter.backbone(self.hf)(input_ids=input_ids, attention_mask=attention_mask,
                                                use_cache=False).last_hidden_state  # [B, L, d]
        logits = self.adapter.logits(self.hf, hidden[rows, cols])  # [N, V]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]

    @staticmethod
    def inputs(batch: ResponseBatch) -> tuple:
        return batch.input_ids, batch.attention_mask, batch.rows, batch.cols, batch.targets


def token_logprobs(model: Model, group: Group, *, prompt_ids: Sequence[int] | None = None,
                   batch_size: int | None = 4) -> pd.Series:
    """log pi(y_t | prompt, y_<t) of every response token under `model` (teacher forcing),
    aligned with the group's table."""
    scorer, parts = ResponseLogprobs(model), []
    with torch.inference_mode():
        for responses in chunks(range(len(group)), batch_size):
            batch = response_batch(model, group, responses, prompt_ids)
            if len(batch.index):
                parts.append(pd.Series(scorer(*scorer.inputs(batch)).double().cpu().numpy(), index=batch.index))
    return pd.concat(parts).reindex(group.table.index) if parts else pd.Series(dtype=float, index=group.table.index)


def response_hidden(model: Model, batch: ResponseBatch) -> torch.Tensor:
    """Final hidden states [N, d] at the positions that predict the batch's scored tokens."""
    return model.adapter.backbone(model.hf)(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                            use_cache=False).last_hidden_state[batch.rows, batch.cols]


def response_logits(model: Model, group: Group, response: int, *, prompt_ids: Sequence[int] | None = None) -> tuple[torch.Tensor, pd.Index]:
    """Logits [T, V] (fp32 or wider) that predict each token of one response, and the table
    rows they belong to."""
    batch = response_batch(model, group, [response], prompt_ids)
    with torch.inference_mode():
        logits = model.adapter.logits(model.hf, response_hidden(model, batch))
    return logits.to(torch.promote_types(logits.dtype, torch.float32)), batch.index
