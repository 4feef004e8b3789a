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
    """(images, masks) of a random batch."""
    drawn = dataset.sample_batch(torch.Generator().manual_seed(seed), **{"batch_size": 8, **kwargs})
    return drawn.images, drawn.masks


def test_slices_and_tumour_index(dataset):
    expected = sum(len(prepare_volume(case, MODS, PRE, 16).source_slices) for case in small_cases())
    assert len(dataset) == expected  # every brain slice of every case
    assert 20 < len(dataset) <= 60 and dataset.case_names == ["ph0", "ph1", "ph2"]
    assert 0 < len(dataset.tumour_slices) < len(dataset)
    for index in range(len(dataset)):
        images, label, brain = dataset.full_slice(index)
        assert images.dtype == torch.float32 and images.shape[0] == 2 and label.shape == (1, *brain.shape)
        assert all(n % 16 == 0 for n in brain.shape)
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
        assert torch.equal(first.images, other.images) and torch.equal(first.masks, other.masks)
    assert not torch.equal(first.images, follow_up.images)


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


FOUR = ("flair", "t1", "t1ce", "t2")
REGIONS = ("wt", "tc", "et")


def region_cases():
    """Two four-sequence phantoms (BraTS labels), one FLAIR + T1 phantom with a whole-tumour-only label."""
    cases = [make_phantom(seed, shape=(48, 56, 20), spacing=(1.0, 1.0, 2.0), modalities=FOUR).to_case(f"full{seed}")
             for seed in (5, 6)]
    partial = make_phantom(7, shape=(48, 56, 20), spacing=(1.0, 1.0, 2.0), modalities=("flair", "t1")).to_case("wt_only")
    partial.label_map = partial.label.copy()  # a binary label file: whole tumour only
    return cases + [partial]


@pytest.fixture(scope="module")
def region_dataset() -> SliceDataset:
    return SliceDataset(region_cases(), FOUR, PRE, 16, regions=REGIONS, optional=("t1", "t1ce", "t2"))


def test_region_masks_are_nested_and_follow_the_brats_labels(region_dataset):
    drawn = region_dataset.sample_batch(torch.Generator().manual_seed(0), 16, crop=32, tumour_fraction=1.0,
                                        augment=False)
    assert drawn.masks.shape == (16, 3, 32, 32)
    inside = drawn.masks > 0
    assert bool((inside[:, 0] >= inside[:, 1]).all() and (inside[:, 1] >= inside[:, 2]).all())  # WT ⊇ TC ⊇ ET
    full = drawn.weights[:, 2] == 1
    assert inside[full, 2].any() and inside[full, 1].sum() > inside[full, 2].sum()
    case = region_cases()[0]
    prepared = prepare_volume(case, FOUR, PRE, 16, regions=REGIONS)
    restored = prepared.restore(prepared.region_label[:, 2])
    selected = np.take(case.label_map == 4, prepared.source_slices, prepared.frame.slice_axis)
    assert np.array_equal(np.take(restored, prepared.source_slices, prepared.frame.slice_axis) > 0.5, selected)


def test_whole_tumour_only_labels_weigh_only_the_wt_channel(region_dataset):
    drawn = region_dataset.sample_batch(torch.Generator().manual_seed(1), 24, crop=32)
    partial = drawn.present[:, 2] == 0  # no T1ce: only the FLAIR + T1 case, with or without drop-out
    assert set(map(tuple, drawn.weights.tolist())) <= {(1.0, 0.0, 0.0), (1.0, 1.0, 1.0)}
    wt_only = drawn.weights[:, 1] == 0
    assert wt_only.any() and bool((drawn.present[wt_only][:, 2:] == 0).all())  # that case has no T1ce, no T2
    assert bool((drawn.masks[wt_only][:, 1:] < 0).all())  # its unannotated channels hold no region
    assert partial.any()


def test_sequence_dropout_zeroes_only_optional_modalities(region_dataset):
    kept = region_dataset.sample_batch(torch.Generator().manual_seed(2), 64, crop=32, modality_dropout=0.0)
    dropped = region_dataset.sample_batch(torch.Generator().manual_seed(2), 64, crop=32, modality_dropout=1.0)
    assert bool(dropped.present[:, 0].all())  # FLAIR is required: never dropped
    assert dropped.present.sum() < kept.present.sum()
    assert bool((dropped.present <= kept.present).all())  # same draws: drop-out only removes
    absent = ~dropped.present
    assert float(dropped.images.permute(1, 0, 2, 3)[absent.T].abs().sum()) == 0.0
    assert torch.equal(dropped.masks, kept.masks)
