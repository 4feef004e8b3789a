"""Evaluation: segmentation and uncertainty metrics, and the per-case evaluation run."""
