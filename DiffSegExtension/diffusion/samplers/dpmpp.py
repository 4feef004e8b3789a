"""DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep solver of the probability-flow ODE in
data (x̂_0) prediction, which suits clipping; deterministic given the start noise."""

from __future__ import annotations

import torch

from DiffSegExtension.diffusion.samplers.base import Sampler


class DPMSolverPP2MSampler(Sampler):
    """Steps between respaced timesteps in λ = log(α/σ) with α = √ᾱ, σ = √(1 − ᾱ).

    The first step is first order (DDIM); later ones combine the last two x̂_0 predictions.
    With ``lower_order_final`` (default for < 15 steps, as in diffusers) the last ODE step is first
    order too, which is more stable at few steps. After the pass at t_0 the output is x̂_0(t_0).
    """

    def __init__(self, schedule, steps: int, lower_order_final: bool | None = None):
        super().__init__(schedule, steps)
        self.lower_order_final = len(self) < 15 if lower_order_final is None else lower_order_final
        a = self.schedule.alphas_cumprod.double()
        self.alpha, self.sigma = a.sqrt(), (1 - a).sqrt()
        self.lam = torch.log(self.alpha) - torch.log(self.sigma)
        self._previous: tuple[int, torch.Tensor] | None = None  # (k, x̂_0) of the last step

    def step(self, model_output, k, x, generators):
        x0 = self.predict_x0(model_output[:, :x.shape[1]], k, x)
        if k == 0:
            return x0
        s, t = k, k - 1
        h = float(self.lam[t] - self.lam[s])
        first_order = self._previous is None or (self.lower_order_final and t == 0)
        if first_order:
            d = x0
        else:
            k_prev, x0_prev = self._previous
            r = float(self.lam[s] - self.lam[k_prev]) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        self._previous = (k, x0)
        ratio = float(self.sigma[t] / self.sigma[s])
        return ratio * x - float(self.alpha[t] * torch.expm1(torch.tensor(-h, dtype=torch.float64))) * d
