"""Counter-based random numbers shared by the sampling reference and its Triton kernel, so
that both draw the same tokens for the same generator state.

Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011): a bijection of a 128-bit counter (c0, c1, c2, c3) under a 64-bit key (k0, k1),
ten rounds of

    (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0,  lo(M1 c2),  hi(M0 c0) ^ c3 ^ k1,  lo(M0 c0))
    (k0, k1) <- (k0 + W0, k1 + W1)  (mod 2^32)

with M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85. This is also
`tl.philox` (Triton's `tl.rand` family), so a kernel and this PyTorch code agree bit for bit.

Layout used by `kernels.sample`: the key is a 64-bit seed drawn from the caller's
`torch.Generator` (k0 its low, k1 its high 32 bits); token v of row b takes output v % 4
of the counter (v // 4, b, 0, 0). An output x becomes u in [0, 1) as Triton does it: x read
as int32, negatives mapped to ~x, times 4.6566127342e-10 in fp32; then the Gumbel noise is
g = -log(-log(max(u, 1e-12))).
"""
from __future__ import annotations

import torch

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
UNIFORM_SCALE = 4.6566127342e-10  # the largest scale with (2^31 - 1) * scale < 1 in fp32
U_FLOOR = 1e-12  # u = 0 would give g = -inf


def draw_seed(generator: torch.Generator | None, device) -> torch.Tensor:
    """A 63-bit seed [1] (int64, on `device`) from the generator, advancing it; the same
    generator state gives the same seed. No host synchronization on CUDA."""
    where = generator.device if generator is not None else device
    seed = torch.randint(0, 2**63 - 1, (1,), generator=generator, device=where, dtype=torch.int64)
    return seed.to(device)


def _mul32(constant: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit halves of constant * x for x < 2^32 (int64 tensors), from 16-bit
    halves of x so that no product overflows int64."""
    low_part = constant * (x & 0xFFFF)  # < 2^48
    high_part = constant * (x >> 16)  # < 2^48
    low = (low_part + ((high_part & 0xFFFF) << 16)) & MASK32
    high = (high_part + (low_part >> 16)) >> 16
    return high, low


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on int64 tensors holding unsigned 32-bit values (broadcast together)."""
    for _ in range(10):
        high_b, low_b = _mul32(M1, c2)
        high_a, low_a = _mul32(M0, c0)
        c0, c1, c2, c3 = high_b ^ c1 ^ k0, low_b, high_a ^ c3 ^ k1, low_a
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return c0, c1, c2, c3


def uniform_from_bits(x: torch.Tensor) -> torch.Tensor:
    """Unsigned 32-bit values (int64) -> fp32 in [0, 1), as `tl.rand` converts them."""
    signed = torch.where(x >= 2**31, x - 2**32, x)
    signed = torch.where(signed < 0, -signed - 1, signed)  # ~x
    return signed.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32, device=x.device)


def gumbel_noise(seed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Gumbel(0, 1) noise [rows, cols] (fp32) in the layout above, on the seed's device."""
    device = seed.device
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32  # [1]
    counter = torch.arange((cols + 3) // 4, device=device, dtype=torch.int64)[None, :]  # [1, ceil(V/4)]
    row = torch.arange(rows, device=device, dtype=torch.int64)[:, None]  # [B, 1]
    zero = torch.zeros((), dtype=torch.int64, device=device)
    bits = torch.stack(philox4x32(counter, row, zero, zero, k0, k1), dim=-1)  # [B, ceil(V/4), 4]
    u = uniform_from_bits(bits.reshape(rows, -1)[:, :cols]).clamp_min(U_FLOOR)
    return -torch.log(-torch.log(u))
