"""Two predictors of the same tokens compared token by token: two models that share a
vocabulary, or one model under two contexts (`model.compare`).

    run = model.compare("The capital of France is Paris.", reference=small)
    run = model.compare(answer, context=document, reference_context=None)
    run.table[["token", "kl_pq", "js", "acceptance", "log_ratio", "top1_agree"]]

sides.py: the two inputs; statistics.py: fused pair statistics from final hidden states;
signals.py: the per-token columns and their formulas; commitment.py: commitment layers from
the logit lens; branches.py: greedy continuations at divergent positions.
"""
from .commitment import commitment_layers
from .signals import PAIR_SIGNALS, expected_accepted_tokens
from .statistics import PairStats, pair_stats

__all__ = ["PAIR_SIGNALS", "PairStats", "commitment_layers", "expected_accepted_tokens",
           "pair_stats"]
