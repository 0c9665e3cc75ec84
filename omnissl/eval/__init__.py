"""Evaluation of frozen encoders."""

from omnissl.eval.probe import format_table, run_probes

__all__ = ["format_table", "run_probes"]
