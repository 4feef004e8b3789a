"""Samplers: each a small class behind :class:`Sampler`'s ``step()``; the loop does not know which it drives."""

from DiffSegExtension.diffusion.samplers.base import Sampler
from DiffSegExtension.diffusion.samplers.ddim import DDIMSampler
from DiffSegExtension.diffusion.samplers.ddpm import DDPMSampler
from DiffSegExtension.diffusion.samplers.dpmpp import DPMSolverPP2MSampler
from DiffSegExtension.diffusion.samplers.student import StudentSampler

SAMPLERS: dict[str, type[Sampler]] = {"ddpm": DDPMSampler, "ddim": DDIMSampler, "dpmpp": DPMSolverPP2MSampler,
                                   "student": StudentSampler}


def make_sampler(name: str, schedule, steps: int, **options) -> Sampler:
    """A sampler by name (``ddpm``, ``ddim``, ``dpmpp``, ``student``) over ``steps`` respaced timesteps."""
    from DiffSegExtension.errors import DiffSegInputError

    if name not in SAMPLERS:
        raise DiffSegInputError(f"unknown sampler '{name}': choose one of {sorted(SAMPLERS)}")
    if not 1 <= steps <= schedule.num_timesteps:
        raise DiffSegInputError(f"--steps must be between 1 and {schedule.num_timesteps}, got {steps}")
    return SAMPLERS[name](schedule, steps, **options)


__all__ = ["Sampler", "DDPMSampler", "DDIMSampler", "DPMSolverPP2MSampler", "StudentSampler", "SAMPLERS", "make_sampler"]
