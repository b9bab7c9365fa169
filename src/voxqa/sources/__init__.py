"""Annotation sources: each turns one dataset's files into voxqa Studies.

A source is a class implementing ``voxqa.sources.base.Source`` (its inputs, ``load``, its
question families and manifest keys); ``voxqa.build.run_build`` builds any of them. Register
new sources in ``voxqa.sources.registry.SOURCES`` (a module of its own, so that importing one
helper of this package, such as ``sources.csvinput`` for the radiology-report reader, does not
import every source).
"""
