"""The `voxqa` command line (typer + rich): the app, its one error rule, and the command table.

Commands live by family in this package's modules and are registered below, in the order
``voxqa --help`` lists them. A command raises a ``VoxqaError`` for anything the user can fix;
``_Command.invoke`` shows it as one line (``error: ...``, exit code 2), or with its traceback
under ``voxqa --debug``. Every other exception is a bug and ends in its traceback. SIGTERM is
handled like Ctrl-C (workers stopped, work finished so far kept), and both end a command with
``INTERRUPTED`` (130).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from voxqa import __version__
from voxqa.cli import build, data, demo, evaluate, importers, train
from voxqa.cli.common import INTERRUPTED, console
from voxqa.errors import VoxqaError
from voxqa.views.terminal import markup_safe, printable


class _PlainTypes:
    """Help without Python type names: flags show no value type, an argument only its metavar."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
            elif isinstance(param, TyperArgument) and param.metavar is not None:
                param.display_type_rich = lambda ctx: None  # the metavar says it already
        return params


def _sigterm_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM does what Ctrl-C does at this moment: whatever SIGINT handler is in place runs
    (a pool's stop flag, asyncio's cancellation of an eval), else KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


class _Command(_PlainTypes, TyperCommand):
    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        """The command, with a ``VoxqaError`` shown as one line (exit code 2) unless --debug,
        and SIGTERM handled like Ctrl-C (exit code ``INTERRUPTED``)."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c) if main else None
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # commands with work to resume say so themselves
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=INTERRUPTED) from None
        except VoxqaError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            from voxqa.eval.redact import redact

            console.print(f"[bold red]error:[/] {markup_safe(redact(str(exc)))}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)


class _Group(_PlainTypes, TyperGroup):
    pass


app = typer.Typer(help="voxqa: spatially grounded QA over medical volumes.", no_args_is_help=True, cls=_Group)
build_app = typer.Typer(help="Build a QA dataset folder from a source.", no_args_is_help=True, cls=_Group)
import_app = typer.Typer(help="Import a published benchmark in its released format as a voxqa dataset (or a released run as a voxqa run); see docs/importers.md.", no_args_is_help=True, cls=_Group)
app.add_typer(build_app, name="build")


class _PrintableFormatter(logging.Formatter):
    """Log lines (which quote dataset and server text) with control characters shown as
    escapes (``voxqa.views.terminal.printable``)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def _print_version(value: bool) -> None:
    if value:  # eager: runs before typer asks for a command
        print(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show errors with their traceback, and voxqa's log messages on stderr.")] = False,
) -> None:
    # library code reports through module loggers (voxqa.*), shown with --debug only;
    # _Command.invoke also reads --debug from the root context
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PrintableFormatter("%(name)s: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])


_COMMANDS = (  # (typer app, command name or None for the function's name, function), in help order
    (build_app, "fastmri-plus", build.build_fastmri_plus),
    (build_app, "segmentation", build.build_segmentation),
    (build_app, "reports", build.build_reports),
    (app, "check-reports", build.check_reports),
    (build_app, "knee-grading", build.build_knee_grading),
    (app, None, data.render),
    (app, None, data.export),
    (app, "eval", evaluate.eval_),
    (app, None, evaluate.score),
    (app, None, evaluate.compare),
    (app, None, evaluate.report),
    (app, None, train.train),
    (app, None, data.profiles),
    (app, None, data.audit),
    (app, None, data.inspect),
    (app, None, data.phantom),
    (app, None, demo.demo),
    (import_app, "sgmri-vqa", importers.import_sgmri_vqa),
    (import_app, "ct-spatialvqa", importers.import_ct_spatialvqa),
    (import_app, "ct-spatialvqa-run", importers.import_ct_spatialvqa_run),
    (import_app, "reasonknee", importers.import_reasonknee),
)
for _typer, _name, _function in _COMMANDS:
    _typer.command(_name, cls=_Command)(_function)
app.add_typer(import_app, name="import")
