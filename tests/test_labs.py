"""The lab checkers (workbench.labs) catch wrong answers and say what is wrong.

That they accept right answers is checked by tests/test_notebooks.py, which runs every lab
with its solutions filled in; here each checker gets a typical mistake."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import labs


def log_probs(logits):
    return torch.log_softmax(logits, -1)


def sorted_kept(logits, count):
    """The `count` most likely tokens as a mask [V]."""
    kept = torch.zeros_like(logits, dtype=torch.bool)
    kept[logits.argsort(descending=True)[:count]] = True
    return kept


def entropy_in_bits(logits):
    return -(log_probs(logits).exp() * log_probs(logits)).sum() / math.log(2)


def varentropy_with_wrong_sign(logits):
    logp = log_probs(logits)
    entropy = -(logp.exp() * logp).sum()
    return (logp.exp() * (logp - entropy) ** 2).sum()


def surprisal_of_raw_logit(logits, y):
    return -logits[y]


def rank_counting_ties(logits, y):
    return int((logits >= logits[y]).sum())


def margin_of_probabilities(logits):
    first, second = log_probs(logits).exp().topk(2).values
    return first - second


def saliency_squared(gradients):
    return (gradients ** 2).sum(-1)


def integrated_gradients_without_the_input_difference(gradient_of_f, embeddings, baseline, steps):
    return sum(gradient_of_f(baseline + k / steps * (embeddings - baseline)) for k in range(1, steps + 1)).sum(-1) / steps


def leave_one_out_reversed(log_prob, context):
    return torch.tensor([log_prob(context[:s] + context[s + 1:]) - log_prob(context) for s in range(len(context))])


def temperature_multiplied(logits, t):
    return torch.softmax(logits * t, -1)


def top_p_stopping_short(logits, p):
    mass = log_probs(logits).exp().sort(descending=True).values.cumsum(-1)
    return sorted_kept(logits, int((mass < p).sum()))


def min_p_absolute(logits, m):
    return log_probs(logits).exp() >= m


def top_h_without_renormalizing(logits, alpha):
    probs = log_probs(logits).exp().sort(descending=True).values
    entropy = -(probs * probs.log()).sum()
    prefix_entropy = (-(probs * probs.log())).cumsum(-1)
    return sorted_kept(logits, max(int((prefix_entropy <= alpha * entropy).sum()), 1))


def kl_the_other_way(z_p, z_q):
    p, q = log_probs(z_p).exp(), log_probs(z_q).exp()
    return (q * (q.log() - p.log())).sum()


def acceptance_as_total_variation(z_p, z_q):
    return 0.5 * (log_probs(z_p).exp() - log_probs(z_q).exp()).abs().sum()


def expected_tokens_without_the_bonus(a, gamma):
    return (1 - a ** gamma) / (1 - a)


def perplexity_without_exp(s):
    return s.mean()


def token_sar_unnormalized(nll, relevance):
    return (relevance * nll).mean()


def auroc_without_ties(u, correct):
    return (u[~correct][:, None] > u[correct][None, :]).double().mean()


def perplexity_counting_first_tokens_as_zero(tokens):
    return np.exp(tokens.fillna({"surprisal": 0}).astype({"surprisal": float}).groupby("doc_id")["surprisal"].mean())


def threshold_of_the_bottom(values, fraction):
    return np.sort(values)[math.ceil(fraction * len(values)) - 1]


def share_strictly_above(token_ids, excess, threshold):
    return pd.Series(excess > threshold).groupby(token_ids).mean()


def received_by_queries(attention):
    return attention.sum(1)  # row sums: what each query hands out (always 1)


def cache_bytes_keys_only(layers, kv_heads, head_dim, tokens, bytes_per_value):
    return layers * kv_heads * head_dim * tokens * bytes_per_value


def keep_best_among_all(scores, heavy, recent):
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept[scores.argsort(descending=True)[:heavy + recent]] = True  # no recent window
    return kept


def online_h2o_in_hindsight(attention, heavy, recent):
    """The final hindsight set for every query: what the notebook's keep/evict view shows."""
    steps = attention.shape[0]
    kept = keep_best_among_all(attention.sum(0), heavy, 0)
    kept[steps - recent:] = True
    return kept.expand(steps, steps) & torch.ones(steps, steps, dtype=torch.bool).tril()


