"""Scoring a served function against a lab's own CVAT export (``quadratseg evaluate``)."""

from quadratseg_handlers.evaluate.evaluation import Evaluation, evaluate

__all__ = ["Evaluation", "evaluate"]
