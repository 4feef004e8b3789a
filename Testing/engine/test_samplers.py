"""Every sampler recovers a known mask from an oracle network; DDIM matches MONAI; determinism."""

import pytest
import torch

from DiffSegExtension.config import DiffusionConfig
from DiffSegExtension.diffusion.sampling import sample_generators, sample_masks
from DiffSegExtension.diffusion.samplers import SAMPLERS, make_sampler
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import binarise
from DiffSegExtension.errors import DiffSegInputError


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.from_config(DiffusionConfig())


class OracleNetwork(torch.nn.Module):
    """Returns the exact training target for a known x0 (ε, or v = √ᾱ ε − √(1 − ᾱ) x0, per the
    schedule's ``prediction``) and 0 for the variance channel (the middle of the learned range)."""

    def __init__(self, schedule, x0):
        super().__init__()
        self.schedule, self.x0 = schedule, x0

    def forward(self, x, t):
        xt = x[:, -1:]
        x0 = self.x0.expand_as(xt)
        eps = self.schedule.predict_eps(xt, t, x0)
        return torch.cat([self.schedule.training_target(x0, eps, t), torch.zeros_like(eps)], dim=1)


def known_mask(batch=3, size=16):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - 7.5) ** 2 + (xx - 5.5) ** 2 < 20).float()
    return (2 * disc - 1).expand(batch, 1, size, size).clone()


@pytest.mark.parametrize("name,steps", [("ddpm", 1000), ("ddpm", 50), ("ddim", 10), ("ddim", 5), ("dpmpp", 10), ("dpmpp", 20)])
def test_oracle_network_is_recovered_by_every_sampler(schedule, name, steps):
    x0 = known_mask()
    condition = torch.zeros(3, 2, 16, 16)
    sampler = make_sampler(name, schedule, steps)
    generators = sample_generators(0, [(0, m) for m in range(3)])
    calls = []
    out = sample_masks(OracleNetwork(schedule, x0), condition, sampler, generators, on_step=lambda: calls.append(1))
    assert len(calls) == steps, "one network pass per step"
    assert torch.equal(binarise(out), (x0 > 0).float())
    assert torch.allclose(out, x0, atol=0.05)


def test_ddim_eta0_is_deterministic_and_eta1_is_not(schedule):
    class Blurry(torch.nn.Module):  # an imperfect network: predicts ε from a wrong, smooth x0
        def forward(self, x, t):
            xt = x[:, -1:]
            guess = torch.tanh(3 * torch.nn.functional.avg_pool2d(xt, 5, 1, 2))
            return schedule.predict_eps(xt, t, guess)

    condition = torch.zeros(2, 1, 16, 16)

    def run(eta, seed):
        return sample_masks(Blurry(), condition, make_sampler("ddim", schedule, 10, eta=eta),
                            sample_generators(seed, [(0, 0), (0, 1)]))

    assert torch.equal(run(0.0, 1), run(0.0, 1))
    assert not torch.equal(run(0.0, 1), run(0.0, 2)), "members differ through their start noise"
    # With η > 0 the trajectory depends on per-step noise too; same seed still reproduces it.
    assert torch.equal(run(1.0, 1), run(1.0, 1))
    assert not torch.allclose(run(1.0, 1), run(0.0, 1))


def test_ddim_matches_monai_scheduler(schedule):
    """Our DDIM update equals MONAI's DDIMScheduler.step between the same two training timesteps.

    MONAI steps from t to t − T//K (even where its own grid is spaced differently), so our sampler
    is respaced onto exactly that pair. x_t is built from an x0 inside [−1, 1], so our x̂_0 clipping
    does not come into play.
    """
    from monai.networks.schedulers import DDIMScheduler

    monai = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", beta_start=1e-4, beta_end=0.02,
                          clip_sample=False)
    monai.set_timesteps(10)
    ours = make_sampler("ddim", schedule, 10)
    assert ours.timesteps == sorted(int(t) for t in monai.timesteps), "same respacing grid (999, 888, …, 0)"
    g = torch.Generator().manual_seed(3)
    for t_now in (999, 555, 111):
        ours.timesteps = [t_now - 100, t_now]
        ours.schedule = schedule.respace(ours.timesteps)
        x0 = 0.5 * torch.tanh(torch.randn(1, 1, 4, 4, generator=g))
        eps = torch.randn(1, 1, 4, 4, generator=g)
        x = schedule.q_sample(x0, torch.tensor([t_now]), eps)
        expected, _ = monai.step(eps, t_now, x)
        got = ours.step(eps, 1, x, [torch.Generator()])
        assert torch.allclose(got, expected, atol=1e-5), t_now


def test_samples_do_not_depend_on_batch_composition(schedule):
    class Smooth(torch.nn.Module):
        def forward(self, x, t):
            return torch.cat([0.5 * x[:, -1:] + 0.1 * x[:, :1], torch.zeros_like(x[:, :1])], dim=1)

    cond = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    keys = [(s, m) for s in range(2) for m in range(2)]
    whole = sample_masks(Smooth(), cond, make_sampler("ddpm", schedule, 20), sample_generators(7, keys))
    part = sample_masks(Smooth(), cond[2:], make_sampler("ddpm", schedule, 20), sample_generators(7, keys[2:]))
    assert torch.allclose(whole[2:], part, atol=1e-6)


def test_make_sampler_rejects_bad_arguments(schedule):
    assert set(SAMPLERS) == {"ddpm", "ddim", "dpmpp", "student"}
    with pytest.raises(DiffSegInputError, match="unknown sampler"):
        make_sampler("euler", schedule, 10)
    with pytest.raises(DiffSegInputError, match="steps"):
        make_sampler("ddim", schedule, 0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_single_step_returns_the_x0_prediction(schedule, name):
    x0 = known_mask(batch=1)
    out = sample_masks(OracleNetwork(schedule, x0), torch.zeros(1, 1, 16, 16), make_sampler(name, schedule, 1),
                       sample_generators(0, [(0, 0)]))
    assert torch.allclose(out, x0, atol=1e-3)


@pytest.mark.parametrize("name,steps", [("ddpm", 50), ("ddim", 10), ("dpmpp", 10), ("student", 2)])
def test_v_prediction_oracle_is_recovered(name, steps):
    v_schedule = NoiseSchedule.from_config(DiffusionConfig(prediction="v"))
    x0 = known_mask()
    out = sample_masks(OracleNetwork(v_schedule, x0), torch.zeros(3, 1, 16, 16), make_sampler(name, v_schedule, steps),
                       sample_generators(0, [(0, m) for m in range(3)]))
    assert torch.equal(binarise(out), (x0 > 0).float())


def test_v_target_and_epsilon_conversion_are_inverse():
    v_schedule = NoiseSchedule.from_config(DiffusionConfig(prediction="v"))
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 1, 5, 5, generator=g), torch.randn(4, 1, 5, 5, generator=g)
    t = torch.tensor([0, 100, 600, 999])
    xt = v_schedule.q_sample(x0, t, eps)
    v = v_schedule.training_target(x0, eps, t)
    assert torch.allclose(v_schedule.epsilon_from_prediction(v, xt, t), eps, atol=1e-4)
    # The respaced schedule keeps the parameterisation.
    assert v_schedule.respace([0, 500, 999]).prediction == "v"
