"""DiffSeg engine: diffusion-model brain-tumour segmentation with implicit ensembles.

Pure Python + torch; never imports Slicer or Qt. Entry points: the ``diffseg`` CLI
(:mod:`DiffSegExtension.cli`), also runnable as ``python -m DiffSegExtension``.
"""

__version__ = "0.1.0"
