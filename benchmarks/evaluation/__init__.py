"""Helpers of ``benchmarks/eval_report.py``: cases, measurements, figures, markdown tables and text sections."""
