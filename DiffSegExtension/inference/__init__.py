"""Segmentation of volumes with an implicit ensemble: batching, progress, outputs."""
