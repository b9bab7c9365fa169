"""Segmentation anatomy: per-structure geometry, relations between structures, label names
and the stored frame."""
