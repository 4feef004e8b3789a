"""NIfTI in and out through Slicer's storage nodes, on nodes that are *not* in the scene.

Writing uses a detached copy of the volume (image data + IJK→RAS), so exporting never marks a
scene node as modified or saved. Reading fills a detached node, so a failed or cancelled run
never leaves a half-loaded node in the scene. ``slicer.util.saveNode``/``loadVolume`` need
``slicer.app`` and are avoided on purpose: this works in Slicer and under ``slicer-core``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vtk
import vtk.util.numpy_support

import slicer

from . import geometry


def detached_volume(image: vtk.vtkImageData, ijk_to_ras: np.ndarray, name: str = "volume"):
    """A ``vtkMRMLScalarVolumeNode`` outside any scene holding ``image`` on the grid ``ijk_to_ras``."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    node.SetIJKToRASMatrix(geometry.vtk_matrix(ijk_to_ras))
    node.SetAndObserveImageData(image)
    return node


def write_nifti(image: vtk.vtkImageData, ijk_to_ras: np.ndarray, path: Path | str) -> Path:
    """Write ``image`` with geometry ``ijk_to_ras`` to a NIfTI file: gzip-compressed when ``path`` ends in ``.gz``
    (kept files), plain ``.nii`` otherwise (a run's temporary inputs: several times faster to write and to read).

    :raises OSError: if the storage node reports a failure.
    """
    path = Path(path)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(int(path.suffix == ".gz"))
    if not storage.WriteData(detached_volume(image, ijk_to_ras, path.stem)) or not path.is_file():
        raise OSError(f"Could not write the temporary image {path}.")
    return path


def read_nifti(path: Path | str, name: str | None = None):
    """Read a NIfTI file into a detached ``vtkMRMLScalarVolumeNode`` (IJK→RAS from the file).

    :raises OSError: if the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"The engine output {path} is missing.")
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name or path.name.split(".")[0])
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise OSError(f"Could not read the engine output {path}.")
    return node


def array_kji(node) -> np.ndarray:
    """Voxel array of a (possibly detached) scalar volume node, KJI order, sharing VTK's memory."""
    return _image_array(node.GetImageData())


def _image_array(image: vtk.vtkImageData) -> np.ndarray:
    """Voxel array (KJI) of a ``vtkImageData``, sharing its memory."""
    shape = tuple(reversed(image.GetDimensions()))
    return vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def image_from_array(array_kji_values: np.ndarray) -> vtk.vtkImageData:
    """A new ``vtkImageData`` (origin 0, spacing 1) holding a deep copy of a KJI array."""
    values = np.ascontiguousarray(array_kji_values)
    image = vtk.vtkImageData()
    image.SetDimensions(values.shape[2], values.shape[1], values.shape[0])
    vtk_array = vtk.util.numpy_support.numpy_to_vtk(values.ravel(), deep=True)
    image.GetPointData().SetScalars(vtk_array)
    return image


def padded_image(node, dimensions_ijk: tuple[int, int, int], first_ijk: tuple[int, int, int]) -> vtk.vtkImageData:
    """A new image of ``dimensions_ijk`` voxels, zero but for ``node``'s voxels placed from ``first_ijk`` on."""
    values = array_kji(node)
    image = vtk.vtkImageData()
    image.SetDimensions(*dimensions_ijk)
    image.AllocateScalars(node.GetImageData().GetScalarType(), 1)
    full = _image_array(image)  # a view of the new image's memory: filled in place, no copy
    full.fill(0)
    i, j, k = first_ijk
    full[k:k + values.shape[0], j:j + values.shape[1], i:i + values.shape[2]] = values
    return image


def array_kji_image(image: vtk.vtkImageData) -> np.ndarray:
    """Voxel array (KJI) of a bare ``vtkImageData`` (copy)."""
    return np.array(_image_array(image))
