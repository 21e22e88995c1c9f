"""``movie-recon``: the command line front end. Each subcommand calls the same core functions
(:mod:`movie_reconstruction.pipeline`) as the napari widgets.

Exit codes: 0 success; 1 bad input, an unwritable place or a results folder in use by another
run (one line on stderr naming the file and the problem);
2 usage error; 3 some tasks failed (the finished ones are kept; re-run to retry the rest);
4 an unexpected error (one line; ``--debug`` shows the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import functools
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from . import _cli_commands as commands
from ._cli_commands import EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TASKS_FAILED, EXIT_USAGE  # noqa: F401
from .cli_options import add_setting_options
from .console import configure_console, show_warning
from .errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse with examples kept as written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


# ------------------------------------------------------------------------------------ parser
def _common(p, *, cluster=False, scheduler="local"):
    if cluster:
        local, none = ("'local' (default)", "'none'") if scheduler == "local" else ("'local'", "'none' (default)")
        p.add_argument("--scheduler", default=scheduler, metavar="ADDRESS",
                       help=f"{local}: a Dask LocalCluster sized to this machine; {none}: run in this process; "
                            "or the address of an existing Dask scheduler (tcp://host:8786, or a scheduler JSON file)")
        p.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="import this Python module first, to register its encoder kinds and losses (repeatable; "
                        "also read from MOVIE_RECON_PLUGINS; docs/architecture.md)")
    _verbose_option(p, default=argparse.SUPPRESS)


def _verbose_option(p, default):
    # SUPPRESS on the subcommands, so that "movie-recon --verbose demo" is not reset by the subparser
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="also show dependencies' log messages and warnings")


_RUN_OPTIONS = ("device", "seed", "threads", "retries", "overwrite", "loss")
_EPILOG = (
    "Pipeline: extract (suite2p) -> build (align) -> train (encoders) -> reconstruct -> evaluate -> report.\n\n"
    "Examples:\n"
    "  movie-recon demo --quick                      # the whole pipeline on a simulated mouse\n"
    "  movie-recon extract session.toml -o results/\n"
    "  movie-recon build session.toml -o results/\n"
    "  movie-recon train results/ --models 3\n"
    "  movie-recon reconstruct results/\n"
    "  movie-recon report results/\n"
    "  movie-recon info results/\n\n"
    "Every setting (docs/settings.md) is an option of the commands whose stage uses it, and can come from a\n"
    "settings file (--settings FILE.toml).\n\n"
    "Exit codes: 0 success, 1 bad input, 2 usage, 3 some tasks failed (finished work kept), 4 internal error."
)


def _command(sub, name: str, func, help: str, description: str, examples: str, *, stages=(), only=(), skip=(),
             cluster=False, scheduler="local"):
    p = sub.add_parser(name, help=help, description=description, epilog="Examples:\n" + examples)
    p.set_defaults(func=func)
    return p, lambda: (add_setting_options(p, stages, only=only, skip=skip), _common(p, cluster=cluster,
                                                                                      scheduler=scheduler))


# long: the subcommands one after another, each its positional arguments, then its stages'
# settings (made from the settings schema) and the common options
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="movie-recon", description="Reconstruct the movie a mouse saw from its visual cortex activity.",
                     epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    _verbose_option(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="versions, the compute device, and what a results folder holds",
                       description="Print versions and the device; with a results folder, what it holds.",
                       epilog="Examples:\n  movie-recon info\n  movie-recon info movie-recon-demo/")
    p.add_argument("results", nargs="?", type=Path, help="a results folder")
    _verbose_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=commands.cmd_info)

    p, finish = _command(
        sub, "demo", commands.cmd_demo, "run the whole pipeline on a simulated session",
        "Simulate a two-photon session of mouse V1, then extract, build, train, reconstruct, run the controls and "
        "write a report. Needs no data and no network. It runs in this process by default: it is sized for a 2-core "
        "laptop, where a local Dask cluster measured slower (docs/user-guide.md).",
        "  movie-recon demo                 # the full demo session\n"
        "  movie-recon demo --quick         # a short session (timings: docs/user-guide.md)\n"
        "  movie-recon demo -o /tmp/demo --scheduler local   # on a local Dask cluster",
        stages=("extract", "build", "train", "reconstruct", "controls", "run"), cluster=True, scheduler="none")
    p.add_argument("--quick", action="store_true", help="a short session, a small ensemble and fewer controls")
    p.add_argument("-o", "--output", type=Path, help="results folder (default ./movie-recon-demo[-quick]); reused to resume")
    finish()

    p, finish = _command(
        sub, "extract", commands.cmd_extract, "suite2p on a session's raw stack",
        "Run suite2p on the raw imaging of a session manifest (or on raw TIFF/HDF5 files) into "
        "RESULTS/extraction/suite2p. A finished identical run is reused; an interrupted one resumes.",
        "  movie-recon extract session.toml -o results/\n"
        "  movie-recon extract raw/*.tif --fs 30 --tau 0.7 --diameter 10 -o results/\n"
        "  movie-recon extract session.toml -o results/ --small-fov --cell-threshold 0",
        stages=("extract",), only=("device", "overwrite"))
    p.add_argument("inputs", nargs="+", help="a session manifest (.toml, or a folder holding one), or raw TIFF/HDF5 files")
    p.add_argument("-o", "--output", type=Path, required=True, help="results folder")
    finish()

    p, finish = _command(
        sub, "build", commands.cmd_build, "align traces and behaviour onto the stimulus frames",
        "Cut the session into trials on the stimulus clock (see docs/manifest.md) and save the recording as "
        "RESULTS/recording (Sensorium 2023 layout).",
        "  movie-recon build session.toml -o results/\n"
        "  movie-recon build session.toml -o results/ --suite2p old_run/suite2p\n"
        "  movie-recon build session.nwb -o results/ --nwb-response Deconvolved",
        stages=("build",), only=("cell_threshold",))
    p.add_argument("manifest", type=Path, help="the session manifest (.toml) or an ophys NWB file (.nwb)")
    p.add_argument("-o", "--output", type=Path, required=True, help="results folder")
    p.add_argument("--suite2p", type=Path, default=None, help="an existing suite2p output folder (default: RESULTS/extraction)")
    p.add_argument("--nwb-response", default=None, help="NWB: the RoiResponseSeries to use, by name (when there are several)")
    p.add_argument("--nwb-stimulus", default=None, help="NWB: the stimulus IndexSeries, presentation table or ImageSeries")
    finish()

    p = sub.add_parser("export-nwb", help="write the results as a new NWB file",
                       description="Write the reconstructions and stimuli (ImageSeries on the session clock), the mask "
                                   "and ROI images and the metrics and controls tables into a new NWB file. The source "
                                   "session is referenced, never modified.",
                       epilog="Example:\n  movie-recon export-nwb results/ results.nwb --source session.nwb")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("out", type=Path, help="the NWB file to write")
    p.add_argument("--source", type=Path, default=None, help="the session's NWB file or manifest (for the session clock)")
    p.add_argument("--age", default=None, help="the mouse's age as ISO 8601 (P90D), when the source has no subject")
    p.add_argument("--sex", default="U", choices=("F", "M", "U", "O"), help="with --age: the mouse's sex")
    p.add_argument("--subject-id", default="unknown", help="with --age: the mouse's id")
    _common(p)
    p.set_defaults(func=commands.cmd_export_nwb)

    p, finish = _command(
        sub, "train", commands.cmd_train, "train the encoder ensemble",
        "Train an ensemble of encoders (one Dask task per member; with --ensemble-method snapshots, one task with all "
        "the workers' threads) on RESULTS/recording or on a Sensorium 2023 mouse folder. Checkpoints go to "
        "RESULTS/models; members already trained with the same settings are kept.",
        "  movie-recon train results/\n"
        "  movie-recon train results/ --models 7 --preset large --device cuda --scheduler none\n"
        "  movie-recon train results/ --models 3 --max-minutes 20 --ensemble-method snapshots   # one run, all threads\n"
        "  movie-recon train results/ --recording sensorium/dynamic29515-10-12-Video-full\n"
        "  movie-recon train results/ --scheduler tcp://10.0.0.5:8786\n"
        "  movie-recon train results/ --plugin my_lab.encoders --encoder-kind pooled-linear --loss mse",
        stages=("train",), only=_RUN_OPTIONS, cluster=True)
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("--recording", type=Path, default=None, help="a Sensorium 2023 mouse folder (default: RESULTS/recording)")
    finish()

    p, finish = _command(
        sub, "reconstruct", commands.cmd_reconstruct, "reconstruct test trials, run the controls, judge them",
        "Reconstruct trials (trials x members are Dask tasks) into RESULTS/reconstructions with the stimulus, as "
        "TIFF, then run the controls and the statistics. Re-running resumes: finished trials are not redone.",
        "  movie-recon reconstruct results/\n"
        "  movie-recon reconstruct results/ --trials 3,7 --iterations 400 --no-controls\n"
        "  movie-recon reconstruct results/ --learning-rate 3 --jitter 1 --settings my_settings.toml\n"
        "  movie-recon reconstruct results/ --scheduler scheduler.json",
        stages=("reconstruct", "controls"), only=_RUN_OPTIONS, skip=("mask_method",), cluster=True)
    p.add_argument("results", type=Path, help="results folder with trained models")
    p.add_argument("--recording", type=Path, default=None, help="recording folder (default: the one the models were trained on)")
    p.add_argument("--report", action="store_true", help="write the report afterwards")
    finish()

    p = sub.add_parser("evaluate", help="score the reconstructions (and optionally the encoders)",
                       description="Re-score the stored reconstructions against their stimuli (masked correlation, "
                                   "SSIM, static and moving parts), test them against each control, identify each "
                                   "trial's stimulus among distractors, and rewrite RESULTS/metrics.json, "
                                   "controls.json and reliability_map.npy (schema: docs/reconstruction.md).",
                       epilog="Examples:\n  movie-recon evaluate results/\n  movie-recon evaluate results/ --encoders")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("--drop-frames", type=int, default=30, help="frames dropped at the start of each trial (default 30)")
    p.add_argument("--encoders", action="store_true", help="also score each encoder's predictions on the test trials")
    p.add_argument("--recording", type=Path, default=None, help="recording folder for --encoders")
    _common(p)
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser("report", help="write the HTML report of a results folder",
                       description="Render one self-contained HTML file (figures and animation embedded).",
                       epilog="Examples:\n  movie-recon report results/\n  movie-recon report results/ -o ~/mouse12.html")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default RESULTS/report.html)")
    _common(p)
    p.set_defaults(func=commands.cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    with warnings.catch_warnings():  # scoped, so that main() called in-process leaves no filters behind
        configure_console(args.verbose)
        warnings.showwarning = functools.partial(show_warning, args.command, warnings.showwarning)
        return _run(args)


def _run(args) -> int:
    try:
        if getattr(args, "plugins", None):
            from .plugins import use_plugins

            use_plugins(args.plugins)
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"movie-recon {args.command}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        if exc.errno not in _PLACE_ERRORS:
            return _unexpected(args, exc)
        # the machine's files, not a bug: a full disk, a read-only mount, a permission
        print(f"movie-recon {args.command}: {exc.filename or '?'}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:
        from .distributed import TasksFailed

        if not isinstance(exc, TasksFailed):
            return _unexpected(args, exc)
        print(f"movie-recon {args.command}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_TASKS_FAILED
    except KeyboardInterrupt:
        print(f"movie-recon {args.command}: interrupted (finished work is kept; re-run to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED


_PLACE_ERRORS = {getattr(errno, name) for name in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "EISDIR",
                                                  "ENAMETOOLONG") if hasattr(errno, name)}


def _unexpected(args, exc: Exception) -> int:
    """One line for the user; the traceback with --debug."""
    if args.debug:
        raise exc
    first = str(exc).strip().splitlines()
    print(f"movie-recon {args.command}: {type(exc).__name__}: {first[0] if first else ''} (--debug shows the traceback)",
          file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
