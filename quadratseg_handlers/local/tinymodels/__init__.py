"""Builders of small real models (random weights) saved as real checkpoint files.

Tests, the demo and packaging tests load them through the same code path as real weights.
"""
