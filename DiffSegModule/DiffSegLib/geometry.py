"""Volume geometry in physical space: grids, parent transforms, resampling, slice axis, ROI.

Conventions: a volume's *grid* is its IJK→RAS matrix (local, i.e. before its parent transform)
plus its dimensions. "World" is RAS after all parent transforms. Everything the engine receives is
on the reference volume's grid, so the engine's outputs land on that grid too and are shown under
the reference's parent transform. MRML + VTK only (no Qt).
"""

from __future__ import annotations

import numpy as np
import vtk

import slicer

#: Two grids are "the same" when their matrices differ by less than this (mm).
GRID_TOLERANCE_MM = 1e-4


def ijk_to_ras(volume) -> np.ndarray:
    """The volume's local IJK→RAS matrix (4×4)."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def dimensions(volume) -> tuple[int, int, int]:
    image = volume.GetImageData()
    return tuple(image.GetDimensions()) if image is not None else (0, 0, 0)


def box_offset(volume, reference, tolerance_mm: float = 1e-3) -> tuple[int, int, int] | None:
    """Where ``volume`` lies on ``reference``'s grid when its grid is a box of it (same axes and spacing, shifted by
    whole voxels, inside it; the engine's ``--crop-outputs``): the reference IJK of its first voxel; else None."""
    own, grid = ijk_to_ras(volume), ijk_to_ras(reference)
    if np.abs(own[:3, :3] - grid[:3, :3]).max() > tolerance_mm:
        return None
    first = np.linalg.solve(grid[:3, :3], own[:3, 3] - grid[:3, 3])
    whole = np.rint(first)
    if np.abs(grid[:3, :3] @ (first - whole)).max() > tolerance_mm:
        return None
    if any(f < 0 or f + n > m for f, n, m in zip(whole, dimensions(volume), dimensions(reference))):
        return None
    return tuple(int(f) for f in whole)


def transform_between(source, target) -> vtk.vtkGeneralTransform:
    """Transform from ``source``'s local RAS to ``target``'s local RAS through world space.

    Uses the nodes' parent transforms (linear or not); identity when they share the same parent.
    """
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        source.GetParentTransformNode(), target.GetParentTransformNode(), transform)
    return transform


def linear_matrix(transform: vtk.vtkGeneralTransform) -> np.ndarray | None:
    """The 4×4 matrix of a general transform if it is linear, else None."""
    linear = vtk.vtkTransform()
    if not slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(transform, linear):
        return None
    m = linear.GetMatrix()
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def same_grid(volume, reference) -> bool:
    """True when ``volume`` needs no resampling onto ``reference``'s grid."""
    if dimensions(volume) != dimensions(reference):
        return False
    between = linear_matrix(transform_between(volume, reference))
    if between is None:
        return False
    mapped = between @ ijk_to_ras(volume)
    return bool(np.abs(mapped - ijk_to_ras(reference)).max() < GRID_TOLERANCE_MM)


def resample_to_reference(volume, reference, interpolation: str = "linear",
                          image: vtk.vtkImageData | None = None) -> vtk.vtkImageData:
    """Image data of ``volume`` on ``reference``'s grid, matched in physical (world) space.

    Parent transforms of both nodes are honoured (also non-linear ones). Voxels of the reference
    grid outside ``volume`` are 0. The result has origin 0 and spacing 1 (Slicer's image-data
    convention); its IJK→RAS is the reference's. ``image`` replaces the volume's own voxels (same
    dimensions, e.g. a mask computed from them) while keeping its geometry.
    """
    image = image if image is not None else volume.GetImageData()
    if same_grid(volume, reference):
        copy = vtk.vtkImageData()
        copy.DeepCopy(image)
        return copy
    # Output voxel (reference IJK) → reference RAS → world → volume RAS → volume IJK.
    reference_ijk_to_volume_ijk = vtk.vtkGeneralTransform()
    reference_ijk_to_volume_ijk.PostMultiply()
    reference_ijk_to_volume_ijk.Concatenate(vtk_matrix(ijk_to_ras(reference)))
    reference_ijk_to_volume_ijk.Concatenate(transform_between(reference, volume))
    reference_ijk_to_volume_ijk.Concatenate(vtk_matrix(np.linalg.inv(ijk_to_ras(volume))))

    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(image)
    linear = vtk.vtkTransform()
    if slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(reference_ijk_to_volume_ijk, linear):
        reslice.SetResliceTransform(linear)
    else:
        reslice.SetResliceTransform(reference_ijk_to_volume_ijk)
    if interpolation == "nearest":
        reslice.SetInterpolationModeToNearestNeighbor()
    else:
        reslice.SetInterpolationModeToLinear()
    dims = dimensions(reference)
    reslice.SetOutputOrigin(0, 0, 0)
    reslice.SetOutputSpacing(1, 1, 1)
    reslice.SetOutputExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reslice.SetBackgroundLevel(0)
    reslice.Update()
    output = vtk.vtkImageData()
    output.DeepCopy(reslice.GetOutput())
    return output


