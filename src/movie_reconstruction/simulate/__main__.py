"""``python -m movie_reconstruction.simulate OUT [--preset quick] [--seed 0]``: write a simulated session.

``add_arguments`` / ``run_from_args`` let ``movie-recon simulate`` reuse the same options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("out", type=Path, help="session folder to write (must be empty or absent)")
    parser.add_argument("--preset", default="quick", choices=["default", "quick", "tiny"], help="session size (default: quick)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--neurons", type=int, help="number of neurons (overrides the preset)")
    parser.add_argument("--frame-rate", type=float, help="imaging frame rate in Hz (overrides the preset)")
    parser.add_argument("--fov", type=int, nargs=2, metavar=("Y", "X"), help="field of view in pixels")
    parser.add_argument("--indicator", help="calcium indicator, e.g. GCaMP6f, GCaMP6s, jGCaMP8m")
    parser.add_argument("--coverage", type=float, help="fraction of the screen the receptive fields cover")
    parser.add_argument("--train-videos", nargs="+", default=None, help="video files to cut training clips from")
    parser.add_argument("--test-videos", nargs="+", default=None, help="video files to cut test clips from")
    parser.add_argument("--sync-signals", action="store_true",
                        help="write the DAQ's raw sync signals (frame clock, vsync, photodiode, a quadrature wheel "
                             "encoder) instead of timestamp files and running.csv")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing session folder")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    from ..progress import run_for_console
    from .config import SimulationConfig
    from .session import simulate_session_job

    config = SimulationConfig.preset(args.preset)
    imaging, population, stimulus = {}, {}, {}
    if args.neurons is not None:
        population["n_neurons"] = args.neurons
    if args.coverage is not None:
        population["coverage"] = args.coverage
    if args.frame_rate is not None:
        imaging["frame_rate"] = args.frame_rate
    if args.fov is not None:
        imaging["fov_shape"] = tuple(args.fov)
    if args.indicator is not None:
        imaging["indicator"] = args.indicator
    if args.train_videos:
        stimulus["train_videos"] = tuple(str(Path(p).resolve()) for p in args.train_videos)
    if args.test_videos:
        stimulus["test_videos"] = tuple(str(Path(p).resolve()) for p in args.test_videos)
    daq = {"write_sync_signals": True} if getattr(args, "sync_signals", False) else {}
    config = config.replace(imaging=imaging, population=population, stimulus=stimulus, daq=daq)
    session = run_for_console(simulate_session_job(args.out, config, args.seed, overwrite=args.overwrite),
                              desc="simulating")
    print(
        f"{session.path}: {session.n_neurons} neurons, {session.n_imaging_frames} imaging frames "
        f"({session.duration_s:.0f} s), manifest {session.manifest.name}; truth in ground_truth/"
    )
    return 0


def main(argv=None) -> int:
    from ..errors import InputError

    parser = add_arguments(argparse.ArgumentParser(prog="python -m movie_reconstruction.simulate", description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
