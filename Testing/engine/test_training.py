"""Training: the loss goes down, checkpoints round-trip, resume is bit for bit, DDP runs."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from DiffSegExtension.cli import main
from DiffSegExtension.config import preset
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.diffusion.losses import hybrid_loss
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.model_card import load_model
from DiffSegExtension.network import DenoisingUNet, condition_input
from testing_utils import engine_env

TRAIN_ARGS = ["--modalities", "flair", "--preset", "tiny", "--batch-size", "2", "--crop", "32", "--val-fraction", "0",
              "--log-every", "1", "--progress", "none", "--warmup", "1"]


@pytest.mark.parametrize("regions", [("wt",), ("wt", "tc", "et")])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(phantom_cases, regions):
    config = preset("tiny", ["flair", "t1ce"], regions=regions, optional_modalities=("t1ce",))
    cases = [load_case(c, config.modalities, with_label=True) for c in list_cases(phantom_cases)[:2]]
    data = SliceDataset(cases, config.modalities, config.preprocess, config.network.size_multiple,
                        regions=regions, optional=("t1ce",))
    g = torch.Generator().manual_seed(0)
    batch = data.sample_batch(g, 8, 32, augment=False, tumour_fraction=1.0, modality_dropout=0.5)
    masks = batch.masks
    assert masks.shape[1] == len(regions) and not bool(batch.present[:, 1].all())
    t = torch.randint(0, 1000, (8,), generator=g)
    noise = torch.randn(masks.shape, generator=g)
    schedule = NoiseSchedule.from_config(config.diffusion)
    x_t = schedule.q_sample(masks, t, noise)
    condition = condition_input(config.network, batch.images, batch.present)
    torch.manual_seed(0)
    net = DenoisingUNet(config.network)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)

    def loss():
        output = net(torch.cat([condition, x_t], 1), t)
        assert output.shape[1] == 2 * len(regions)
        return hybrid_loss(schedule, output, masks, x_t, t, noise, batch.weights)["loss"].mean()

    before = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < 0.6 * before


def test_run_folder_is_a_model_and_records_the_split(tiny_run):
    card = json.loads((tiny_run / "model.json").read_text())
    assert card["data"]["validation"] == ["phantom3"]
    assert "phantom3" not in card["data"]["train"], "split is by case"
    assert card["training"]["iteration"] == 6
    assert "mean" in card["training"]["validation_dice"]
    rows = list(csv.DictReader(open(tiny_run / "train_log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    model = load_model(tiny_run)
    weights = load_file(str(tiny_run / "weights.safetensors"))
    for key, value in model.network.state_dict().items():
        assert torch.equal(value, weights[f"ema.{key}"]), "inference uses the EMA weights"


def test_resume_continues_bit_for_bit(tmp_path, phantom_cases):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--data", str(phantom_cases), "--out", str(straight), "--iterations", "4",
                 "--checkpoint-every", "4", *TRAIN_ARGS]) == 0
    assert main(["train", "--data", str(phantom_cases), "--out", str(resumed), "--iterations", "2",
                 "--checkpoint-every", "2", *TRAIN_ARGS]) == 0
    assert main(["train", "--data", str(phantom_cases), "--out", str(resumed), "--iterations", "4",
                 "--checkpoint-every", "4", "--resume", *TRAIN_ARGS]) == 0
    for name in ("weights.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = list(csv.DictReader(open(resumed / "train_log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]


def test_training_refuses_to_overwrite_a_run(tmp_path, phantom_cases, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(phantom_cases), "--out", str(out), "--iterations", "1", *TRAIN_ARGS]) == 0
    before = (out / "weights.safetensors").read_bytes()
    assert main(["train", "--data", str(phantom_cases), "--out", str(out), "--iterations", "1", *TRAIN_ARGS]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "weights.safetensors").read_bytes() == before


def test_export_half_precision_gives_the_same_predictions(tmp_path, tiny_run):
    assert main(["export", "--run", str(tiny_run), "--out", str(tmp_path / "slim"), "--half"]) == 0
    full, slim = load_model(tiny_run), load_model(tmp_path / "slim")
    assert (tmp_path / "slim" / "weights.safetensors").stat().st_size < 0.3 * (tiny_run / "weights.safetensors").stat().st_size
    x, t = torch.rand(2, 3, 32, 32), torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.allclose(full.network(x, t), slim.network(x, t), atol=2e-2)


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(tmp_path, phantom_cases):
    out = tmp_path / "ddp"
    with socket.socket() as probe:  # a port free now, rather than a fixed one another run may still hold
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "DiffSegExtension", "train", "--data", str(phantom_cases), "--out", str(out), "--iterations", "3",
           "--checkpoint-every", "3", "--device", "cpu", *TRAIN_ARGS]
    done = subprocess.run(cmd, env=engine_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["processes"] == 2 and card["training"]["iteration"] == 3
    load_model(out)