def closest_world_axes(matrix: np.ndarray) -> list[int]:
    """For each voxel axis, the world axis (0=R, 1=A, 2=S) it is assigned to.

    Same rule as nibabel's ``io_orientation`` (which the engine uses): take the rotation closest to
    the direction matrix (polar decomposition), then give each voxel axis in turn the remaining
    world axis along which it points most. numpy only (nibabel is not in Slicer's Python).
    """
    linear = np.asarray(matrix, dtype=float)[:3, :3]
    zooms = np.linalg.norm(linear, axis=0)
    zooms[zooms == 0] = 1
    u, _, vt = np.linalg.svd(linear / zooms, full_matrices=False)
    rotation = u @ vt
    assigned = []
    for voxel_axis in range(3):
        world_axis = int(np.argmax(np.abs(rotation[:, voxel_axis])))
        assigned.append(world_axis)
        rotation[world_axis, :] = 0
    return assigned


def slice_axis(volume) -> int:
    """The voxel axis (0=I, 1=J, 2=K) the engine slices along: the one assigned to superior–inferior."""
    return closest_world_axes(ijk_to_ras(volume)).index(2)


def world_bounds(volume) -> np.ndarray:
    """Axis-aligned box (world RAS) covered by the volume: ``[[rmin, rmax], [amin, amax], [smin, smax]]``."""
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    return np.array(bounds, dtype=float).reshape(3, 2)


def overlap_fraction(volume, reference) -> float:
    """Fraction of ``reference``'s world box that ``volume``'s world box also covers (0..1)."""
    a, b = world_bounds(volume), world_bounds(reference)
    inter = np.clip(np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ref_size = np.clip(b[:, 1] - b[:, 0], 1e-9, None)
    return float(np.prod(inter / ref_size))


def roi_slice_range(roi, reference, axis: int) -> tuple[int, int]:
    """Half-open range of reference slices (along ``axis``) that a markups ROI covers.

    The ROI's 8 corners (of its oriented box) are mapped through the parent transforms into the
    reference's voxel grid; the range holds every slice (one voxel thick) that the ROI touches.
    :raises ValueError: when the ROI lies outside the reference volume.
    """
    bounds = [0.0] * 6
    roi.GetObjectBounds(bounds)  # box in its own (oriented) frame
    object_to_world = roi.GetObjectToWorldMatrix()
    to_world = np.array([[object_to_world.GetElement(r, c) for c in range(4)] for r in range(4)])
    corners_world = [to_world @ np.array([x, y, z, 1.0])
                     for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]]
    world_to_reference = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, reference.GetParentTransformNode(), world_to_reference)
    ras_to_ijk = np.linalg.inv(ijk_to_ras(reference))
    indices = []
    for corner in corners_world:
        local = world_to_reference.TransformPoint(corner[:3])
        indices.append((ras_to_ijk @ np.array([*local, 1.0]))[axis])
    n = dimensions(reference)[axis]
    start = max(0, int(np.ceil(min(indices) - 0.5)))
    stop = min(n, int(np.floor(max(indices) + 0.5)) + 1)
    if start >= stop:
        raise ValueError(f"The ROI '{roi.GetName()}' does not cross the volume '{reference.GetName()}'.")
    return start, stop


def slice_center_world(volume, axis: int, index: int) -> tuple[float, float, float]:
    """World RAS position of the centre of slice ``index`` along ``axis`` of ``volume``."""
    dims = dimensions(volume)
    ijk = [(d - 1) / 2.0 for d in dims]
    ijk[axis] = float(index)
    local = ijk_to_ras(volume) @ np.array([*ijk, 1.0])
    to_world = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(volume.GetParentTransformNode(), None, to_world)
    return tuple(to_world.TransformPoint(local[:3]))
