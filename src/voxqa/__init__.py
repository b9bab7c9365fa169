"""voxqa: spatially grounded question answering over medical volumes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voxqa")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
