"""The command line: a thin layer over the library. Each command lives in its own module, named
after it (shared options in ``options.py``), parses its options, calls the library and prints;
it imports the heavy parts (NumPy, pandas) only when it runs. The group turns an ``NnlabError``
into one message on stderr and exit status 2."""

from __future__ import annotations

import os
import sys

import click

from nnlab import __version__


class Group(click.Group):
    """Lists commands in the order they were added, and reports nnlab errors without traceback."""

    def list_commands(self, ctx):
        return list(self.commands)

    def invoke(self, ctx):
        from nnlab.errors import NnlabError

        try:
            return super().invoke(ctx)
        except NnlabError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except OSError as e:  # one no reader or writer named: a full disk, a permission, ...
            if isinstance(e, BrokenPipeError) or os.environ.get("NNLAB_DEBUG"):
                raise
            from nnlab.errors import StorageError

            click.echo(f"error: {StorageError(e, e.filename, doing=None)}", err=True)
            sys.exit(StorageError.exit_code)
        except MemoryError as e:  # an allocation no size check foresaw: the machine is full
            detail = f" ({e})" if str(e) else ""
            click.echo(
                f"error: out of memory{detail}: the command needs more memory than is free. "
                "A smaller training.batch_size, fewer units or data.subset need less; files "
                "already written are kept.",
                err=True,
            )
            sys.exit(1)
        except Exception as e:
            if os.environ.get("NNLAB_DEBUG"):
                raise
            import traceback

            frame = traceback.extract_tb(e.__traceback__)[-1]
            click.echo(
                f"internal error (a bug in nnlab): {type(e).__name__}: {e}\n"
                f"  at {frame.filename}:{frame.lineno}; NNLAB_DEBUG=1 shows the traceback",
                err=True,
            )
            sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnlab")
def cli():
    """nnlab: neural-network experiments, one command each.

    \b
    Examples:
      nnlab train configs/xor.yaml
      nnlab train configs/digits.yaml --set optimizer.lr=0.01 --set training.seed=3
      nnlab config configs/digits.yaml          # the config with every default filled in
      nnlab list initializers                   # what a key accepts

    Exit status: 0 success, 1 failed, 2 bad config or input, a damaged file or one that
    cannot be written (a full disk, a read-only folder), 3 training diverged, 130/143
    interrupted (Ctrl-C / SIGTERM).
    """


def _register() -> None:
    """Add the commands, one module each (named after its command: list's is list_, since a
    submodule named list would shadow the builtin in this package), in the order --help lists."""
    from nnlab.cli.activations import activations
    from nnlab.cli.compare import compare
    from nnlab.cli.config import config
    from nnlab.cli.diff import diff
    from nnlab.cli.explain import explain
    from nnlab.cli.export import export
    from nnlab.cli.export_runs import export_runs
    from nnlab.cli.generate import generate
    from nnlab.cli.gradcheck import gradcheck
    from nnlab.cli.importance import importance
    from nnlab.cli.invert import invert
    from nnlab.cli.list_ import list_
    from nnlab.cli.lr_find import lr_find
    from nnlab.cli.plot import plot
    from nnlab.cli.predict import predict
    from nnlab.cli.probe import probe
    from nnlab.cli.report import report
    from nnlab.cli.sweep import sweep
    from nnlab.cli.train import train
    from nnlab.cli.validate import validate

    for command in (
        train,
        validate,
        config,
        list_,
        sweep,
        compare,
        diff,
        importance,
        plot,
        report,
        export_runs,
        predict,
        export,
        invert,
        gradcheck,
        probe,
        lr_find,
        explain,
        generate,
        activations,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="nnlab")
