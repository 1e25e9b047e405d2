"""Checkers for the exercises of the tutorial labs (notebooks/): one function per exercise.

    from workbench import labs
    labs.check_entropy(entropy)        # entropy(logits [V]) -> float

Each `check_*` calls the student's function on the worked examples of docs/signals.md and on random inputs,
and compares what it returns with the library's own computation
(`workbench.kernels.vocab_stats_reference`, `workbench.kernels.kept_set_reference`,
`workbench.kernels.attention_stats`, `workbench.kv`, `workbench.routing_stats`, `workbench.bench.timing`, the credit functions of `workbench.credit`
and `workbench.results.group.grpo_advantages`). It prints
one line when everything matches, and raises `LabCheckError` naming the first input that
does not match, what was expected and what came back.

Notation (docs/signals.md): z logits at one position [V], p = softmax(z), y the token that follows.
"""
from __future__ import annotations

import torch

from .bench.timing import roofline_ms
from .credit import cdpo_scores, find_critical, implicit_token_reward
from .kernels import attention_rows, attention_stats, divergence_reference, kept_set_reference, vocab_stats_reference
from .kv import heavy_hitters, kv_cache_bytes, online_keep
from .results.group import grpo_advantages
from .routing_stats import affinity, expert_load, load_imbalance

__all__ = [
    "LabCheckError", "check_entropy", "check_varentropy", "check_surprisal", "check_rank", "check_margin",
    "check_temperature", "check_top_p", "check_min_p", "check_top_h",
    "check_received_attention", "check_kv_cache_bytes", "check_heavy_hitters", "check_online_h2o",
    "check_expert_load", "check_load_imbalance", "check_affinity",
    "check_streaming_lse", "check_streaming_entropy", "check_roofline_ms",
    "check_grpo_advantages", "check_implicit_reward", "check_cdpo_weights", "check_critical_token",
    "check_kl", "check_acceptance", "check_expected_tokens",
]

EXAMPLE_LOGITS = (2.0, 1.0, 0.0, -1.0)  # the worked example of docs/signals.md: z, with y = 1
EXAMPLE_TARGET = 1
TOLERANCE = 1e-4
RANDOM_VOCAB = 50
RANDOM_SCALES = (0.5, 2.0, 6.0)  # flat, moderate and peaked distributions


class LabCheckError(AssertionError):
    """A student's function disagrees with the reference; the message says on which input."""


def random_logits(seed: int = 0) -> list[torch.Tensor]:
    """A few logit vectors [V] of increasing sharpness, the same ones in every run."""
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(RANDOM_VOCAB, generator=generator) for scale in RANDOM_SCALES]


def describe(logits: torch.Tensor) -> str:
    """The logits as the error message names them: the values when few, else the shape."""
    if logits.numel() <= 10:
        return "z = (" + ", ".join(f"{value:g}" for value in logits.tolist()) + ")"
    return f"random z of shape [{logits.numel()}] (std {logits.std():.1f})"


def expect_number(name: str, got, expected: float, where: str) -> None:
    """Raise LabCheckError unless `got` is a number within TOLERANCE of `expected`."""
    try:
        value = float(got)
    except (TypeError, ValueError, RuntimeError):
        raise LabCheckError(f"{name} on {where} returned {got!r}; expected a single number ({expected:.6g})") from None
    if not abs(value - expected) <= TOLERANCE * max(1.0, abs(expected)):
        raise LabCheckError(f"{name} on {where}: expected {expected:.6g}, got {value:.6g}")


def expect_tensor(name: str, got, expected: torch.Tensor, where: str) -> torch.Tensor:
    """`got` as a tensor of `expected`'s shape and dtype, or LabCheckError saying why not."""
    tensor = torch.as_tensor(got)
    if tensor.shape != expected.shape:
        raise LabCheckError(f"{name} on {where} returned shape {tuple(tensor.shape)}; "
                            f"expected one value per token, shape {tuple(expected.shape)}")
    return tensor.to(expected.dtype)


def expect_kept(name: str, got, expected: torch.Tensor, where: str) -> None:
    """Raise LabCheckError unless the mask `got` keeps exactly the tokens `expected` [V] keeps."""
    kept = expect_tensor(name, got, expected, where)
    if not torch.equal(kept, expected):
        missing, extra = token_ids(expected & ~kept), token_ids(kept & ~expected)
        raise LabCheckError(f"{name} on {where}: expected to keep {int(expected.sum())} tokens "
                            f"{token_ids(expected)}, got {int(kept.sum())}; missing {missing}, extra {extra}")


def token_ids(mask: torch.Tensor, shown: int = 8) -> str:
    """The token ids in a mask [V], the first `shown` of them."""
    ids = mask.nonzero()[:, 0].tolist()
    return "[" + ", ".join(map(str, ids[:shown])) + (", ...]" if len(ids) > shown else "]")


def passed(name: str, reference: str) -> None:
    print(f"{name}: correct on the worked examples of docs/signals.md and {len(RANDOM_SCALES)} random distributions "
          f"(compared with {reference})")


def reference_stats(logits: torch.Tensor, target: int = EXAMPLE_TARGET):
    """The library's statistics of one row of logits [V], for target y."""
    return vocab_stats_reference(logits[None], torch.tensor([target]))


def check_entropy(entropy) -> None:
    """entropy(z [V]) -> H = -sum_v p_v log p_v = logsumexp(z) - sum_v p_v z_v, in nats.
    docs/signals.md: z = (2, 1, 0, -1) -> H = .947537."""
    check_row_statistic("entropy", entropy, 0.947537, lambda stats: stats.entropy[0])


def check_varentropy(varentropy) -> None:
    """varentropy(z [V]) -> sum_v p_v (log p_v + H)^2, the variance of the surprisal -log p under p.
    docs/signals.md: z = (2, 1, 0, -1) -> .616586."""
    check_row_statistic("varentropy", varentropy, 0.616586, lambda stats: stats.varentropy[0])


def check_margin(margin) -> None:
    """margin(z [V]) -> log p_(1) - log p_(2), the gap between the two most likely tokens.
    docs/signals.md: z = (2, 1, 0, -1) -> 1.0."""
    check_row_statistic("margin", margin, 1.0, lambda stats: stats.margin[0])


