r"""DPM-Solver++ multistep of order 1–3, deterministic (η = 0) or stochastic (η > 0).

Written in x̃ = x/m and σ̃ = σ/m = e^{−λ} (λ = log(m/σ)), the data-prediction form of the
reverse SDE with the noise scaled by η (η = 0: the probability-flow ODE, η = 1: the reverse
SDE; Lu et al. 2022b; k-diffusion's ``sample_dpmpp_3m_sde``) is integrated exactly in its
linear part. With h = λ_t − λ_s > 0, ĥ = (1 + η) h and D = x̂_0 frozen over the step:

    x̃_t = e^{−ĥ} x̃_s + (1 − e^{−ĥ}) D_0 + σ̃_t √(1 − e^{−2ηh}) z            (order 1)

Higher orders expand x̂_0(λ) in λ from the history x̂_0,i, x̂_0,i−1, x̂_0,i−2 (steps h_0 = h_{i−1},
h_1 = h_{i−2}, r_k = h_k/h):

    2M:  + ½(1 − e^{−ĥ}) d,    d = (x̂_0,i − x̂_0,i−1)/r_0          (the midpoint rule, as 2M)
    3M:  + φ_2 d_1 − 2 φ_3 d_2,  d1_0 = (x̂_0,i − x̂_0,i−1)/r_0,  d1_1 = (x̂_0,i−1 − x̂_0,i−2)/r_1,
         d_1 = d1_0 + r_0 (d1_0 − d1_1)/(r_0 + r_1),  d_2 = (d1_0 − d1_1)/(r_0 + r_1),
         φ_2 = (e^{−ĥ} − 1)/ĥ + 1,  φ_3 = φ_2/ĥ − ½.

Why 2 φ_3: with x̂_0(λ_s + u) = a + b u + c u²/2 and equal steps, d_1 = b h and d_2 = c h²/2,
while the exact term is ∫_0^ĥ e^{−(ĥ−v)} c v²/2 dv = c h² · (ĥ² − 2ĥ + 2 − 2e^{−ĥ})/(2ĥ²)
= −2 φ_3 d_2 exactly. diffusers 0.42 (``multistep_dpm_solver_third_order_update``) and
k-diffusion use −φ_3 d_2; with that coefficient the step's local error falls only as h^3.3–3.5
instead of h⁴ (tests/test_edm_design.py measures both).

Why any η ≥ 0 keeps the marginals: the order-1 step above is the exact solution, D frozen, of

    dx̃ = −(1 + η)(x̃ − D) dλ + √(2η) σ̃ dW_λ
       = [−(x̃ − D) dλ]  +  η [σ̃² ∇log p̃ dλ + √2 σ̃ dW_λ]      (x̃ − D = −σ̃² ∇log p̃),

the probability-flow ODE plus η units of Langevin dynamics (step σ̃² dλ) per unit of λ; Langevin
leaves p̃_λ invariant, so every η gives the same marginals (η = 1 is the reverse SDE; η > 1 adds
more noise per step and forgets more of the past state: e^{−ĥ} → 0 as η → ∞, where the step
becomes x̃_t = D + σ̃_t z). Checked with the exact oracles for η up to 3
(tests/test_few_step.py).

At η = 0 and order ≤ 2 this is exactly :func:`diffusion_lab.samplers.dpm_solver`'s 2M. A step is
taken in lower order when the history is short or when the step grew by more than
1/``DPM_MIN_STEP_RATIO`` over the one before (the rule of the 2M sampler, applied to each of
the ratios the order uses). One network call per step.
"""

from __future__ import annotations

import math

from torch import Tensor

MIN_STEP_RATIO = 0.7  # = samplers.DPM_MIN_STEP_RATIO (kept equal by a test)


def effective_order(order: int, hs: list[float]) -> int:
    """The order the step with increments ``hs`` (oldest first, the current last) may use."""
    k = min(order, len(hs))
    while k > 1 and any(hs[-j - 1] / hs[-j] < MIN_STEP_RATIO for j in range(1, k)):
        k -= 1
    return k


def multistep_update(xt: Tensor, x0s: list[Tensor], hs: list[float], sig_t: float, eta: float,
                     order: int, noise: Tensor | None) -> Tensor:
    r"""One DPM-Solver++(kM) step in x̃: ``x0s`` and ``hs`` hold the recent x̂_0 and λ-steps,
    oldest first, the current step's last. Returns x̃_t (noise added iff η > 0)."""
    h = hs[-1]
    hh = (1.0 + eta) * h
    one_minus = -math.expm1(-hh)  # 1 − e^{−ĥ}
    x = math.exp(-hh) * xt + one_minus * x0s[-1]
    k = effective_order(order, hs)
    if k == 2:
        r0 = hs[-2] / h
        x = x + (0.5 * one_minus / r0) * (x0s[-1] - x0s[-2])
    elif k == 3:
        r0, r1 = hs[-2] / h, hs[-3] / h
        d1_0 = (x0s[-1] - x0s[-2]) / r0
        d1_1 = (x0s[-2] - x0s[-3]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi2 = -one_minus / hh + 1.0
        phi3 = phi2 / hh - 0.5
        x = x + phi2 * d1 - 2.0 * phi3 * d2
    if eta > 0:
        if noise is None:
            raise ValueError("multistep_update: eta > 0 needs noise")
        x = x + sig_t * math.sqrt(-math.expm1(-2.0 * eta * h)) * noise
    return x
