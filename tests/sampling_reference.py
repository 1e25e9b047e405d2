"""The samplers' kept sets recomputed in NumPy from DESIGN.md's definitions, and Pearson's
chi-square test of draws against them: the independent references of the sampler tests. On
the path of tests/ and tests/kernel_tests/ alike: pytest puts tests/ on sys.path for
tests/conftest.py."""
import numpy as np
import torch


def numpy_kept(z, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0):
    """Kept mask [V] and q = p * kept / sum(p * kept) [V] from the definitions, rank by rank, in
    float64: p = softmax(z / T), ranked by logit descending, lower id first among equal logits;
    rank r is kept when r < top_k, the mass ranked before it is < top_p, p_r >= min_p * p_0 and
    H(renormalized prefix 0..r) <= top_h * H(p). Rank 0 is always kept; T <= 0 keeps only it."""
    z = np.asarray(z, np.float64)
    greedy = temperature <= 0
    s = z / (1.0 if greedy else temperature)
    p = np.exp(s - s.max())
    p /= p.sum()
    order = np.argsort(-z, kind="stable")
    ps = p[order]
    H = -(p[p > 0] * np.log(p[p > 0])).sum()
    keep = np.zeros(len(z), bool)
    for r, v in enumerate(order):
        ok = (top_k == 0 or r < top_k) and (top_p >= 1 or ps[:r].sum() < top_p) and ps[r] >= min_p * ps[0]
        if top_h:
            q = ps[: r + 1] / ps[: r + 1].sum()
            q = q[q > 0]
            ok = ok and -(q * np.log(q)).sum() <= top_h * H + 1e-6
        keep[v] = (ok and not greedy) or r == 0
    q = np.where(keep, p, 0.0)
    return keep, q / q.sum()


def chi_square_pvalue(counts, expected):
    """Pearson's test: P(chi2_df >= sum (counts - expected)^2 / expected), df = cells - 1,
    with the cells expecting fewer than 5 draws pooled into one."""
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    statistic = ((counts - expected) ** 2 / expected).sum()
    df = len(counts) - 1
    return torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                   torch.tensor(statistic / 2, dtype=torch.float64)).item()