def check_row_statistic(name: str, fn, example_value: float, reference) -> None:
    """fn(z [V]) -> number, against the worked example's value and `reference(VocabStats)` on random z."""
    example = torch.tensor(EXAMPLE_LOGITS)
    expect_number(name, fn(example), example_value, f"the worked example {describe(example)}")
    for logits in random_logits():
        expect_number(name, fn(logits.clone()), float(reference(reference_stats(logits))), describe(logits))
    passed(name, "workbench.kernels.vocab_stats_reference")


def check_surprisal(surprisal) -> None:
    """surprisal(z [V], y) -> -log p_y. docs/signals.md: z = (2, 1, 0, -1), y = 1 -> 1.44019."""
    check_target_statistic("surprisal", surprisal, 1.44019, lambda stats: -stats.target_logprob[0])


def check_rank(rank) -> None:
    """rank(z [V], y) -> #{v : z_v > z_y}: how many tokens beat y (0 = the argmax; tied tokens
    do not count). docs/signals.md: z = (2, 1, 0, -1), y = 1 -> 1; z = (1, 1, 0), y = 1 -> 0 (a tie)."""
    tie = torch.tensor([1.0, 1.0, 0.0])
    expect_number("rank", rank(tie, 1), 0, f"{describe(tie)}, y = 1 (a tie with token 0)")
    check_target_statistic("rank", rank, 1, lambda stats: stats.target_rank[0])


def check_target_statistic(name: str, fn, example_value: float, reference) -> None:
    """fn(z [V], y) -> number, against the worked example's value and `reference(VocabStats)` on random
    z, with y the 1st, 4th and 20th most likely token."""
    example = torch.tensor(EXAMPLE_LOGITS)
    expect_number(name, fn(example, EXAMPLE_TARGET), example_value,
                  f"the worked example {describe(example)}, y = {EXAMPLE_TARGET}")
    for logits, place in zip(random_logits(), (0, 3, 19)):
        target = int(logits.argsort(descending=True)[place])
        expected = float(reference(reference_stats(logits, target)))
        expect_number(name, fn(logits.clone(), target), expected, f"{describe(logits)}, y = {target}")
    passed(name, "workbench.kernels.vocab_stats_reference")


def check_temperature(temperature) -> None:
    """temperature(z [V], T) -> p_T = softmax(z / T) [V].
    docs/signals.md: z = (2, 1, 0, -1), T = .5 -> (.864955, .117059, .015842, .002144)."""
    example = torch.tensor(EXAMPLE_LOGITS)
    cases = [(example, 0.5, torch.tensor([0.864955, 0.117059, 0.015842, 0.002144]), "the worked example ")]
    cases += [(logits, t, kept_set_reference(logits[None], temperature=t)[1][0], "")
              for logits, t in zip(random_logits(), (0.7, 1.5, 3.0))]
    for logits, t, expected, source in cases:
        where = f"{source}{describe(logits)}, T = {t}"
        probs = expect_tensor("temperature", temperature(logits.clone(), t), expected, where)
        worst = int((probs - expected).abs().argmax())
        expect_number("temperature", probs[worst], float(expected[worst]), f"{where}, token {worst}")
    passed("temperature", "workbench.kernels.kept_set_reference")


def check_top_p(top_p) -> None:
    """top_p(z [V], p) -> kept [V] bool: the smallest set of most likely tokens whose mass is >= p
    (Holtzman et al. 2020). docs/signals.md: z = (2, 1, 0, -1), p = .9 keeps {0, 1, 2}."""
    check_kept_set("top_p", top_p, [(0.9, [0, 1, 2])], (0.5, 0.8, 0.95))


def check_min_p(min_p) -> None:
    """min_p(z [V], m) -> kept [V] bool: the tokens with p_v >= m * max_v p_v (Nguyen et al. 2024).
    docs/signals.md: z = (2, 1, 0, -1), m = .2 keeps {0, 1}."""
    check_kept_set("min_p", min_p, [(0.2, [0, 1])], (0.05, 0.1, 0.3))


def check_top_h(top_h) -> None:
    """top_h(z [V], alpha) -> kept [V] bool: sort p descending and keep the largest prefix of k
    tokens whose renormalized distribution q_k = p_(1..k) / sum p_(1..k) has H(q_k) <= alpha * H(p);
    always at least one (Baghaei et al. 2025, Algorithm 1).
    docs/signals.md: p = (.5, .25, .125, .125): alpha .4 -> {0}, .6 -> {0, 1}, .8 -> {0, 1, 2};
    uniform over 10 tokens, alpha .45 -> 2 tokens."""
    halves = torch.tensor([0.5, 0.25, 0.125, 0.125]).log()
    uniform = torch.zeros(10)
    kept = torch.as_tensor(top_h(uniform.clone(), 0.45))
    expect_number("top_h: number of kept tokens", kept.sum(), 2,
                  f"the worked example: uniform {describe(uniform)}, alpha = 0.45")
    check_kept_set("top_h", top_h, [(0.4, [0]), (0.6, [0, 1]), (0.8, [0, 1, 2])], (0.3, 0.5, 0.7),
                   example=halves)


def check_kept_set(rule: str, fn, example_cases, random_values, example=None) -> None:
    """fn(z [V], value) -> kept [V] bool against the worked examples' kept sets on `example` (default:
    the worked example's z) and `kept_set_reference(..., rule=value)` on random z; `rule` names
    both the exercise and the reference's keyword (top_p, min_p, top_h)."""
    example = torch.tensor(EXAMPLE_LOGITS) if example is None else example
    for value, tokens in example_cases:
        expected = torch.zeros(example.numel(), dtype=torch.bool)
        expected[tokens] = True
        where = f"the worked example {describe(example)}, {rule} = {value}"
        expect_kept(rule, fn(example.clone(), value), expected, where)
    for logits, value in zip(random_logits(), random_values):
        expected = kept_set_reference(logits[None], **{rule: value})[0][0]
        expect_kept(rule, fn(logits.clone(), value), expected, f"{describe(logits)}, {rule} = {value}")
    passed(rule, "workbench.kernels.kept_set_reference")


