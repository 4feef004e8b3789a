"""Random training batches: shapes, tumour sampling, augmentation, and bit-identical replay."""

import numpy as np
import pytest
import torch

from DiffSegExtension.config import PreprocessConfig
from DiffSegExtension.data.phantom import make_phantom
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.errors import DiffSegInputError

MODS = ("flair", "t1")
PRE = PreprocessConfig(train_crop=32)


def small_cases():
    return [make_phantom(seed, shape=(48, 56, 20), spacing=(1.0, 1.0, 2.0), oblique=seed == 1,
                         modalities=MODS, tumour_probability=0.0 if seed == 2 else 1.0).to_case(f"ph{seed}")
            for seed in range(3)]


@pytest.fixture(scope="module")
def dataset() -> SliceDataset:
    return SliceDataset(small_cases(), MODS, PRE, size_multiple=16)


def batch(dataset, seed, **kwargs):
    return dataset.sample_batch(torch.Generator().manual_seed(seed), **{"batch_size": 8, **kwargs})


def test_slices_and_tumour_index(dataset):
    expected = sum(len(prepare_volume(case, MODS, PRE, 16).source_slices) for case in small_cases())
    assert len(dataset) == expected  # every brain slice of every case
    assert 20 < len(dataset) <= 60 and dataset.case_names == ["ph0", "ph1", "ph2"]
    assert 0 < len(dataset.tumour_slices) < len(dataset)
    for index in range(len(dataset)):
        images, label, brain = dataset.full_slice(index)
        assert images.dtype == torch.float32 and images.shape[0] == 2 and label.shape == brain.shape
        assert all(n % 16 == 0 for n in label.shape)
        assert bool(label.any()) == (index in dataset.tumour_slices)


def test_batch_layout(dataset):
    images, masks = batch(dataset, 0, crop=32, tumour_fraction=0.5)
    assert images.shape == (8, 2, 32, 32) and masks.shape == (8, 1, 32, 32)
    assert images.dtype == masks.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(masks.unique().tolist()) <= {-1.0, 1.0}
    assert all((masks[b] > 0).any() for b in range(4))  # the tumour half of the batch shows tumour


def test_small_crops_still_find_the_tumour(dataset):
    _, masks = batch(dataset, 1, crop=16, tumour_fraction=1.0, batch_size=12)
    assert all((masks[b] > 0).any() for b in range(12))


def test_same_generator_state_gives_the_same_batch(dataset):
    generator = torch.Generator().manual_seed(1234)
    generator.manual_seed(99)
    state = generator.get_state()
    first = dataset.sample_batch(generator, 6, augment=True)
    follow_up = dataset.sample_batch(generator, 6, augment=True)
    generator.set_state(state)
    again = dataset.sample_batch(generator, 6, augment=True)
    rebuilt = SliceDataset(small_cases(), MODS, PRE, size_multiple=16)  # as after a training restart
    replay = rebuilt.sample_batch(torch.Generator().manual_seed(99), 6, augment=True)
    for other in (again, replay):
        assert torch.equal(first[0], other[0]) and torch.equal(first[1], other[1])
    assert not torch.equal(first[0], follow_up[0])


def test_large_crop_holds_whole_slices_without_augmentation(dataset):
    images, masks = batch(dataset, 2, crop=96, augment=False, tumour_fraction=0.25)
    sums = {round(float(dataset.full_slice(i)[0].sum()), 2) for i in range(len(dataset))}
    for b in range(len(images)):
        assert round(float(images[b].sum()), 2) in sums  # the whole slice, zero-padded around it


def _affine_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(scale, shift, max residual) of y ≈ scale·x + shift on mid-range pixels of x."""
    usable = (x > 0.2) & (x < 0.8)
    assert usable.sum() > 20
    scale, shift = np.polyfit(x[usable], y[usable], 1)
    return scale, shift, float(np.abs(y[usable] - scale * x[usable] - shift).max())


def test_augmentation_is_a_flip_and_a_mild_intensity_change(dataset):
    plain_images, plain_masks = batch(dataset, 3, augment=False, batch_size=16)
    images, masks = batch(dataset, 3, augment=True, batch_size=16)  # same draws: same slices and crops
    flips_seen = set()
    for b in range(16):
        references = {}
        for flip in [(False, False), (True, False), (False, True), (True, True)]:
            dims = [d for d, f in zip((1, 2), flip) if f]
            references[flip] = plain_images[b].flip(dims) if dims else plain_images[b]
        flip = min(references, key=lambda key: float((references[key] - images[b]).abs().sum()))
        flips_seen.add(flip)
        dims = [d for d, f in zip((0, 1), flip) if f]
        assert torch.equal(masks[b, 0], plain_masks[b, 0].flip(dims) if dims else plain_masks[b, 0])
        for m in range(2):
            scale, shift, residual = _affine_fit(references[flip][m].flatten().numpy(), images[b, m].flatten().numpy())
            assert 0.9 - 1e-3 <= scale <= 1.1 + 1e-3 and abs(shift) <= 0.1 + 1e-3 and residual < 2e-3
    assert len(flips_seen) >= 3


def test_padding_stays_background(dataset):
    images, masks = batch(dataset, 4, crop=96, augment=True)
    # Slices are at most 64 pixels wide, so every 96-pixel crop has a band of padding: zero and −1.
    outside = (images.abs().sum(dim=1) == 0) & (masks[:, 0] < 0)
    assert all(outside[b].sum() >= 96 * 96 - 64 * 64 for b in range(len(images)))


def test_bad_arguments(dataset):
    with pytest.raises(DiffSegInputError, match="training crop 40 must be a positive multiple of 16"):
        batch(dataset, 0, crop=40)
    with pytest.raises(DiffSegInputError, match="tumour fraction"):
        batch(dataset, 0, tumour_fraction=1.5)
    case = make_phantom(0, shape=(32, 32, 16), modalities=MODS).to_case("nolabel")
    case.label = None
    with pytest.raises(DiffSegInputError, match="training case nolabel has no label"):
        SliceDataset([case], MODS, PRE, 16)
