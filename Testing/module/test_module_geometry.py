"""Geometry on real MRML nodes: oblique grids, parent transforms, resampling, slice axis, ROI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import slicer
import vtk
from conftest import ijk_to_ras

from DiffSegLib import geometry, results, volumeio


def _array(node) -> np.ndarray:
    return np.array(volumeio.array_kji(node))


def _translated_copy(harness, tmp_path, source_file, voxels: int, axis: int, name: str):
    """The same voxels as ``source_file`` on a grid moved by ``voxels`` along voxel ``axis``."""
    image = nib.load(str(source_file))
    affine = image.affine.copy()
    affine[:3, 3] += voxels * affine[:3, axis]
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), str(path))
    return harness.load_volume(path, name)


def test_volumes_load_with_the_oblique_non_isotropic_nifti_affine(volumes, case_files):
    affine = nib.load(str(case_files["flair"])).affine
    assert np.allclose(ijk_to_ras(volumes["flair"]), affine, atol=1e-4)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert not np.allclose(spacing, spacing[0])  # non-isotropic
    directions = affine[:3, :3] / spacing
    assert np.abs(np.abs(directions) - np.eye(3)[:, np.argmax(np.abs(directions), axis=0)]).max() > 0.1  # oblique


def test_same_grid_is_copied_exactly(volumes):
    flair, t2 = volumes["flair"], volumes["t2"]
    assert geometry.same_grid(t2, flair)
    assert np.array_equal(volumeio.array_kji_image(geometry.resample_to_reference(t2, flair)), _array(t2))


def test_resampling_matches_physical_space(harness, tmp_path, volumes, case_files):
    flair = volumes["flair"]
    shifted = _translated_copy(harness, tmp_path, case_files["t1"], 3, 0, "t1_shifted")
    assert not geometry.same_grid(shifted, flair)
    out = volumeio.array_kji_image(geometry.resample_to_reference(shifted, flair))
    original = _array(volumes["t1"])
    # Reference voxel i shows what the shifted grid has at i - 3, i.e. the original's voxel i - 3.
    assert np.allclose(out[:, :, 3:], original[:, :, :-3], atol=1e-3)
    assert np.all(out[:, :, :3] == 0)  # outside the moved volume


def test_resampling_honours_parent_transforms(harness, tmp_path, volumes, case_files):
    """A transform that moves the shifted copy back onto the reference makes resampling an identity."""
    flair = volumes["flair"]
    shifted = _translated_copy(harness, tmp_path, case_files["t1"], 3, 0, "t1_shifted")
    back = np.eye(4)
    back[:3, 3] = -3 * ijk_to_ras(flair)[:3, 0]
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(geometry.vtk_matrix(back))
    shifted.SetAndObserveTransformNodeID(transform.GetID())
    assert geometry.same_grid(shifted, flair)
    out = volumeio.array_kji_image(geometry.resample_to_reference(shifted, flair))
    assert np.allclose(out, _array(volumes["t1"]), atol=1e-3)
    # The reference under the same transform as the input: again the identity.
    shifted.SetAndObserveTransformNodeID(None)
    flair_moved_back = np.eye(4)
    flair_moved_back[:3, 3] = 3 * ijk_to_ras(flair)[:3, 0]
    transform.SetMatrixTransformToParent(geometry.vtk_matrix(flair_moved_back))
    flair.SetAndObserveTransformNodeID(transform.GetID())
    assert geometry.same_grid(shifted, flair)


def test_resampling_through_a_non_linear_transform(harness, volumes):
    """A grid (non-linear) transform of zero displacement leaves the image unchanged."""
    flair, t1 = volumes["flair"], volumes["t1"]
    grid = slicer.vtkOrientedGridTransform()
    field = vtk.vtkImageData()
    field.SetOrigin(-200, -200, -200)
    field.SetSpacing(100, 100, 100)
    field.SetDimensions(5, 5, 5)
    field.AllocateScalars(vtk.VTK_DOUBLE, 3)
    field.GetPointData().GetScalars().Fill(0.0)
    grid.SetDisplacementGridData(field)
    node = harness.scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformToParent(grid)
    t1.SetAndObserveTransformNodeID(node.GetID())
    assert not geometry.same_grid(t1, flair)  # not provably linear: goes through vtkImageReslice
    out = volumeio.array_kji_image(geometry.resample_to_reference(t1, flair))
    assert np.allclose(out, _array(t1), atol=1e-2)


def test_written_nifti_keeps_geometry_and_voxels(tmp_path, volumes):
    flair = volumes["flair"]
    path = volumeio.write_nifti(flair.GetImageData(), ijk_to_ras(flair), tmp_path / "flair.nii.gz")
    image = nib.load(str(path))
    assert np.allclose(image.affine, ijk_to_ras(flair), atol=1e-4)
    assert np.array_equal(np.asarray(image.dataobj), _array(flair).transpose(2, 1, 0))
    read = volumeio.read_nifti(path)
    assert read.GetScene() is None
    assert np.allclose(ijk_to_ras(read), ijk_to_ras(flair), atol=1e-4)


@pytest.mark.parametrize("seed", range(12))
def test_slice_axis_agrees_with_the_engine(seed):
    from DiffSegExtension.data.geometry import CanonicalFrame
    from scipy.spatial.transform import Rotation

    rotation = Rotation.random(random_state=seed).as_matrix() if seed else np.eye(3)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 1.3, 2.5]) @ np.diag(np.where(np.arange(3) == seed % 3, -1, 1))
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetIJKToRASMatrix(geometry.vtk_matrix(affine))
    assert geometry.slice_axis(node) == CanonicalFrame(affine, (8, 9, 10)).slice_axis


def test_roi_selects_the_slices_it_covers(harness, volumes):
    flair = volumes["flair"]
    axis = geometry.slice_axis(flair)
    roi = harness.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    centre = geometry.slice_center_world(flair, axis, 7)
    spacing = np.linalg.norm(ijk_to_ras(flair)[:3, axis])
    # An ROI aligned with the (oblique) volume, ~2 slices thick, wide in-plane.
    direction = ijk_to_ras(flair)[:3, :3] / np.linalg.norm(ijk_to_ras(flair)[:3, :3], axis=0)
    orientation = np.eye(4)
    orientation[:3, :3] = direction * np.sign(np.linalg.det(direction))
    roi.SetAndObserveObjectToNodeMatrix(geometry.vtk_matrix(orientation))
    size = [400.0, 400.0, 400.0]
    size[axis] = 2.2 * spacing
    roi.SetSize(*size)
    roi.SetCenterWorld(*centre)
    start, stop = geometry.roi_slice_range(roi, flair, axis)
    assert (start, stop) == (6, 9)
    roi.SetCenterWorld(*(10000 * np.ones(3)))
    with pytest.raises(ValueError, match="does not cross"):
        geometry.roi_slice_range(roi, flair, axis)


def _cropped_file(tmp_path, name, full, affine, box, shift_voxels=(0.0, 0.0, 0.0)):
    """``full`` (IJK order) written over ``box`` only, on that box of the grid ``affine`` (the engine's
    ``--crop-outputs``), optionally moved by a fraction of a voxel."""
    moved = affine.copy()
    moved[:3, 3] = affine[:3, :3] @ (np.array([s.start for s in box]) + shift_voxels) + affine[:3, 3]
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(full[box]), moved), str(path))
    return path


def test_cropped_engine_outputs_land_on_the_whole_oblique_grid(tmp_path, volumes, case_files):
    flair = volumes["flair"]
    affine = nib.load(str(case_files["flair"])).affine
    shape = tuple(reversed(_array(flair).shape))  # IJK
    box = (slice(3, 11), slice(5, 9), slice(1, shape[2] - 1))
    rng = np.random.default_rng(0)
    probability = np.zeros(shape, dtype=np.float32)
    probability[box] = rng.random([s.stop - s.start for s in box], dtype=np.float32)
    maps = {"segmentation": (probability >= 0.5).astype(np.uint8), "probability": probability,
            "uncertainty": probability * (1 - probability)}
    outputs = {role: str(_cropped_file(tmp_path, role, full, affine, box)) for role, full in maps.items()}
    assert geometry.box_offset(volumeio.read_nifti(outputs["probability"]), flair) == (3, 5, 1)
    loaded = results.load_engine_outputs(outputs, flair)
    for node, full in ((loaded.segmentation, maps["segmentation"]), (loaded.probability["wt"], probability),
                       (loaded.uncertainty["wt"], maps["uncertainty"])):
        assert geometry.dimensions(node) == shape and np.allclose(ijk_to_ras(node), ijk_to_ras(flair), atol=1e-6)
        assert np.array_equal(_array(node), full.transpose(2, 1, 0)), "every voxel where it was, zero around"


def test_an_engine_output_off_the_grid_is_refused(tmp_path, volumes, case_files):
    flair = volumes["flair"]
    affine = nib.load(str(case_files["flair"])).affine
    shape = tuple(reversed(_array(flair).shape))
    full = np.ones(shape, dtype=np.float32)
    outputs = {role: str(_cropped_file(tmp_path, role, full, affine, (slice(2, 6),) * 3, (0.5, 0.0, 0.0)))
               for role in ("segmentation", "probability", "uncertainty")}
    with pytest.raises(OSError, match="does not lie on the voxel grid of the input"):
        results.load_engine_outputs(outputs, flair)
    outside = (slice(shape[0] - 2, shape[0]), slice(0, 2), slice(0, 2))
    assert geometry.box_offset(volumeio.read_nifti(_cropped_file(tmp_path, "edge", full, affine, outside,
                                                                 (1.0, 0.0, 0.0))), flair) is None