def expect_values(name: str, got, expected: torch.Tensor, where: str) -> None:
    """Raise LabCheckError unless `got` has `expected`'s shape and values, each within TOLERANCE
    (NaN where `expected` has NaN), naming the first entry that differs."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    try:
        values = torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise LabCheckError(f"{name} on {where} returned {got!r}; expected an array of shape {tuple(expected.shape)}") from None
    if values.shape != expected.shape:
        raise LabCheckError(f"{name} on {where} returned shape {tuple(values.shape)}; expected shape {tuple(expected.shape)}")
    wrong = ~(torch.isclose(values, expected, rtol=TOLERANCE, atol=TOLERANCE) | (values.isnan() & expected.isnan()))
    if wrong.any():
        first = tuple(wrong.nonzero()[0].tolist())
        raise LabCheckError(f"{name} on {where}: at {first} expected {float(expected[first]):.6g}, got {float(values[first]):.6g}")


def describe_values(values) -> str:
    return "(" + ", ".join(f"{value:g}" for value in torch.as_tensor(values).tolist()) + ")"


# ----- lab 03: attention and the KV cache -----------------------------------------------------
WORKED_ATTENTION = ((1, 0, 0, 0), (.5, .5, 0, 0), (.6, .2, .2, 0), (.4, .1, .1, .4))  # docs/signals.md's H2O example


def random_attention(tokens: int = 12, seed: int = 0) -> torch.Tensor:
    """One head's causal attention A [T, T] (rows sum to one) from random Q and K, via the library."""
    generator = torch.Generator().manual_seed(seed)
    query, key = (2 * torch.randn(1, 1, tokens, 8, generator=generator) for _ in range(2))
    return attention_rows(query, key, range(tokens))[0, 0].double(), (query, key)


def expect_mask(name: str, got, expected: torch.Tensor, where: str) -> None:
    """Raise LabCheckError unless the boolean mask `got` equals `expected` (any shape), naming the first difference."""
    mask = torch.as_tensor(got)
    if mask.shape != expected.shape:
        raise LabCheckError(f"{name} on {where} returned shape {tuple(mask.shape)}; expected shape {tuple(expected.shape)}")
    wrong = (mask.bool() != expected).nonzero()
    if len(wrong):
        first = tuple(wrong[0].tolist())
        raise LabCheckError(f"{name} on {where}: at {first} expected {bool(expected[first])}, got {bool(mask[first])} "
                            f"({len(wrong)} entries differ)")


def check_received_attention(received) -> None:
    """received(A [T, T]) -> s [T], s_j = sum_q A_qj: the attention key j receives from all queries
    (H2O's score). docs/signals.md: rows (1), (.5 .5), (.6 .2 .2), (.4 .1 .1 .4) -> (2.5, .8, .3, .4)."""
    worked = torch.tensor(WORKED_ATTENTION, dtype=torch.float64)
    expect_values("received", received(worked.clone()), (2.5, 0.8, 0.3, 0.4), "the worked example A = " + str(WORKED_ATTENTION))
    attention, (query, key) = random_attention()
    expected = attention_stats(query, key).received[0, 0]
    expect_values("received", received(attention.clone()), expected, "a random causal A of shape [12, 12]")
    print("received: correct on the worked example of docs/signals.md and a random head "
          "(compared with workbench.kernels.attention_stats)")


def check_kv_cache_bytes(cache_bytes) -> None:
    """cache_bytes(layers, kv_heads, head_dim, tokens, bytes_per_value) -> 2 * L * H_kv * d * T * bytes
    (`workbench.kv.kv_cache_bytes`). SmolLM2-135M at 4096 tokens in bf16: 30, 3, 64 -> 94,371,840."""
    cases = [(30, 3, 64, 4096, 2), (30, 9, 64, 4096, 2), (32, 8, 128, 1000, 4), (1, 1, 1, 1, 1)]
    for case in cases:
        expect_number("cache_bytes", cache_bytes(*case), kv_cache_bytes(*case),
                      "L, H_kv, d, T, bytes = " + ", ".join(map(str, case)))
    print(f"cache_bytes: correct on {len(cases)} shapes (compared with workbench.kv.kv_cache_bytes)")


def check_heavy_hitters(keep) -> None:
    """keep(s [T], heavy, recent) -> kept [T] bool: the `recent` last keys and, among the others,
    the `heavy` best-scored (H2O in hindsight, `workbench.kv.heavy_hitters`). docs/signals.md:
    s = (2.5, .8, .3, .4), heavy 1 + recent 1 keeps {0, 3}."""
    generator = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([2.5, 0.8, 0.3, 0.4], dtype=torch.float64), 1, 1)]
    cases += [(torch.rand(20, generator=generator, dtype=torch.float64), heavy, recent) for heavy, recent in ((3, 2), (0, 5), (5, 0))]
    for scores, heavy, recent in cases:
        expected = torch.from_numpy(heavy_hitters(scores.numpy(), heavy, recent))
        where = f"s = {describe_values(scores.round(decimals=3))}, heavy {heavy} + recent {recent}"
        expect_mask("keep", keep(scores.clone(), heavy, recent), expected, where)
    print(f"keep: correct on the worked example of docs/signals.md and {len(cases) - 1} random scores "
          "(compared with workbench.kv.heavy_hitters)")


def check_online_h2o(online_h2o) -> None:
    """online_h2o(A [T, T], heavy, recent) -> visible [T, T] bool: H2O run step by step
    (`workbench.kv.online_keep`). Worked example (heavy 1 + recent 1) on docs/signals.md's A:
    query 3 sees keys {0, 2, 3}."""
    worked = torch.tensor(WORKED_ATTENTION, dtype=torch.float64)
    cases = [(worked, 1, 1, "the worked example A = " + str(WORKED_ATTENTION))]
    attention, _ = random_attention(16, seed=1)
    cases += [(attention, heavy, recent, "a random causal A of shape [16, 16]") for heavy, recent in ((3, 2), (4, 0), (0, 4))]
    for matrix, heavy, recent, where in cases:
        expected = online_keep(matrix[None], heavy, recent)
        expect_mask("online_h2o", online_h2o(matrix.clone(), heavy, recent), expected,
                    f"{where}, heavy {heavy} + recent {recent}")
    print(f"online_h2o: correct on the worked example and {len(cases) - 1} random heads "
          "(compared with workbench.kv.online_keep)")


