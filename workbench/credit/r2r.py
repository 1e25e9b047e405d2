"""R2R divergence (Fu et al. 2025, "R2R: Efficiently Navigating Divergent Reasoning Paths with
Small-Large Model Token Routing"): the positions of a response where a small and a large model
with the same tokenizer would choose different next tokens (greedy), with a continuation
after each model's token so that a judge (a person, a rule, or another model) can label
whether the divergence changes where the response goes.

At position t of response y (prompt x), a = argmax pi_small(. | x, y_<t) and
b = argmax pi_large(. | x, y_<t); the position diverges when a != b. Both continuations
are greedy from x, y_<t followed by a (resp. b), by the large model by default (as R2R
labels its data), or by the small one, or each by its own model.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch

from ..decoding.engine import decode
from ..errors import WorkbenchError, check_positive_int
from ..model.handle import Model
from ..model.vocabulary import check_same_vocabulary
from ..results.group import Group
from ..samplers import Greedy
from .forward import response_logits

CONTINUE_WITH = ("large", "small", "each")
COLUMNS = ["response", "position", "context", "token", "small_token", "large_token", "small_prob", "large_prob",
           "small_continuation", "large_continuation", "label"]


def r2r_divergence(small: Model, large: Model, group: Group, *, responses: Sequence[int] | None = None,
                   continuation_tokens: int = 24, continue_with: str = "large",
                   judge: Callable[[str, str, str], object] | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per diverging position, indexed by the group-table row of the token there:
    response, position, context (the response text before it), token (what the response
    has there), small_token / large_token (each model's greedy choice) and small_prob /
    large_prob (each model's probability of its own choice), small_continuation /
    large_continuation (each choice followed by `continuation_tokens` greedy tokens), and label:
    judge(context, small_continuation, large_continuation), or None without a judge.
    """
    if continue_with not in CONTINUE_WITH:
        raise WorkbenchError(f"continue_with must be one of {', '.join(CONTINUE_WITH)}, got {continue_with!r}")
    check_positive_int(continuation_tokens, "continuation_tokens")
    shared = check_same_vocabulary(small, large, "R2R divergence")
    responses = range(len(group)) if responses is None else responses
    rows = []
    for response in responses:
        z_small, index = response_logits(small, group, response)
        z_large, _ = response_logits(large, group, response)
        p_small, p_large = torch.softmax(z_small[:, :shared], -1), torch.softmax(z_large[:, :shared].to(z_small.device), -1)
        a, b = p_small.argmax(-1), p_large.argmax(-1)
        table = group.table.loc[index]
        for k in torch.nonzero(a != b)[:, 0].tolist():
            row = table.iloc[k]
            rows.append({"row": index[k], "response": int(response), "position": int(row["position"]),
                         "context": group.responses[response][:int(row["start"])], "token": row["token"],
                         "small_id": int(a[k]), "large_id": int(b[k]),
                         "small_prob": float(p_small[k, a[k]]), "large_prob": float(p_large[k, b[k]])})
    if not rows:
        return pd.DataFrame(columns=COLUMNS, index=pd.Index([], name="row"))
    _continue(small, large, group, rows, continuation_tokens, continue_with, progress)
    for row in rows:
        row["label"] = None if judge is None else judge(row["context"], row["small_continuation"], row["large_continuation"])
        row["small_token"], row["large_token"] = (small.tokenizer.decode([row.pop(k)]) for k in ("small_id", "large_id"))
    return pd.DataFrame(rows).set_index("row")[COLUMNS]


def _continue(small, large, group, rows, tokens, continue_with, progress):
    """Fill each row's two continuations: each model's token, then greedy tokens after it."""
    generator = torch.Generator(device=large.device)  # greedy: the generator is never drawn from
    jobs = {"small": [], "large": []}  # model name -> [(row, side, prefix)]
    prompt, responses = group.prompt_ids, group.response_ids()  # once, not per diverging row
    for row in rows:
        prefix = prompt + responses[row["response"]][:row["position"]]
        for side in ("small", "large"):
            runner = side if continue_with == "each" else continue_with
            jobs[runner].append((row, side, prefix + [row[f"{side}_id"]]))
    for runner, model in (("small", small), ("large", large)):
        if not jobs[runner]:
            continue
        drawn = decode(model, [prefix for _, _, prefix in jobs[runner]], sampler=Greedy(),
                       max_new_tokens=tokens, generator=generator, progress=progress, desc="R2R continuations")
        eos = set(model.eos_ids)
        for (row, side, prefix), ids in zip(jobs[runner], drawn.ids):
            ids = [prefix[-1]] + ids
            while ids and ids[-1] in eos:
                ids = ids[:-1]
            row[f"{side}_continuation"] = model.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
