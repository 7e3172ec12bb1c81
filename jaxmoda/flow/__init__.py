"""Flow-matching and diffusion objectives shared by the jaxmoda models.

Convention: data at t=0, noise at t=1. Models are called as
apply_fn(x_t, t, cond) with t float32 [B] in [0, 1].
"""

from jaxmoda.flow.ddpm import DDPM, DDPMSchedule, ddim_sample, epsilon_loss, linear_schedule, q_sample
from jaxmoda.flow.guidance import combine, drop_condition, guided_apply_fn
from jaxmoda.flow.losses import masked_mse
from jaxmoda.flow.objective import Objective, default_objective_config, make_objective
from jaxmoda.flow.rectified import RectifiedFlow, interpolate, velocity_loss, velocity_target
from jaxmoda.flow.samplers import euler_sample, heun_sample, integrate
from jaxmoda.flow.timesteps import sample_time, sampling_grid, shift_time

__all__ = [
    "DDPM",
    "DDPMSchedule",
    "Objective",
    "RectifiedFlow",
    "combine",
    "ddim_sample",
    "default_objective_config",
    "drop_condition",
    "epsilon_loss",
    "euler_sample",
    "guided_apply_fn",
    "heun_sample",
    "integrate",
    "interpolate",
    "linear_schedule",
    "make_objective",
    "masked_mse",
    "q_sample",
    "sample_time",
    "sampling_grid",
    "shift_time",
    "velocity_loss",
    "velocity_target",
]