# ----- lab 04: mixture-of-experts routing ------------------------------------------------------
def random_routes(layers: int = 3, tokens: int = 40, n_experts: int = 6, k: int = 2, seed: int = 0) -> torch.Tensor:
    """Expert ids [m, T, k]: k distinct experts per token and layer, drawn at random, the same in every run."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(layers, tokens, n_experts, generator=generator).argsort(-1)[..., :k]


def check_expert_load(load) -> None:
    """load(expert_ids [m, T, k], E) -> [m, E]: the fraction of tokens routed to each expert in any
    of their k slots (each row sums to k), as `workbench.routing_stats.expert_load`."""
    ids = torch.tensor([[[0, 1], [0, 2], [1, 0], [3, 0]]])
    cases = [(ids, 4, "expert_ids = ((0, 1), (0, 2), (1, 0), (3, 0)), E = 4"),
             (random_routes(), 6, "random top-2 routes of shape [3, 40, 2], E = 6"),
             (random_routes(k=1, seed=1), 6, "random top-1 routes of shape [3, 40, 1], E = 6")]
    for expert_ids, n_experts, where in cases:
        expected = torch.from_numpy(expert_load(expert_ids.numpy(), n_experts))
        expect_values("load", load(expert_ids.clone(), n_experts), expected, where)
    print("load: correct on a worked example and 2 random routings (compared with workbench.routing_stats.expert_load)")


def check_load_imbalance(imbalance) -> None:
    """imbalance(load [m, E]) -> [m]: max / mean of each layer's loads
    (`workbench.routing_stats.load_imbalance`); 1 when balanced."""
    cases = [(torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 0.5, 0.25, 0.25]], dtype=torch.float64), "load = ((.5, .5, .5, .5), (1, .5, .25, .25))"),
             (torch.from_numpy(expert_load(random_routes().numpy(), 6)), "the loads of random top-2 routes, shape [3, 6]")]
    for loads, where in cases:
        expect_values("imbalance", imbalance(loads.clone()), torch.from_numpy(load_imbalance(loads.numpy())), where)
    print("imbalance: correct on a worked example and a random load (compared with workbench.routing_stats.load_imbalance)")


def check_affinity(affinity_of) -> None:
    """affinity(trace [N, m], E) -> [m-1, E, E]: P(expert e' at layer l+1 | expert e at layer l)
    over the tokens (ExFlow, Yao et al. 2024), NaN rows for experts nobody chose
    (`workbench.routing_stats.affinity`). docs/signals.md: trace ((0,1),(0,1),(0,0),(1,1),(1,0),(1,1)), E = 2
    -> ((1/3, 2/3), (1/3, 2/3))."""
    worked = torch.tensor([[0, 1], [0, 1], [0, 0], [1, 1], [1, 0], [1, 1]])
    cases = [(worked, 2, "the worked example trace = ((0,1), (0,1), (0,0), (1,1), (1,0), (1,1)), E = 2"),
             (random_routes(k=1).squeeze(-1).T.contiguous(), 6, "a random trace of shape [40, 3], E = 6"),
             (torch.tensor([[0, 0], [0, 1], [2, 1]]), 4, "trace = ((0,0), (0,1), (2,1)), E = 4 (experts 1 and 3 unused)")]
    for trace, n_experts, where in cases:
        expected = torch.from_numpy(affinity(trace.numpy(), n_experts))
        expect_values("affinity", affinity_of(trace.clone(), n_experts), expected, where)
    print("affinity: correct on the worked example, a random trace and one with unused experts "
          "(compared with workbench.routing_stats.affinity)")


# ----- lab 05: credit in a group of rollouts ---------------------------------------------------
def check_grpo_advantages(advantages) -> None:
    """advantages(r [G]) -> A [G], A_i = (r_i - mean r) / (std r + eps), eps = 1e-4, the
    population standard deviation (ddof = 0) as in `workbench.results.group.grpo_advantages`;
    r = (1, 0, 0, 0) -> (1.7317, -.5772, -.5772, -.5772); equal rewards -> zeros."""
    generator = torch.Generator().manual_seed(0)
    cases = [(1.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.0, 0.0, 0.0, 0.0),
             tuple(torch.rand(16, generator=generator).round(decimals=2).tolist())]
    for rewards in cases:
        got = advantages(torch.tensor(rewards, dtype=torch.float64))
        expect_values("advantages", got, grpo_advantages(rewards), f"rewards r = {describe_values(rewards)}")
    print(f"advantages: correct on {len(cases)} groups, a mixed, an all-equal and a graded one "
          "(compared with workbench.results.group.grpo_advantages)")


def check_implicit_reward(implicit_reward) -> None:
    """implicit_reward(logp_policy [T], logp_reference [T], beta) -> beta * (logp_policy - logp_reference) [T]
    (DPO's implicit token reward, Rafailov et al. 2024). docs/signals.md: beta .1, pi (.5, .9, .2),
    ref (.25, .9, .4) -> (.0693, 0, -.0693)."""
    generator = torch.Generator().manual_seed(0)
    cases = [((0.5, 0.9, 0.2), (0.25, 0.9, 0.4), 0.1),
             (tuple(torch.rand(6, generator=generator).tolist()), tuple(torch.rand(6, generator=generator).tolist()), 0.5)]
    for policy, reference, beta in cases:
        logp_policy, logp_reference = torch.tensor(policy).log(), torch.tensor(reference).log()
        got = implicit_reward(logp_policy.clone(), logp_reference.clone(), beta)
        expect_values("implicit_reward", got, implicit_token_reward(logp_policy, logp_reference, beta),
                      f"pi = {describe_values(policy)}, pi_ref = {describe_values(reference)}, beta = {beta}")
    print("implicit_reward: correct on the worked example of docs/signals.md and a random one "
          "(compared with workbench.credit.implicit_token_reward)")


def check_cdpo_weights(cdpo_weights) -> None:
    """cdpo_weights(z_pos [T, V], z_neg [T, V], y [T], beta) -> 1 - softmax((1 + beta) z_pos - beta z_neg)[y_t] [T]
    (cDPO, Lin et al. 2024). docs/signals.md: p_pos = (.7, .2, .1), p_neg = (.2, .7, .1), beta 1:
    weights (.060, .978, .962) for y = 0, 1, 2."""
    positive, negative = torch.tensor([0.7, 0.2, 0.1]).log(), torch.tensor([0.2, 0.7, 0.1]).log()
    cases = [(positive.expand(3, 3), negative.expand(3, 3), torch.arange(3), 1.0, "the worked example p_pos = (.7, .2, .1), "
              "p_neg = (.2, .7, .1), y = (0, 1, 2), beta = 1")]
    generator = torch.Generator().manual_seed(0)
    z_positive, z_negative = (3 * torch.randn(5, RANDOM_VOCAB, generator=generator) for _ in range(2))
    targets = torch.randint(RANDOM_VOCAB, (5,), generator=generator)
    cases.append((z_positive, z_negative, targets, 0.5, f"random z of shape [5, {RANDOM_VOCAB}], beta = 0.5"))
    for z_pos, z_neg, y, beta, where in cases:
        expected = 1 - cdpo_scores(z_pos, z_neg, y, beta=beta)
        expect_values("cdpo_weights", cdpo_weights(z_pos.clone(), z_neg.clone(), y.clone(), beta), expected, where)
    print("cdpo_weights: correct on the worked example of docs/signals.md and a random one "
          "(compared with workbench.credit.cdpo_scores)")


def check_critical_token(critical_token) -> None:
    """critical_token(c [T]) -> the position of the critical token, the first t with c_t = 0
    (the shortest failing prefix ends there), or None when every prefix still succeeds
    (Lin et al. 2024; `workbench.credit.find_critical` with a full scan)."""
    cases = [(3, 2, 0, 1, 0), (0, 0, 0), (4, 4, 3), (2, 1, 1, 0), (1, 0, 2, 0, 0)]
    for counts in cases:
        _, expected, _ = find_critical(lambda positions: [counts[p] for p in positions], len(counts))
        got = critical_token(list(counts))
        if got is None or expected is None:
            if got is not expected:
                raise LabCheckError(f"critical_token on c = {counts}: expected {expected}, got {got!r}")
        else:
            expect_number("critical_token", got, expected, f"c = {counts}")
    print(f"critical_token: correct on {len(cases)} success counts (compared with workbench.credit.find_critical)")


# ----- lab 06: kernels and performance ---------------------------------------------------------
STREAM_BLOCKS = (1, 7, 16)


def streaming_cases() -> list[tuple[torch.Tensor, str]]:
    """Rows [V] for the streaming exercises: the worked example, random rows, one whose largest
    logit comes last (the running maximum must grow) and one too large for exp without it."""
    rising = torch.linspace(-100.0, 100.0, RANDOM_VOCAB)
    huge = 1000.0 + random_logits(1)[1]
    return ([(torch.tensor(EXAMPLE_LOGITS), "the worked example " + describe(torch.tensor(EXAMPLE_LOGITS)))]
            + [(logits, describe(logits)) for logits in random_logits()]
            + [(rising, "z rising from -100 to 100 (the maximum comes last)"), (huge, "z around 1000 (exp overflows)")])


def check_streaming(name: str, fn, reference) -> None:
    """fn(z [V], block) -> number, against `reference(VocabStats)` for every row of streaming_cases and block size."""
    for logits, where in streaming_cases():
        expected = float(reference(vocab_stats_reference(logits[None], None)))
        for block in STREAM_BLOCKS:
            expect_number(name, fn(logits.clone(), block), expected, f"{where}, block = {block}")
    print(f"{name}: correct on the worked example, random rows and two hard rows, in blocks of "
          f"{', '.join(map(str, STREAM_BLOCKS))} (compared with workbench.kernels.vocab_stats_reference)")


def check_streaming_lse(streaming_lse) -> None:
    """streaming_lse(z [V], block) -> logsumexp(z), from a running maximum m and S0 = sum e^(z - m)
    over blocks, S0 rescaled by e^(m_old - m_new) when m grows. docs/signals.md: z = (2, 1, 0, -1) -> 2.44019."""
    check_streaming("streaming_lse", streaming_lse, lambda stats: stats.lse[0])


def check_streaming_entropy(streaming_entropy) -> None:
    """streaming_entropy(z [V], block) -> H = lse - S1 / S0 with S1 = sum e^(z - m) z, in one pass.
    docs/signals.md: z = (2, 1, 0, -1) -> .947537."""
    check_streaming("streaming_entropy", streaming_entropy, lambda stats: stats.entropy[0])


def check_roofline_ms(roofline) -> None:
    """roofline(bytes_moved, flop, peak_tbps, peak_tflops) -> the least time in ms a kernel can take:
    max(bytes / bandwidth, flop / peak compute) (`workbench.bench.timing.roofline_ms`)."""
    cases = [(2e9, 1e9, 3.35, 989.0), (1e6, 1e13, 3.35, 989.0), (4e8, 4e11, 1.0, 100.0)]
    for moved, flop, tbps, tflops in cases:
        expected = roofline_ms((moved, flop), {"peak_tbps": tbps, "peak_tflops": tflops})
        expect_number("roofline", roofline(moved, flop, tbps, tflops), expected,
                      f"bytes = {moved:g}, flop = {flop:g}, {tbps} TB/s, {tflops} TFLOP/s")
    print(f"roofline: correct on {len(cases)} kernels, memory- and compute-bound (compared with workbench.bench.timing.roofline_ms)")


# ----- lab 07: comparing two predictors ---------------------------------------------------------
PAIR_EXAMPLES = (  # the worked examples of docs/signals.md: (z_p, z_q, statistic -> value)
    ((2.0, 1.0, 0.0, -1.0), (0.0, 2.0, 0.0, -1.0), {"kl": 0.888734}),
    (tuple(torch.tensor([0.5, 0.3, 0.2]).log().tolist()), tuple(torch.tensor([0.2, 0.3, 0.5]).log().tolist()),
     {"acceptance": 0.7}),
)


def check_pair_statistic(name: str, fn, field: str) -> None:
    """fn(z_p [V], z_q [V]) -> a number against the worked examples that give `name` and against
    `divergence_reference` (its `field`) on random pairs of logits."""
    for z_p, z_q, values in PAIR_EXAMPLES:
        if name in values:
            z_p, z_q = torch.tensor(z_p), torch.tensor(z_q)
            expect_number(name, fn(z_p.clone(), z_q.clone()), values[name],
                          f"the worked example with p from {describe(z_p)} and q from {describe(z_q)}")
    randoms = random_logits(1)
    for z_p, z_q in zip(random_logits(), randoms[1:] + randoms[:1]):
        expected = getattr(divergence_reference(z_p[None], z_q[None], js=False, overlap=True), field)[0]
        expect_number(name, fn(z_p.clone(), z_q.clone()), float(expected), f"p from {describe(z_p)} and q from another {describe(z_q)}")
    passed(name, "workbench.kernels.divergence_reference")


def check_kl(kl) -> None:
    """kl(z_p [V], z_q [V]) -> KL(p||q) = sum_v p_v log(p_v / q_v), p = softmax(z_p), q = softmax(z_q).
    docs/signals.md: p = softmax(2, 1, 0, -1), q = softmax(0, 2, 0, -1) -> .888734."""
    check_pair_statistic("kl", kl, "kl_pq")


def check_acceptance(acceptance) -> None:
    """acceptance(z_p [V], z_q [V]) -> sum_v min(p_v, q_v) = 1 - TV(p, q): the probability that
    speculative sampling accepts a token drafted from q for the target p (Leviathan et al. 2023).
    docs/signals.md: p = (.5, .3, .2), q = (.2, .3, .5) -> .7."""
    check_pair_statistic("acceptance", acceptance, "overlap")


# ----- Lab 10 · Uncertainty estimators (notebooks/10_uncertainty.ipynb) -------------------------
# Sequence scores from per-token values, against workbench.estimators (the SAR vector of docs/signals.md).
import math  # noqa: E402  (this lab's block stands alone at the end of the file)

__all__ += ["check_perplexity", "check_token_sar", "check_auroc"]

SAR_EXAMPLE = ((0.1, 2.0, 0.5), (0.1, 0.8, 0.1), 1.66)  # NLL, relevance -> TokenSAR (docs/signals.md)


def random_surprisals(seed: int = 0) -> list[torch.Tensor]:
    """A few surprisal vectors s [N] (nats), of lengths 3, 8 and 20, the same in every run."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=generator, dtype=torch.float64) * 4 for n in (3, 8, 20)]


def describe_named(name: str, values) -> str:
    values = torch.as_tensor(values, dtype=torch.float64).tolist()
    shown = ", ".join(f"{v:.3g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
    return f"{name} = ({shown}) [{len(values)}]"


def check_perplexity(perplexity) -> None:
    """perplexity(s [N]) -> exp((1/N) sum_t s_t), s_t = -log p(y_t | y_<t) the surprisal of each token.
    Two tokens of probability 1/2 each: s = (log 2, log 2) -> 2."""
    from .estimators import combine

    halves = torch.full((2,), math.log(2), dtype=torch.float64)
    expect_number("perplexity", perplexity(halves.clone()), 2.0, f"the worked example {describe_named('s', halves)}")
    for s in random_surprisals():
        expect_number("perplexity", perplexity(s.clone()), combine("exp mean", s.numpy()), describe_named("s", s))
    passed_estimator("perplexity", "workbench.estimators.perplexity")


def check_token_sar(token_sar) -> None:
    """token_sar(nll [N], relevance [N]) -> sum_t (R_t / sum_k R_k) nll_t (Duan et al. 2024).
    docs/signals.md: NLL (.1, 2, .5), R (.1, .8, .1) -> 1.66."""
    from .estimators.sar import relevance_weighted

    nll, relevance = (torch.tensor(v, dtype=torch.float64) for v in SAR_EXAMPLE[:2])
    cases = [(nll, relevance, SAR_EXAMPLE[2], "the worked example ")]
    generator = torch.Generator().manual_seed(1)
    for s in random_surprisals(1):
        r = torch.rand(len(s), generator=generator, dtype=torch.float64)
        cases.append((s, r, float(relevance_weighted(s.numpy(), r.numpy()).sum()), ""))
    for nll, relevance, expected, source in cases:
        where = f"{source}{describe_named('nll', nll)}, {describe_named('R', relevance)}"
        expect_number("token_sar", token_sar(nll.clone(), relevance.clone()), expected, where)
    passed_estimator("token_sar", "workbench.estimators.sar.relevance_weighted")


def check_auroc(auroc) -> None:
    """auroc(u [n], correct [n] bool) -> the probability that a wrong answer has a higher
    uncertainty u than a right one, ties counting 1/2."""
    from .estimators import auroc as reference

    generator = torch.Generator().manual_seed(2)
    cases = [(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([True, True, False, False])),
             (torch.tensor([1.0, 1.0, 2.0]), torch.tensor([True, False, False]))]  # a tie
    for n in (10, 30):
        cases.append((torch.randint(0, 5, (n,), generator=generator).double(), torch.rand(n, generator=generator) < 0.5))
    for u, correct in cases:
        where = f"{describe_named('u', u)}, correct = {correct.int().tolist()}"
        expect_number("auroc", auroc(u.clone(), correct.clone()), reference(u.numpy(), correct.numpy()), where)
    passed_estimator("auroc", "workbench.estimators.auroc")


def passed_estimator(name: str, reference: str) -> None:
    print(f"{name}: correct on the worked examples and random inputs (compared with {reference})")


# ----- Lab 11 · a corpus (notebooks/11_corpus.ipynb) ----------------------------------------
# Each document's perplexity from token rows, and RHO-1's selection threshold; compared with the
# corpus aggregates (`workbench.corpus.documents.document_figures`, `workbench.corpus.aggregates`).
CORPUS_EXAMPLE = {"doc_id": [0, 0, 0, 1, 1], "surprisal": [None, 1.0, 3.0, None, 0.5]}  # -> exp(2), exp(0.5)


def random_token_rows(seed: int = 0):
    """Token rows (doc_id, surprisal) of a few documents of random lengths; each document's
    first token has no prediction (<NA>), as in a corpus folder."""
    import numpy as np
    import pandas as pd

    generator = np.random.default_rng(seed)
    lengths = generator.integers(2, 12, size=6)
    doc_ids = np.repeat(np.arange(len(lengths)), lengths)
    surprisal = pd.array(generator.gamma(2.0, 1.5, size=len(doc_ids)), dtype="Float64")
    firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    surprisal[firsts] = pd.NA
    return pd.DataFrame({"doc_id": doc_ids, "surprisal": surprisal})


def expect_series(name: str, got, expected, where: str, key: str) -> None:
    """Raise LabCheckError unless `got` is a Series with `expected`'s index (each `key`) and,
    key by key, its values within TOLERANCE."""
    import pandas as pd

    if not isinstance(got, pd.Series) or sorted(got.index) != sorted(expected.index):
        raise LabCheckError(f"{name} on {where}: expected a Series indexed by {key} {list(expected.index)}, got "
                            f"{type(got).__name__}" + (f" indexed by {list(got.index)}" if isinstance(got, pd.Series)
                                                       else ""))
    for index, value in expected.items():
        expect_number(f"{name} of {key} {index}", got[index], float(value), where)


def check_document_perplexity(document_perplexity) -> None:
    """document_perplexity(tokens) -> one perplexity per doc_id (a Series indexed by doc_id):
    exp of the mean surprisal over the document's tokens that have a prediction.
    Worked example: surprisals (-, 1, 3) and (-, .5) -> exp(2) = 7.389, exp(.5) = 1.649."""
    import pandas as pd

    from .corpus.documents import document_figures

    for where, tokens in [("the worked example", pd.DataFrame(CORPUS_EXAMPLE).astype({"surprisal": "Float64"})),
                          *((f"random rows (seed {s})", random_token_rows(s)) for s in range(3))]:
        expect_series("document_perplexity", document_perplexity(tokens.copy()),
                      document_figures(tokens)["perplexity"], where, "document")
    passed("document_perplexity", "workbench.corpus.documents.document_figures")


def check_rho1_threshold(rho1_threshold) -> None:
    """rho1_threshold(excess [n] numpy, fraction) -> the excess loss at or above which a token
    is selected: the k-th largest value, k = ceil(fraction * n) (RHO-1, Lin et al. 2024).
    Worked example: (.5, -1, 2, 0, 3), fraction .4 -> k = 2 -> 2.0."""
    import math

    import numpy as np

    cases = [("the worked example (.5, -1, 2, 0, 3)", np.array([0.5, -1.0, 2.0, 0.0, 3.0]), 0.4)]
    generator = np.random.default_rng(0)
    cases += [(f"{n} random values, fraction {f}", generator.normal(size=n), f) for n, f in ((100, 0.1), (37, 0.6))]
    for where, values, fraction in cases:
        k = math.ceil(fraction * len(values))
        expect_number("rho1_threshold", rho1_threshold(values.copy(), fraction), float(np.sort(values)[::-1][k - 1]),
                      where)
    passed("rho1_threshold", "the k-th largest excess loss, as workbench.corpus.aggregates.rho1_selection")


def check_selected_share(selected_share) -> None:
    """selected_share(token_ids [n], excess [n], threshold) -> a Series indexed by token id: the
    share of each token id's occurrences whose excess loss is >= threshold (which token ids
    RHO-1 keeps training on). Worked example: ids (7, 7, 9, 9, 9), excess (3, 0, 2, 2, -1),
    threshold 2 -> 7: .5, 9: 2/3."""
    import numpy as np
    import pandas as pd

    generator = np.random.default_rng(1)
    cases = [("the worked example", np.array([7, 7, 9, 9, 9]), np.array([3.0, 0.0, 2.0, 2.0, -1.0]), 2.0),
             ("60 random tokens", generator.integers(0, 8, 60), generator.normal(size=60), 0.5)]
    for where, token_ids, excess, threshold in cases:
        expect_series("selected_share", selected_share(token_ids.copy(), excess.copy(), threshold),
                      pd.Series(excess >= threshold).groupby(token_ids).mean(), where, "token id")
    passed("selected_share", "pandas' groupby mean of (excess >= threshold), as rho1_selection's by_token_id")


__all__ += ["check_document_perplexity", "check_rho1_threshold", "check_selected_share"]


# ----- Lab 08: speculative sampling (notebooks/08_speculative.ipynb) -----------------------------
SPECULATIVE_P = (0.5, 0.3, 0.2)  # docs/signals.md's worked example: target p and draft q
SPECULATIVE_Q = (0.2, 0.3, 0.5)


def random_pairs(seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(p, q) distributions [V] of the random logits, each with a perturbed copy as the draft."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.softmax(z, -1), torch.softmax(z + torch.randn(z.shape, generator=generator), -1))
            for z in random_logits(seed)]


def check_accept_probability(accept_probability) -> None:
    """accept_probability(p [V], q [V], token) -> min(1, p[token] / q[token]): the chance that a
    drafted token, drawn from q, is kept (Leviathan et al. 2023). docs/signals.md: p = (.5, .3, .2),
    q = (.2, .3, .5): token 0 -> 1, token 1 -> 1, token 2 -> .4."""
    p, q = torch.tensor(SPECULATIVE_P), torch.tensor(SPECULATIVE_Q)
    cases = [(p, q, token, expected, "the worked example") for token, expected in enumerate((1.0, 1.0, 0.4))]
    cases += [(p, q, token, min(1.0, float(p[token] / q[token])), "random p, q") for p, q in random_pairs()
              for token in q.argsort(descending=True)[:3].tolist()]
    for p, q, token, expected, where in cases:
        expect_number("accept_probability", accept_probability(p.clone(), q.clone(), token), expected,
                      f"{where}, token {token} (p = {float(p[token]):.4g}, q = {float(q[token]):.4g})")
    passed("accept_probability", "min(1, p / q)")


def check_acceptance_rate(acceptance_rate) -> None:
    """acceptance_rate(p [V], q [V]) -> alpha = sum_v min(p_v, q_v): the probability that a token
    drawn from q is accepted, E_q[min(1, p/q)]. docs/signals.md: p = (.5, .3, .2), q = (.2, .3, .5)
    -> .7. Compared with 1 - TV(p, q) = 1 - sum |p - q| / 2."""
    pairs = [(torch.tensor(SPECULATIVE_P), torch.tensor(SPECULATIVE_Q), "the worked example")]
    pairs += [(p, q, "random p, q") for p, q in random_pairs()] + [(p, p, "p = q") for p, _ in random_pairs()[:1]]
    for p, q, where in pairs:
        expected = 1.0 - float((p - q).abs().sum()) / 2
        expect_number("acceptance_rate", acceptance_rate(p.clone(), q.clone()), expected, f"{where} ({len(p)} tokens)")
    passed("acceptance_rate", "1 - TV(p, q)")


def check_expected_tokens(expected_tokens) -> None:  # labs 07 and 08
    """expected_tokens(alpha, gamma) -> (1 - alpha^(gamma+1)) / (1 - alpha): tokens per step with gamma
    drafts accepted independently at rate alpha, the bonus or residual token included (Leviathan et al.
    2023, eq. 1); gamma + 1 at alpha = 1. docs/signals.md: alpha .7, gamma 4 -> 2.7731."""
    cases = [(0.7, 4, 2.7731), (0.0, 4, 1.0), (1.0, 4, 5.0)]
    cases += [(alpha, gamma, sum(alpha ** i for i in range(gamma + 1))) for alpha, gamma in ((0.3, 1), (0.55, 3), (0.9, 8))]
    for alpha, gamma, expected in cases:
        try:
            got = expected_tokens(alpha, gamma)
        except ZeroDivisionError:
            raise LabCheckError(f"expected_tokens(alpha = {alpha}, gamma = {gamma}) divides by zero; at alpha = 1 "
                                "every draft is accepted: the limit is gamma + 1") from None
        expect_number("expected_tokens", got, expected, f"alpha = {alpha}, gamma = {gamma}")
    passed("expected_tokens", "sum_{i=0..gamma} alpha^i")


__all__ += ["check_accept_probability", "check_acceptance_rate"]  # check_expected_tokens: lab 07 lists it


# ----- lab 09: attribution (notebooks/09_attribution.ipynb) -----------------------------------------------
# Notation (docs/signals.md, Attribution): f the score of one target token (log p(y)), e_s the input
# embedding of source token s [d], g_s = d f / d e_s, b a baseline input.
__all__ += ["check_saliency", "check_integrated_gradients", "check_leave_one_out"]

TOY_TOKENS, TOY_WIDTH = 6, 4  # the toy inputs [T, d] of the attribution checkers


def toy_score(embeddings: torch.Tensor) -> torch.Tensor:
    """A smooth toy f(x) of inputs x [T, d] with a known gradient (`toy_gradient`):
    f = sum_{s,i} w_{s,i} tanh(x_{s,i}) with fixed weights w."""
    return (toy_weights() * torch.tanh(embeddings)).sum()


def toy_gradient(embeddings: torch.Tensor) -> torch.Tensor:
    """d f / d x [T, d] of `toy_score`: w (1 - tanh(x)^2)."""
    return toy_weights() * (1 - torch.tanh(embeddings) ** 2)


def toy_weights() -> torch.Tensor:
    return torch.randn(TOY_TOKENS, TOY_WIDTH, generator=torch.Generator().manual_seed(9), dtype=torch.float64)


def check_saliency(saliency) -> None:
    """saliency(gradients [T, d]) -> [T]: ||g_s||_2 for every source s (Simonyan et al. 2014).
    Worked example: g = ((3, 4), (0, 0), (1, 0)) -> (5, 0, 1)."""
    example = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    expected = torch.tensor([5.0, 0.0, 1.0])
    got = expect_tensor("saliency", saliency(example.clone()), expected, "the worked example g = ((3, 4), (0, 0), (1, 0))")
    for s in range(3):
        expect_number(f"saliency[{s}]", got[s], float(expected[s]), "the worked example g = ((3, 4), (0, 0), (1, 0))")
    gradients = torch.randn(TOY_TOKENS, TOY_WIDTH, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = torch.linalg.vector_norm(gradients, dim=-1)
    got = expect_tensor("saliency", saliency(gradients.clone()), reference, "random gradients [6, 4]")
    for s in range(TOY_TOKENS):
        expect_number(f"saliency[{s}]", got[s], float(reference[s]), "random gradients [6, 4]")
    print("saliency: correct on the worked example and random gradients (compared with the norm of each row)")


def check_integrated_gradients(integrated_gradients) -> None:
    """integrated_gradients(gradient_of_f, embeddings [T, d], baseline [T, d], steps) -> [T]:
    IG_s = (e_s - b_s) . (1/m) sum_{k=1..m} g_s(b + (k/m)(e - b)) (Sundararajan et al. 2017), on the
    toy f = sum w tanh(x); its sum over s must approach f(e) - f(b) as the steps grow (completeness)."""
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.randn(TOY_TOKENS, TOY_WIDTH, generator=generator, dtype=torch.float64)
    baseline = torch.zeros_like(embeddings)
    for steps in (1, 4, 32):
        alphas = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        mean_gradient = sum(toy_gradient(baseline + a * (embeddings - baseline)) for a in alphas) / steps
        reference = ((embeddings - baseline) * mean_gradient).sum(-1)
        where = f"the toy f = sum w tanh(x) on random inputs [6, 4], zero baseline, steps = {steps}"
        got = expect_tensor("integrated_gradients",
                            integrated_gradients(toy_gradient, embeddings.clone(), baseline.clone(), steps),
                            reference, where)
        for s in range(TOY_TOKENS):
            expect_number(f"integrated_gradients[{s}]", got[s], float(reference[s]), where)
    gap = float(got.sum() - (toy_score(embeddings) - toy_score(baseline)))
    print(f"completeness with 32 steps: sum_s IG_s - (f(e) - f(b)) = {gap:+.2e}")
    print("integrated_gradients: correct on a toy f at 1, 4 and 32 steps (compared with the right Riemann sum)")


def check_leave_one_out(leave_one_out) -> None:
    """leave_one_out(log_prob, context) -> [len(context)]: log_prob(context) - log_prob(context
    without token s) for every s (Li et al. 2016), log_prob(ids) the score of the target after the
    list of token ids. Checked with a toy log_prob in which order matters: each id's weight, halved
    for every token after it."""
    weights = torch.randn(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def log_prob(ids) -> float:
        ids = list(ids)
        return float(-sum(weights[i] * 0.5 ** (len(ids) - 1 - j) for j, i in enumerate(ids)) ** 2)

    for context in ([3, 7], [5, 1, 9, 4, 5]):
        where = f"a toy log_prob on the context {context}"
        reference = torch.tensor([log_prob(context) - log_prob(context[:s] + context[s + 1:])
                                  for s in range(len(context))])
        got = expect_tensor("leave_one_out", leave_one_out(log_prob, list(context)), reference, where)
        for s in range(len(context)):
            expect_number(f"leave_one_out[{s}]", got[s], float(reference[s]), where)
    print("leave_one_out: correct on two toy contexts (compared with a re-run of log_prob without each token)")