def load_counting_first_slot_only(expert_ids, n_experts):
    return torch.nn.functional.one_hot(expert_ids[..., 0], n_experts).double().mean(1)


def imbalance_max_over_min(load):
    return load.max(-1).values / load.min(-1).values


def affinity_joint_not_conditional(trace, n_experts):
    counts = torch.zeros(trace.shape[1] - 1, n_experts, n_experts, dtype=torch.float64)
    for layer in range(trace.shape[1] - 1):
        for e, e_next in zip(trace[:, layer].tolist(), trace[:, layer + 1].tolist()):
            counts[layer, e, e_next] += 1
    return counts / len(trace)


def streaming_lse_without_rescaling(logits, block):
    first_max = logits[:block].max()  # kept from the first block: later, larger logits overflow or are mis-scaled
    return first_max + torch.log(sum(torch.exp(chunk - first_max).sum() for chunk in logits.split(block)))


def streaming_entropy_of_last_block(logits, block):
    log_p = torch.log_softmax(logits.split(block)[-1], -1)
    return -(log_p.exp() * log_p).sum()


def roofline_adding_the_two_times(moved, flop, tbps, tflops):
    return (moved / (tbps * 1e12) + flop / (tflops * 1e12)) * 1e3


def advantages_with_unbiased_std(rewards):
    return (rewards - rewards.mean()) / (rewards.std(unbiased=True) + 1e-4)


def implicit_reward_reversed(logp_policy, logp_reference, beta):
    return beta * (logp_reference - logp_policy)


def cdpo_scores_not_weights(z_pos, z_neg, y, beta):
    return torch.softmax((1 + beta) * z_pos - beta * z_neg, -1).gather(-1, y[:, None])[:, 0]


def critical_token_after_last_success(counts):
    zeros = [t for t, c in enumerate(counts) if c == 0]
    return zeros[-1] if zeros else None


WRONG_ANSWERS = {
    "check_kl": kl_the_other_way,
    "check_acceptance": acceptance_as_total_variation,
    "check_expected_tokens": expected_tokens_without_the_bonus,
    "check_entropy": entropy_in_bits,
    "check_varentropy": varentropy_with_wrong_sign,
    "check_surprisal": surprisal_of_raw_logit,
    "check_rank": rank_counting_ties,
    "check_margin": margin_of_probabilities,
    "check_temperature": temperature_multiplied,
    "check_top_p": top_p_stopping_short,
    "check_min_p": min_p_absolute,
    "check_top_h": top_h_without_renormalizing,
    "check_perplexity": perplexity_without_exp,
    "check_token_sar": token_sar_unnormalized,
    "check_auroc": auroc_without_ties,
    "check_document_perplexity": perplexity_counting_first_tokens_as_zero,
    "check_rho1_threshold": threshold_of_the_bottom,
    "check_selected_share": share_strictly_above,
    "check_saliency": saliency_squared,
    "check_integrated_gradients": integrated_gradients_without_the_input_difference,
    "check_leave_one_out": leave_one_out_reversed,
    "check_received_attention": received_by_queries,
    "check_kv_cache_bytes": cache_bytes_keys_only,
    "check_heavy_hitters": keep_best_among_all,
    "check_online_h2o": online_h2o_in_hindsight,
    "check_expert_load": load_counting_first_slot_only,
    "check_load_imbalance": imbalance_max_over_min,
    "check_affinity": affinity_joint_not_conditional,
    "check_streaming_lse": streaming_lse_without_rescaling,
    "check_streaming_entropy": streaming_entropy_of_last_block,
    "check_roofline_ms": roofline_adding_the_two_times,
    "check_grpo_advantages": advantages_with_unbiased_std,
    "check_implicit_reward": implicit_reward_reversed,
    "check_cdpo_weights": cdpo_scores_not_weights,
    "check_critical_token": critical_token_after_last_success,
}
INPUT_NAMES = {  # how each checker's message names the input it failed on (default: the logits z)
    "check_received_attention": "A = ",
    "check_kv_cache_bytes": "L, H_kv, d, T, bytes = ",
    "check_heavy_hitters": "s = ",
    "check_online_h2o": "A = ",
    "check_expert_load": "expert_ids = ",
    "check_load_imbalance": "load = ",
    "check_affinity": "trace = ",
    "check_roofline_ms": "bytes = ",
    "check_grpo_advantages": "rewards r = ",
    "check_implicit_reward": "pi = ",
    "check_cdpo_weights": "p_pos = ",
    "check_critical_token": "c = ",
}


