"""The EMA forgets its starting weights within a few hundred updates, then averages at the set decay."""

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from DiffSegExtension.training.ema import ema_with_warmup, warmup_decay


def _average_after(multi_avg_fn, updates: int) -> float:
    """A one-weight model starts at 0 (the warm start), then trains to 1: the average's value after ``updates``."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = AveragedModel(model, multi_avg_fn=multi_avg_fn)
    ema.update_parameters(model)  # the first update copies the start
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(updates):
        ema.update_parameters(model)
    return float(ema.module.weight.detach())


def test_the_start_is_forgotten_much_sooner_than_with_a_fixed_decay():
    fixed = _average_after(get_ema_multi_avg_fn(0.999), 2000)
    warm = _average_after(ema_with_warmup(0.999), 2000)
    assert abs(fixed - (1 - 0.999 ** 2000)) < 1e-3  # 13.5 % of the start is left
    assert warm > 0.999 and warm > fixed


def test_the_decay_grows_to_the_set_value_and_stays_there():
    decays = [warmup_decay(0.999, n) for n in range(0, 20000, 50)]
    assert decays[0] == 0.1 and all(a <= b for a, b in zip(decays, decays[1:]))
    assert max(decays) == 0.999 and warmup_decay(0.999, 9000) == 0.999
