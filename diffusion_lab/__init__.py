"""diffusion_lab: the compact, tested package behind the Diffusion Lab course.

Time is continuous, t ∈ [0, 1]; images live in [-1, 1]; a model is a noise
predictor ``eps_model(x, t, y=None)``. See the README for the course.
"""

from .schedules import (
    CosineSchedule,
    LinearSchedule,
    PowerSchedule,
    QuadraticSchedule,
    Schedule,
    SigmoidSchedule,
    get_schedule,
)
from .sde import SDE, VESDE, VPSDE, ReverseSDE, SubVPSDE, get_sde
from . import oracles
from .oracles import GaussianMixtureOracle, GaussianOracle

__version__ = "0.1.0"
