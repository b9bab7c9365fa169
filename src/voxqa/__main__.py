"""`python -m voxqa` runs the command line."""

from voxqa.cli import app

app(prog_name="voxqa")
