"""Reading, checking, normalising and slicing brain-MRI cases; the procedural phantom.

Modules, in data-flow order: :mod:`modalities` (which file is which modality), :mod:`loading`
(NIfTI → :class:`~DiffSegExtension.data.loading.Case` on one grid), :mod:`normalise` (foreground and
[0, 1] scaling), :mod:`geometry` (exact reorientation so slices are axial), :mod:`preparation`
(volume → network-ready slices and back), :mod:`training_data` (random training batches) and
:mod:`phantom` (synthetic brain-tumour volumes for the demo and tests).
"""
