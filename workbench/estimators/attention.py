"""RAUQ, recurrent attention-based uncertainty (Vazhentsev et al. 2025, "Uncertainty-Aware
Attention Heads: Efficient Unsupervised Uncertainty Quantification for LLMs").

Some heads attend strongly to the previous token, and their attention to it drops where the
model starts to err. With a^{l,h}_t = A_{t,t-1}, the attention of layer l, head h from token t to
the token before it (`attn_previous`, streamed by the 'attention' signal) and p_t = p(y_t | y_<t, x)
for the N scored tokens:
    h_l = argmax_h (1/(N-1)) sum_{t=2..N} a^{l,h}_t           (the layer's most previous-token head)
    c^l_1 = p_1,   c^l_t = alpha p_t + (1 - alpha) a^{l,h_l}_t c^l_{t-1}
    u^l = -(1/N) sum_t log c^l_t,   RAUQ = max_{l in middle third of the layers} u^l
alpha = 0.2 (the paper's value for question answering). The contributions are -log c^{l*}_t / N
of the layer l* that gives the max, combined by sum.
"""
from __future__ import annotations

import numpy as np

from ..errors import WorkbenchError
from .probability import token_estimate
from .registry import Context, Estimate, register_estimator
from .tokens import ScoredTokens

ALPHA = 0.2


def middle_layers(n_layers: int) -> list[int]:
    """The middle third of the layers (at least one), where the paper finds the informative heads."""
    third = max(n_layers // 3, 1)
    start = (n_layers - third) // 2
    return list(range(start, start + third))


def previous_attention(context: Context) -> np.ndarray:
    """attn_previous [L, H, T] of the whole sequence: the run's array, else one forward of the
    model with the 'attention' signal (its memory estimate checked first)."""
    if "attn_previous" in context.arrays:
        return context.arrays["attn_previous"]
    if context.model is None:
        raise WorkbenchError("rauq needs attention on the previous token: analyze with signals=['uncertainty', "
                             "'attention'], or give the model (estimate(run, model=model))")
    from ..forward import memory
    from ..forward.capture import run_forward
    from ..signals import SIGNALS, resolve

    memory.check_signals_fit(context.model, len(context.ids), resolve(["attention"], context.model))
    capture = run_forward(context.model, context.ids, {"attention"})
    context.arrays["attn_previous"] = SIGNALS["attention"].compute(capture, {}).arrays["attn_previous"]
    return context.arrays["attn_previous"]


def recurrent_confidence(p: np.ndarray, previous: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """c_1 = p_1, c_t = alpha p_t + (1 - alpha) a_t c_{t-1}: p, a [N] -> c [N] float64."""
    c = np.empty(len(p))
    c[0] = p[0]
    for t in range(1, len(p)):
        c[t] = alpha * p[t] + (1 - alpha) * previous[t] * c[t - 1]
    return c


@register_estimator("rauq", family="attention", needs=("attention",),
                    description="RAUQ: token probabilities carried along by the attention of the most "
                                "previous-token head of each middle layer (Vazhentsev et al. 2025)")
def rauq(tokens: ScoredTokens, context: Context) -> Estimate:
    """RAUQ = max_l -(1/N) sum_t log c^l_t, c^l_t = alpha p_t + (1 - alpha) a^{l,h_l}_t c^l_{t-1}
    (Vazhentsev et al. 2025)."""
    attention = previous_attention(context)[:, :, tokens.positions + tokens.offset].astype(np.float64)  # [L, H, N]
    p = np.exp(-tokens.surprisal)
    best = None
    for layer in middle_layers(attention.shape[0]):
        head_means = attention[layer, :, 1:].mean(-1) if len(tokens) > 1 else attention[layer, :, 0]
        head = int(np.argmax(head_means))
        contributions = -np.log(recurrent_confidence(p, attention[layer, head])) / len(tokens)
        if best is None or contributions.sum() > best[0].sum():
            best = contributions, layer, head
    contributions, layer, head = best
    return token_estimate("rauq", tokens, contributions, "sum", layer=layer, head=head, alpha=ALPHA)
