r"""Checkers for the exercises of lessons 01–09, 11 and 12 (``exercises/NN_topic.ipynb``).

Each ``check_<name>(fn)`` calls the learner's function on seeded random inputs,
compares the result with the package (or a closed form / an exact oracle) and
prints one line:

    ✓ q_sample matches the closed form on 5 random cases
    ✗ q_sample: a square root is missing: you used ᾱ where √ᾱ belongs (variance vs std)
    … q_sample: not implemented yet: hint: x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε

and returns ``True`` (pass) or ``False``. A checker never raises because of the
learner's code: an exception inside ``fn`` is reported in one line. Wrong
answers are *diagnosed* by computing the typical mistakes (a dropped square
root, a flipped sign, a factor of 2, β instead of ᾱ, …) and seeing whether the
learner's result equals one of them.

One module per lesson (``forward`` 01, ``schedules`` 02, ``reverse`` 03, ``unet`` 04,
``sde`` 05, ``samplers`` 06, ``controllable`` 07, ``evaluation`` 08, ``interpolation`` 09,
``flow`` 11, ``edm`` 12); the shared machinery is in ``_common``.
"""

from __future__ import annotations

from ._common import F64, FAIL, PASS, TODO, checker  # noqa: F401 - the old module's names
from .controllable import (
    check_cfg_eps,
    check_gaussian_conditional,
    check_replacement_step,
    check_x0_projection_step,
)
from .edm import (
    check_churn,
    check_edm_heun_step,
    check_edm_preconditioning,
    check_karras_sigmas,
    check_unic1_step,
)
from .evaluation import (
    check_bits_per_dim,
    check_frechet_distance,
    check_hutchinson_divergence,
    check_kid_mmd,
    check_nn_distance_ratio,
)
from .flow import (
    check_conditional_velocity,
    check_flow_euler_step,
    check_straightness,
    check_velocity_to_eps,
)
from .forward import (
    check_alpha_bars,
    check_forward_step,
    check_q_sample,
)
from .interpolation import (
    check_ddim_invert_step,
    check_linear_mix_norm,
    check_sdedit_encode,
    check_slerp,
)
from .reverse import (
    check_ancestral_mean,
    check_gaussian_kl,
    check_posterior,
    check_predict_x0,
)
from .samplers import (
    check_corrector_step_size,
    check_ddim_step,
    check_dpm_solver_2m,
    check_dpm_solver_pp1_step,
)
from .schedules import (
    check_cosine_integral,
    check_custom_schedule,
    check_discrete_betas,
    check_linear_integral,
)
from .sde import (
    check_gaussian_score,
    check_langevin_step,
    check_pf_drift,
    check_reverse_em_step,
    check_vp_marginal,
)
from .unet import (
    check_attention,
    check_resblock_params,
    check_time_embedding,
)

__all__ = [
    "check_alpha_bars", "check_q_sample", "check_forward_step",
    "check_linear_integral", "check_cosine_integral", "check_discrete_betas",
    "check_custom_schedule",
    "check_posterior", "check_predict_x0", "check_ancestral_mean", "check_gaussian_kl",
    "check_time_embedding", "check_resblock_params", "check_attention",
    "check_gaussian_score", "check_vp_marginal", "check_reverse_em_step",
    "check_pf_drift", "check_langevin_step",
    "check_ddim_step", "check_dpm_solver_pp1_step", "check_dpm_solver_2m",
    "check_corrector_step_size",
    "check_conditional_velocity", "check_velocity_to_eps", "check_flow_euler_step",
    "check_straightness",
    "check_slerp", "check_ddim_invert_step", "check_sdedit_encode", "check_linear_mix_norm",
    "check_frechet_distance", "check_hutchinson_divergence", "check_bits_per_dim",
    "check_kid_mmd", "check_nn_distance_ratio",
    "check_karras_sigmas", "check_edm_preconditioning", "check_edm_heun_step", "check_churn",
    "check_unic1_step",
    "check_replacement_step", "check_gaussian_conditional", "check_x0_projection_step",
    "check_cfg_eps",
]

# issue 9: exercises that mirror the lessons' loops and the Tweedie / DSM bridge
from .reverse import check_l_simple_loss, check_tweedie_x0  # noqa: E402
from .samplers import check_ancestral_loop, check_ddim_loop  # noqa: E402
from .sde import check_dsm_loss  # noqa: E402

__all__ += ["check_l_simple_loss", "check_tweedie_x0", "check_dsm_loss", "check_ddim_loop",
            "check_ancestral_loop"]
