"""``movie-recon``: the command line front end. Each subcommand calls the same core functions
as the napari widgets. Exit codes: 0 success, 1 bad input (one line on stderr), 2 usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import InputError


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    print(f"napari-movie-reconstruction {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    try:
        import torch

        from .device import describe, pick_device

        print(f"torch {torch.__version__}; device: {describe(pick_device())}")
    except ImportError:
        print("torch: not installed")
    for name in ("suite2p", "napari", "numpy", "dask"):
        try:
            module = __import__(name)
            print(f"{name} {getattr(module, '__version__', getattr(module, 'version', '?'))}")
        except ImportError:
            print(f"{name}: not installed")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    print(
        "movie-recon demo: not ready yet. The end-to-end demo (simulated session -> suite2p -> encoder -> "
        "reconstruction) lands with the simulator, encoder and reconstruction stages.",
        file=sys.stderr,
    )
    return 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movie-recon",
        description="Reconstruct the movie a mouse saw from its visual cortex activity.",
        epilog="Examples:\n  movie-recon info\n  movie-recon demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions and the compute device", description="Print versions and the device.")
    info.set_defaults(func=_cmd_info)
    demo = sub.add_parser("demo", help="run the whole pipeline on a simulated session")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"movie-recon {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"movie-recon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
