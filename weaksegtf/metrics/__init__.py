"""Segmentation metrics. ``confusion`` is pure numpy (no TensorFlow)."""
