"""Helpers of ``benchmarks/eval_report.py``: measurements (``measure``), figures (``figures``), markdown (``markdown``)."""
