"""One forward pass that captures what the requested signals need, and nothing more.

The model's own logits are never computed here: the backbone returns final hidden states
and signals turn them into vocabulary statistics chunk by chunk, so no [T, V] tensor exists.
Attention is reduced layer by layer as the forward runs (`forward/attention.py`): each
layer's queries and keys become [heads, T] statistics and are dropped, so no layer's
T x T attention is kept (exact rows only for inputs of at most ATTENTION_ROWS_MAX_T tokens).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..kernels.attention_stats import QUERY_BLOCK, attention_rows
from ..kv import KEYFORMER_TAU, keyformer_scores
from ..model.families.routing import Routing
from ..model.handle import Model
from .attention import AttentionInputs, capturing_queries_keys

ATTENTION_SINK = 1  # sink mass: attention on the first key
ATTENTION_ROWS_MAX_T = 512  # inputs this short also keep their exact attention rows, [T, T] (1 MiB at 512)
KEYFORMER_SEED = 0  # layer l draws its Gumbel noise from seed KEYFORMER_SEED + l


@dataclass
class Capture:
    model: Model
    ids: torch.Tensor  # [T] int64
    final_hidden: torch.Tensor | None = None  # [T, d], after the final norm
    layer_hidden: list[torch.Tensor] | None = None  # L+1 x [T, d], embeddings first, before the final norm
    routing: dict[int, Routing] | None = None  # MoE layer index -> its router's call, normalized
    # layer index -> {"entropy", "sink_mass", "received", "previous" (need "attention"), "keyformer"
    # (need "keyformer")} -> [H, T] float32
    attention: dict[int, dict[str, np.ndarray]] | None = None
    attention_rows: np.ndarray | None = None  # [T, T] exact attention summed over layers, mean over heads


def run_forward(model: Model, ids: list[int], needs: set[str]) -> Capture:
    """Run the backbone once on `ids` (batch of one) and keep what `needs` names."""
    return run_forward_batch(model, [ids], needs)[0]


def run_forward_batch(model: Model, batch: list[list[int]], needs: set[str]) -> list[Capture]:
    """Run the backbone once on several token sequences and keep what `needs` names, one
    `Capture` per sequence holding only its own positions.

    The sequences are right-padded to the longest, input_ids and attention_mask [B, T_max]
    (no mask when all have one length): under a causal mask a real position never sees the
    padding after it, so each sequence's values equal its forward alone up to kernel rounding.
    Attention statistics are streamed for a batch of one only (`forward/attention.py` reduces
    one sequence's heads)."""
    if len(batch) > 1 and needs & {"attention", "keyformer"}:
        raise ValueError("attention statistics are captured for one sequence at a time; run_forward each")
    lengths = [len(ids) for ids in batch]
    width = max(lengths)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long, device=model.device)  # [B, T_max]
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids, device=model.device)
        attention_mask[row, :len(ids)] = 1
    first = Capture(model, input_ids[0, :lengths[0]])  # attention capture (a batch of one) writes here
    layer_hidden = [] if "layer_hidden" in needs else None  # L+1 x [B, T_max, d]
    routing = {} if "routing" in needs else None  # MoE layer -> Routing of B * T_max rows
    hooks = []
    if layer_hidden is not None:
        layers = model.adapter.layers(model.hf)
        hooks.append(layers[0].register_forward_pre_hook(_keep_input(layer_hidden), with_kwargs=True))
        hooks += [layer.register_forward_hook(_keep_output(layer_hidden)) for layer in layers]
    if routing is not None:
        hooks += [router.register_forward_hook(_keep_routing(model, index, routing), with_kwargs=True)
                  for index, router in model.adapter.routers(model.hf)]
    padded = min(lengths) < width
    try:
        with torch.inference_mode(), _attention_capture(model, first, needs):
            output = model.adapter.backbone(model.hf)(
                input_ids=input_ids, attention_mask=attention_mask if padded else None, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    captures = []
    for row, n_tokens in enumerate(lengths):
        capture = first if row == 0 else Capture(model, input_ids[row, :n_tokens])
        capture.final_hidden = output.last_hidden_state[row, :n_tokens]
        if layer_hidden is not None:
            capture.layer_hidden = [hidden[row, :n_tokens] for hidden in layer_hidden]
        if routing is not None:
            rows = slice(row * width, row * width + n_tokens)  # the router saw [B * T_max, d], row-major
            capture.routing = {index: _routing_rows(route, rows) for index, route in routing.items()}
        captures.append(capture)
    return captures


def pack_captures(captures: list[Capture]) -> Capture:
    """Several sequences' captures as one, their positions end to end ([sum T_b] rows), for
    signals that compute each position from its own row (vocabulary statistics, routing): one
    lm_head pass for the batch instead of one per sequence. Attention statistics are not packed:
    a batch of one (the only batch that has them) is returned as it is."""
    first = captures[0]
    if len(captures) == 1:
        return first
    packed = Capture(first.model, torch.cat([c.ids for c in captures]),
                     final_hidden=torch.cat([c.final_hidden for c in captures]))
    if first.layer_hidden is not None:
        packed.layer_hidden = [torch.cat(layer) for layer in zip(*(c.layer_hidden for c in captures))]
    if first.routing is not None:
        packed.routing = {index: _cat_routing([c.routing[index] for c in captures]) for index in first.routing}
    return packed


def _cat_routing(routes: list[Routing]) -> Routing:
    shared = None if routes[0].shared_weight is None else torch.cat([r.shared_weight for r in routes])
    return replace(routes[0], logits=torch.cat([r.logits for r in routes]),
                   expert_ids=torch.cat([r.expert_ids for r in routes]), weights=torch.cat([r.weights for r in routes]),
                   shared_weight=shared, logits_recomputed=any(r.logits_recomputed for r in routes))


def _routing_rows(route: Routing, rows: slice) -> Routing:
    shared = None if route.shared_weight is None else route.shared_weight[rows]
    return replace(route, logits=route.logits[rows], expert_ids=route.expert_ids[rows], weights=route.weights[rows],
                   shared_weight=shared)


def _first_tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else value[0]


def _keep_input(store: list):
    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        store.append(hidden.detach())

    return hook


def _keep_output(store: list):
    def hook(module, args, output):
        store.append(_first_tensor(output).detach())

    return hook


def _keep_routing(model: Model, index: int, store: dict):
    """Normalize the router's call as it happens; its input [T, d] is not kept."""
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        store[index] = model.adapter.route(model.hf, index, module, hidden.reshape(-1, hidden.shape[-1]), output)

    return hook


def _attention_capture(model: Model, capture: Capture, needs: set[str]):
    """A context in which each attention layer's Q, K become per-layer statistics in
    `capture.attention` as the layer runs (nothing when no attention need is asked for)."""
    if not needs & {"attention", "keyformer"}:
        return nullcontext()
    capture.attention = {}
    n_tokens = len(capture.ids)
    keep_rows = "attention" in needs and n_tokens <= ATTENTION_ROWS_MAX_T
    if keep_rows:
        capture.attention_rows = np.zeros((n_tokens, n_tokens), dtype=np.float32)

    def on_layer(inputs: AttentionInputs):
        layer = capture.attention.setdefault(inputs.layer, {})
        if "attention" in needs:
            stats = inputs.stats(sink=ATTENTION_SINK)
            layer.update(entropy=_head_rows(stats.entropy), sink_mass=_head_rows(stats.sink_mass),
                         received=_head_rows(stats.received), previous=_head_rows(inputs.previous_mass(stats.lse)))
            if keep_rows:
                capture.attention_rows += _head_mean_rows(inputs)
        if "keyformer" in needs:
            layer["keyformer"] = _head_rows(keyformer_scores(
                inputs.query, inputs.key, tau=KEYFORMER_TAU, seed=KEYFORMER_SEED + inputs.layer, causal=inputs.causal,
                mask=inputs.mask, scale=inputs.scale, sink_logits=inputs.sink_logits,
            ))

    return capturing_queries_keys(model.hf, on_layer)


def _head_rows(values: torch.Tensor) -> np.ndarray:
    """[1, H, T] statistic of the batch of one -> [H, T] float32 on the host."""
    return values[0].float().cpu().numpy()


def _head_mean_rows(inputs: AttentionInputs) -> np.ndarray:
    """Every query's exact attention row averaged over heads, [T, T], QUERY_BLOCK queries at a
    time (`kernels.attention_rows`: [1, H, block, T] each)."""
    n_tokens = inputs.query.shape[2]
    rows = np.empty((n_tokens, n_tokens), dtype=np.float32)
    for start in range(0, n_tokens, QUERY_BLOCK):
        queries = range(start, min(n_tokens, start + QUERY_BLOCK))
        block = attention_rows(inputs.query, inputs.key, queries, causal=inputs.causal, mask=inputs.mask,
                               scale=inputs.scale, sink_logits=inputs.sink_logits)
        rows[queries.start:queries.stop] = block[0].mean(0).cpu().numpy()
    return rows
