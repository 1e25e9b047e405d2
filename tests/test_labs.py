"""The lab checkers (workbench.labs) catch wrong answers and say what is wrong.

That they accept right answers is checked by tests/test_notebooks.py, which runs every lab
with its solutions filled in; here each checker gets a typical mistake."""
from __future__ import annotations

import math

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


WRONG_ANSWERS = {
    "check_entropy": entropy_in_bits,
    "check_varentropy": varentropy_with_wrong_sign,
    "check_surprisal": surprisal_of_raw_logit,
    "check_rank": rank_counting_ties,
    "check_margin": margin_of_probabilities,
    "check_temperature": temperature_multiplied,
    "check_top_p": top_p_stopping_short,
    "check_min_p": min_p_absolute,
    "check_top_h": top_h_without_renormalizing,
    "check_saliency": saliency_squared,
    "check_integrated_gradients": integrated_gradients_without_the_input_difference,
    "check_leave_one_out": leave_one_out_reversed,
}


def test_every_checker_has_a_wrong_answer():
    checkers = {name for name in labs.__all__ if name.startswith("check_")}
    assert checkers == WRONG_ANSWERS.keys()


@pytest.mark.parametrize("checker", WRONG_ANSWERS, ids=list(WRONG_ANSWERS))
def test_checker_rejects_a_wrong_answer(checker, capsys):
    with pytest.raises(labs.LabCheckError) as caught:
        getattr(labs, checker)(WRONG_ANSWERS[checker])
    message = str(caught.value)
    assert "expected" in message and "got" in message, message
    # the input named: logits z, gradients g, or the toy function of the attribution checkers
    assert any(name in message for name in (" z ", "z = ", "g = ", "the toy f", "toy log_prob")), \
        f"the message does not name the input: {message}"
    assert "correct" not in capsys.readouterr().out


def test_a_stub_that_returns_nothing_is_named():
    with pytest.raises(labs.LabCheckError, match=r"entropy on the worked example z = \(2, 1, 0, -1\) returned None; "
                                                 r"expected a single number \(0.947537\)"):
        labs.check_entropy(lambda logits: None)


def test_a_kept_set_of_the_wrong_shape_is_named():
    with pytest.raises(labs.LabCheckError, match=r"returned shape \(2,\); expected one value per token, shape \(4,\)"):
        labs.check_min_p(lambda logits, m: torch.tensor([True, True]))