def test_every_checker_has_a_wrong_answer():
    checkers = {name for name in labs.__all__ if name.startswith("check_")}
    assert checkers == WRONG_ANSWERS.keys() | SPECULATIVE_WRONG_ANSWERS.keys()


@pytest.mark.parametrize("checker", WRONG_ANSWERS, ids=list(WRONG_ANSWERS))
def test_checker_rejects_a_wrong_answer(checker, capsys):
    with pytest.raises(labs.LabCheckError) as caught:
        getattr(labs, checker)(WRONG_ANSWERS[checker])
    message = str(caught.value)
    assert "expected" in message and "got" in message, message
    named = INPUT_NAMES.get(checker)
    # default: logits z, an acceptance rate a, a vector, a table's worked example, gradients g, or the
    # toy function of the attribution checkers
    parts = (named,) if named else (" z ", "z = ", "a = ", " = (", "on the worked example", "g = ", "the toy f",
                                    "toy log_prob")
    assert any(part in message for part in parts), f"the message does not name the input: {message}"
    assert "correct" not in capsys.readouterr().out


def test_a_stub_that_returns_nothing_is_named():
    with pytest.raises(labs.LabCheckError, match=r"entropy on the worked example z = \(2, 1, 0, -1\) returned None; "
                                                 r"expected a single number \(0.947537\)"):
        labs.check_entropy(lambda logits: None)


def test_a_kept_set_of_the_wrong_shape_is_named():
    with pytest.raises(labs.LabCheckError, match=r"returned shape \(2,\); expected one value per token, shape \(4,\)"):
        labs.check_min_p(lambda logits, m: torch.tensor([True, True]))


def test_corpus_checkers_accept_the_definitions_and_name_the_mistake():
    def perplexity(tokens):
        return np.exp(tokens.dropna().astype({"surprisal": float}).groupby("doc_id")["surprisal"].mean())

    def threshold(values, fraction):
        return np.sort(values)[::-1][math.ceil(fraction * len(values)) - 1]

    def share(token_ids, excess, threshold):
        return pd.Series(excess >= threshold).groupby(token_ids).mean()

    labs.check_document_perplexity(perplexity)
    labs.check_rho1_threshold(threshold)
    labs.check_selected_share(share)
    with pytest.raises(labs.LabCheckError, match=r"selected_share of token id 9 on the worked example: expected 0.666667, got 0"):
        labs.check_selected_share(share_strictly_above)
    with pytest.raises(labs.LabCheckError, match=r"document_perplexity of document 0 on the worked example: expected 7.389"):
        labs.check_document_perplexity(perplexity_counting_first_tokens_as_zero)
    with pytest.raises(labs.LabCheckError, match=r"rho1_threshold on the worked example .*: expected 2, got 0"):
        labs.check_rho1_threshold(threshold_of_the_bottom)


# Lab 08 (speculative sampling): its checkers name p, q or alpha rather than logits z.
SPECULATIVE_WRONG_ANSWERS = {
    "check_accept_probability": lambda p, q, token: float(p[token] / q[token]),  # no cap at 1
    "check_acceptance_rate": lambda p, q: float((p * q).sum()),  # an overlap, but not the acceptance rate
    "check_expected_tokens": lambda alpha, gamma: sum(alpha ** i for i in range(1, gamma + 1)),  # accepted drafts only
}


@pytest.mark.parametrize("checker", SPECULATIVE_WRONG_ANSWERS, ids=list(SPECULATIVE_WRONG_ANSWERS))
def test_speculative_checker_rejects_a_wrong_answer(checker, capsys):
    with pytest.raises(labs.LabCheckError, match=r"expected .*, got ") as caught:
        getattr(labs, checker)(SPECULATIVE_WRONG_ANSWERS[checker])
    assert any(word in str(caught.value) for word in ("token", "tokens)", "alpha =")), str(caught.value)
    assert "correct" not in capsys.readouterr().out


def test_expected_tokens_at_alpha_one_is_named():
    with pytest.raises(labs.LabCheckError, match=r"divides by zero; at alpha = 1 .* gamma \+ 1"):
        labs.check_expected_tokens(lambda alpha, gamma: (1 - alpha ** (gamma + 1)) / (1 - alpha))
