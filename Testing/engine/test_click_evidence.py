"""A click's evidence beyond its ball: odds re-weighted within the reach, falling with physical distance."""

from __future__ import annotations

import numpy as np
import pytest

from DiffSegExtension.data.phantom import make_phantom
from DiffSegExtension.refinement.click_evidence import TARGET, TissueLikeness, apply_click_evidence, click_strength
from DiffSegExtension.refinement.guidance import Point

REGIONS = ("wt", "tc", "et")


@pytest.fixture
def affine():
    """Oblique, anisotropic: 1 × 1.1 × 2 mm voxels."""
    return make_phantom(1, shape=(30, 30, 16), spacing=(1.0, 1.1, 2.0), oblique=True).affine


def ras(affine, voxel):
    return tuple((affine @ np.append(np.asarray(voxel, float), 1.0))[:3])


def uniform_maps(shape=(30, 30, 16), p=(0.4, 0.2, 0.2)):
    probability = np.stack([np.full(shape, v, np.float32) for v in p])
    return {"probability": probability, "uncertainty": probability * (1 - probability),
            "entropy": np.zeros_like(probability)}


def distance_mm(affine, a, b):
    return float(np.linalg.norm(affine[:3, :3] @ (np.asarray(a, float) - np.asarray(b, float))))


def test_an_include_point_lifts_a_one_member_voxel_to_the_target_at_the_click(affine):
    maps = uniform_maps(p=(0.2, 0.2, 0.2))
    click = (15, 15, 8)
    apply_click_evidence(maps, [Point("include", ras(affine, click), "wt", reach_mm=10.0)], affine, REGIONS, members=5)
    assert maps["probability"][0][click] == pytest.approx(TARGET, abs=1e-5)
    assert click_strength(5) == pytest.approx(np.log(3) + np.log(4))


def test_evidence_falls_with_physical_distance_and_stops_at_the_reach(affine):
    maps = uniform_maps()
    click, reach = (15, 15, 8), 10.0
    apply_click_evidence(maps, [Point("include", ras(affine, click), "wt", reach_mm=reach)], affine, REGIONS, members=5)
    wt = maps["probability"][0]
    near, farther = (15, 15, 9), (15, 15, 11)  # 2 mm and 6 mm along the 2 mm axis
    assert wt[click] > wt[near] > wt[farther] > 0.4
    beyond = (15, 15, 14)
    assert distance_mm(affine, click, beyond) > reach and wt[beyond] == pytest.approx(0.4)
    assert maps["probability"][1][click] == pytest.approx(0.2) and maps["probability"][2][click] == pytest.approx(0.2), \
        "a whole-tumour include says nothing of the inner regions"
    p = maps["probability"][:, 15, 15, 9]
    assert np.allclose(maps["uncertainty"][:, 15, 15, 9], p * (1 - p))
    assert np.allclose(maps["entropy"][0, 15, 15, 9], -(p[0] * np.log2(p[0]) + (1 - p[0]) * np.log2(1 - p[0])))


def test_an_exclude_point_lowers_its_region_and_inner_ones_only_as_nesting_needs(affine):
    maps = uniform_maps(p=(0.8, 0.6, 0.1))
    maps["probability"][0, 15, 15, 8] = 1.0  # every member says tumour: a click cannot re-weigh it
    click = (15, 16, 8)
    apply_click_evidence(maps, [Point("exclude", ras(affine, click), reach_mm=10.0)], affine, REGIONS, members=5)
    wt, tc, et = maps["probability"][:, 15, 16, 8]
    assert wt == pytest.approx(1 - TARGET) and tc == wt and et == pytest.approx(0.1), \
        "TC follows the whole tumour down; ET, below it anyway, stays"
    assert maps["probability"][0, 15, 15, 8] == 1.0
    assert np.all(np.diff(maps["probability"], axis=0) <= 0), "regions stay nested"


def test_an_inner_region_include_raises_it_and_the_outer_ones_only_inside_within(affine):
    maps = uniform_maps(p=(0.4, 0.2, 0.2))
    within = np.zeros((30, 30, 16), bool)
    within[:, :, 8] = True
    apply_click_evidence(maps, [Point("include", ras(affine, (15, 15, 8)), "tc", reach_mm=10.0)], affine, REGIONS,
                         members=5, within=within)
    wt, tc, et = maps["probability"][:, 15, 15, 8]
    assert tc == pytest.approx(TARGET) and wt == tc and et == pytest.approx(0.2), "WT at least TC; ET untouched"
    assert np.all(maps["probability"][:, :, :, 9] == maps["probability"][:, :1, :1, 9]), "nothing outside within"


def test_a_point_without_reach_changes_nothing(affine):
    maps = uniform_maps()
    before = {k: v.copy() for k, v in maps.items()}
    apply_click_evidence(maps, [Point("include", ras(affine, (15, 15, 8)))], affine, REGIONS, members=5)
    assert all(np.array_equal(before[k], maps[k]) for k in maps)


def two_tissues(shape=(30, 30, 16), background=0.0):
    """A brain (background border 2 voxels wide) of two tissues split at j = 15: 100 below, 300 from there on,
    in two sequences (the second one z-scored-like: negative background, other values)."""
    first = np.full(shape, background, np.float32)
    first[2:-2, 2:-2, 2:-2] = 100.0
    first[2:-2, 15:-2, 2:-2] = 300.0
    second = np.where(first == background, -4.0, (first - 200.0) / 100.0).astype(np.float32)
    return {"flair": first, "t2": second}


def test_with_the_images_a_click_speaks_for_tissue_like_its_own_only(affine):
    maps, by_distance = uniform_maps(), uniform_maps()
    likeness = TissueLikeness(two_tissues())
    point = Point("include", ras(affine, (15, 12, 8)), "wt", reach_mm=10.0)  # its 3 mm ball all in tissue 100
    apply_click_evidence(maps, [point], affine, REGIONS, members=5, likeness=likeness)
    apply_click_evidence(by_distance, [point], affine, REGIONS, members=5)
    wt, plain = maps["probability"][0], by_distance["probability"][0]
    same, other = (15, 9, 8), (15, 15, 8)  # 3 voxels from the click on its side, 3 voxels across the border
    assert distance_mm(affine, (15, 12, 8), same) == pytest.approx(distance_mm(affine, (15, 12, 8), other))
    assert wt[same] == pytest.approx(plain[same], abs=1e-6) and wt[same] > 0.5, "the click's own tissue as by distance"
    assert wt[other] == pytest.approx(0.4, abs=1e-3) and plain[other] > 0.5, "the other tissue keeps its odds"


def test_likeness_is_one_on_the_clicked_tissue_and_ignores_the_storage_convention(affine):
    raw = TissueLikeness(two_tissues())
    shifted = TissueLikeness({k: v * 3.0 - 7.0 for k, v in two_tissues().items()})
    point = Point("include", ras(affine, (15, 8, 8)), "wt")
    box = (slice(10, 20), slice(5, 20), slice(6, 10))
    for likeness in (raw, shifted):
        near = likeness.around(point, affine, box)
        assert near[:, :5].min() == pytest.approx(1.0) and near[:, 10:].max() < 1e-3
    assert np.allclose(raw.around(point, affine, box), shifted.around(point, affine, box), atol=1e-6)
