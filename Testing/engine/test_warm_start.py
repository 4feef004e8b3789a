"""Warm start from a model with fewer inputs and regions: the shared part computes exactly what it did."""

import pytest
import torch

from DiffSegExtension.config import preset
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.network import DenoisingUNet
from DiffSegExtension.training.warm_start import warm_start


def test_region_model_from_a_flair_model_starts_where_the_flair_model_is():
    torch.manual_seed(0)
    source = DenoisingUNet(preset("tiny", ["flair"]).network).eval()
    target_config = preset("tiny", ["flair", "t1", "t1ce", "t2"], regions=("wt", "tc", "et"),
                           optional_modalities=("t1", "t1ce", "t2")).network
    torch.manual_seed(1)
    network = DenoisingUNet(target_config).eval()
    report = warm_start(network, source)
    assert report["new"] == ["t1", "t1ce", "t2", "present:t1", "present:t1ce", "present:t2", "mask:tc", "mask:et",
                             "target:tc", "target:et", "var:tc", "var:et"]
    flair, mask = torch.rand(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        expected = source(torch.cat([flair, mask], 1), t)
        # Other sequences, presence planes and inner-region masks start ignored: any values give the same output.
        extra = torch.rand(2, 6, 32, 32)
        got = network(torch.cat([flair, extra, mask, torch.randn(2, 2, 32, 32)], 1), t)
    assert torch.allclose(got[:, 0], expected[:, 0], atol=1e-5)  # WT target
    assert torch.allclose(got[:, 3], expected[:, 1], atol=1e-5)  # WT variance
    assert torch.allclose(got[:, 1], expected[:, 0], atol=1e-5) and torch.allclose(got[:, 2], expected[:, 0], atol=1e-5)


def test_another_network_size_is_refused():
    with pytest.raises(DiffSegInputError, match="same channels"):
        warm_start(DenoisingUNet(preset("tiny", ["flair"]).network), DenoisingUNet(preset("small", ["flair"]).network))


def test_a_guided_network_from_an_unguided_one_ignores_its_hint_planes_until_trained():
    torch.manual_seed(0)
    source = DenoisingUNet(preset("tiny", ["flair"]).network).eval()
    network = DenoisingUNet(preset("tiny", ["flair"], guidance=True).network).eval()
    assert warm_start(network, source)["new"] == ["include:wt", "exclude:wt"]
    flair, mask, t = torch.rand(2, 1, 32, 32), torch.randn(2, 1, 32, 32), torch.tensor([10, 700])
    hints = (torch.rand(2, 2, 32, 32) > 0.9).float()
    with torch.no_grad():
        assert torch.allclose(network(torch.cat([flair, hints, mask], 1), t), source(torch.cat([flair, mask], 1), t),
                              atol=1e-5)
