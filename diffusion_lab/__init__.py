"""diffusion_lab: the compact, tested package behind the Diffusion Lab course.

Time is continuous, t ∈ [0, 1]; images live in [-1, 1]; a model is a noise
predictor ``eps_model(x, t, y=None)``. See the README for the course.
"""

from . import checks, data, distances, nets, oracles, tasks
from .checkpoint import Checkpoint, PickleRefusedError, load_checkpoint, save_checkpoint
from .classifier import MNISTClassifier, load_classifier
from .ddpm import DiscreteDDPM, StepSchedule, ddpm_linear_betas
from .likelihood import bits_per_dim, log_likelihood, nats_to_bits_per_dim
from .metrics import (
    energy_distance,
    fid,
    inception_score,
    kid,
    precision_recall,
    sliced_wasserstein,
)
from .model import GenerativeModel, guided_eps_model
from .nets import MLP, UNet
from .oracles import GaussianMixtureOracle, GaussianOracle, eight_gaussians_oracle
from .registry import lookup, register
from .samplers import (
    SAMPLERS,
    ancestral,
    ddim,
    dpm_solver,
    edm,
    euler_maruyama,
    exponential_integrator,
    langevin_corrector_step,
    predictor_corrector,
    probability_flow,
    sample,
)
from .schedules import (
    CosineSchedule,
    LinearSchedule,
    PowerSchedule,
    QuadraticSchedule,
    Schedule,
    SigmoidSchedule,
    get_schedule,
)
from .sde import SDE, VESDE, VPSDE, RectifiedFlow, ReverseSDE, SubVPSDE, get_sde
from .tasks import (
    classifier_free_guidance,
    colorize,
    ddim_invert,
    inpaint,
    slerp,
    super_resolve,
)
from .timegrid import time_grid
from .training import TrainResult, train
from .unipc import FEW_STEP

__version__ = "0.1.0"
