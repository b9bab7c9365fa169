"""Annotation sources: each turns one dataset's files into voxqa Studies.

A source module exposes ``NAME`` and a ``load_studies(...)`` function returning
``list[Study]`` and recording every repair and drop in a BuildReport. Register new sources
in ``SOURCES`` below.
"""

from voxqa.sources import fastmri_plus

SOURCES = {fastmri_plus.NAME: fastmri_plus}
