"""``movie-recon``: the command line front end. Each subcommand calls the same core functions
(:mod:`movie_reconstruction.pipeline`) as the napari widgets.

Exit codes: 0 success; 1 bad input, an unwritable place or a results folder in use by another
run (one line on stderr naming the file and the problem);
2 usage error; 3 some tasks failed (the finished ones are kept; re-run to retry the rest);
4 an unexpected error (one line; ``--debug`` shows the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .console import configure_console, show_warning
from .errors import InputError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_TASKS_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class _Parser(argparse.ArgumentParser):
    """argparse with examples kept as written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


# ------------------------------------------------------------------------------------ helpers
def _drive(job, args):
    from .progress import run, run_for_console

    if getattr(args, "quiet", False):
        return run(job)
    return run_for_console(job, sys.stderr)


@contextlib.contextmanager
def _client(args):
    scheduler = getattr(args, "scheduler", "none")
    if scheduler in (None, "none", "serial"):
        yield None
        return
    from .distributed import dask_client

    address = None if scheduler == "local" else scheduler
    with dask_client(address, n_workers=getattr(args, "workers", None)) as client:
        if not getattr(args, "quiet", False):
            workers = client.scheduler_info().get("workers", {})
            print(f"dask: {len(workers)} worker(s) at {client.scheduler.address}", file=sys.stderr)
        yield client


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _settings(args, base=None):
    from .pipeline import PipelineSettings, with_changes

    base = base or PipelineSettings()
    changes = {}
    for name, attr in (
        ("fs", "fs"), ("tau", "tau"), ("diameter", "diameter"), ("signal", "signal"), ("models", "n_models"),
        ("preset", "preset"), ("epochs", "max_epochs"), ("max_minutes", "max_minutes"), ("init_core", "init_core"),
        ("iterations", "iterations"), ("trials", "trials"), ("neuron_counts", "neuron_counts"), ("device", "device"),
        ("seed", "seed"), ("threads", "threads"), ("retries", "retries"), ("control_variants", "control_variants"),
        ("encoder_kind", "encoder_kind"), ("loss", "loss"),
    ):
        if hasattr(args, name):
            changes[attr] = getattr(args, name)
    settings = with_changes(base, **changes)
    from dataclasses import replace

    if getattr(args, "cell_threshold", None) is not None:
        settings = replace(settings, cell_threshold=None if args.cell_threshold < 0 else args.cell_threshold)
    if getattr(args, "small_fov", False):
        settings = replace(settings, small_fov=True)
    if getattr(args, "overwrite", False):
        settings = replace(settings, overwrite=True)
    if getattr(args, "controls", None) is not None:
        settings = replace(settings, controls=args.controls)
    return settings


def _results_for_writing(path, *, create: bool = True):
    """The results folder, locked against other writers for the command's ``with`` block."""
    from .results import ResultsFolder

    return ResultsFolder.writing(path, command=["movie-recon", *sys.argv[1:]], create=create)


def _print_summary(summary, results_path: Path) -> int:
    for tid, r in summary.correlations.items():
        print(f"trial {tid}: masked r = {r:.3f}")
    if summary.resumed:
        print(f"resumed: {len(summary.resumed)} trial(s) were already done and not redone")
    if summary.failed:
        for line in summary.failed[:10]:
            print(f"failed: {line}", file=sys.stderr)
        print(f"movie-recon: {len(summary.failed)} task(s) failed; {len(summary.correlations)} finished trial(s) are kept "
              f"in {results_path}. Re-run the same command to retry the rest.", file=sys.stderr)
        return EXIT_TASKS_FAILED
    return EXIT_OK


# ------------------------------------------------------------------------------------ commands
# The packages whose versions decide whether a run behaves as documented (bug reports need them).
_REPORTED_PACKAGES = ("torch", "numpy", "scipy", "suite2p", "napari", "magicgui", "npe2", "qtpy", "PyQt6",
                      "dask", "distributed", "tifffile", "av", "safetensors")


def _cmd_info(args) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    folder = None
    if args.results is not None:
        from .results import ResultsFolder

        folder = ResultsFolder.open(args.results)  # bad input fails before anything is printed
    print(f"napari-movie-reconstruction {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    for name in _REPORTED_PACKAGES:
        try:  # the installed version, without importing (suite2p and napari are slow and chatty to import)
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name}: not installed")
    try:
        from .device import describe, pick_device

        print(f"device: {describe(pick_device())}")
    except ImportError:
        print("device: unknown (torch is not installed)")
    if folder is not None:
        print()
        for line in folder.summary_lines():
            print(line)
    return EXIT_OK


def _cmd_demo(args) -> int:
    from .pipeline import PipelineSettings, run_demo

    settings = _settings(args, PipelineSettings.demo(args.quick))
    out = Path(args.output or ("movie-recon-demo-quick" if args.quick else "movie-recon-demo"))
    with _client(args) as client:
        result = _drive(run_demo(out, quick=args.quick, settings=settings, client=client,
                                 command=["movie-recon", *sys.argv[1:]]), args)
    code = _print_summary(result.reconstruction, result.results)
    if result.controls:
        print(result.controls.get("verdict_table", ""))
    print(f"total {result.timings.get('total', 0):.0f} s")
    print(f"report: {result.report}")
    return code


def _require_existing(paths) -> None:
    """Missing input is named first, before any other complaint and before anything is written."""
    for path in paths:
        if path is not None and not Path(path).exists():
            raise InputError("not found", path)


def _cmd_extract(args) -> int:
    _require_existing(args.inputs)
    with _results_for_writing(args.output) as results:
        return _extract(args, results)


def _extract(args, results) -> int:
    from .pipeline import extract_stage

    inputs = [Path(p) for p in args.inputs]
    settings = _settings(args)
    if len(inputs) == 1 and (inputs[0].suffix == ".toml" or (inputs[0].is_dir() and any(inputs[0].glob("*.toml")))):
        traces = _drive(extract_stage(results, inputs[0], settings), args)
    else:
        from .extract import extract_traces, small_fov_overrides
        from .results import describe_inputs

        if settings.fs is None:
            raise InputError("raw files were given without a manifest: pass --fs (the volume rate, Hz) unless the TIFFs carry it")
        diameter = settings.diameter or 12.0
        job = extract_traces(inputs, results.extraction_dir, fs=settings.fs, tau=settings.tau or 1.0,
                             diameter=diameter, cell_threshold=settings.cell_threshold,
                             device=settings.device, settings=small_fov_overrides(diameter) if settings.small_fov else None,
                             overwrite=settings.overwrite)
        traces = _drive(job, args)
        results.write_rois(traces)
        results.record("extract", inputs=describe_inputs([("raw", p) for p in inputs]),
                       settings={"fs": settings.fs, "tau": settings.tau, "diameter": settings.diameter})
    for t in traces:
        print(f"plane {t.plane}: {t.n_cells} cells, {t.n_frames} frames at {t.frame_rate:g} Hz")
    print(f"suite2p output: {results.extraction_dir / 'suite2p'}")
    return EXIT_OK


def _cmd_build(args) -> int:
    _require_existing([args.manifest, args.suite2p])
    with _results_for_writing(args.output) as results:
        return _build(args, results)


def _build(args, results) -> int:
    from .pipeline import build_stage

    traces = None
    if args.suite2p is not None:
        from .io.suite2p_folder import read_suite2p_folder

        traces = read_suite2p_folder(args.suite2p, cell_threshold=_settings(args).cell_threshold)
        results.write_rois(traces)
    nwb_options = {k: v for k, v in (("response", args.nwb_response), ("stimulus", args.nwb_stimulus)) if v}
    recording = _drive(build_stage(results, args.manifest, traces, _settings(args), nwb_options=nwb_options), args)
    print(repr(recording))
    print(f"recording: {results.recording_dir}")
    return EXIT_OK


def _cmd_export_nwb(args) -> int:
    from .io.nwb_results import write_results_nwb

    subject = {"subject_id": args.subject_id, "species": "Mus musculus", "sex": args.sex, "age": args.age} if args.age else None
    out = write_results_nwb(args.results, args.out, source=args.source, subject=subject)
    print(f"wrote {out}")
    return EXIT_OK


def _cmd_train(args) -> int:
    from .pipeline import train_stage

    settings = _settings(args)
    with _results_for_writing(args.results) as results, _client(args) as client:
        checkpoints = _drive(train_stage(results, settings, recording_path=args.recording, client=client), args)
    from .model.budget import training_summary_lines
    from .results import load_results

    for line in training_summary_lines(load_results(results.path).checkpoints):
        print(line)
    print(f"{len(checkpoints)} model(s) in {results.models_dir}")
    return EXIT_OK


def _cmd_reconstruct(args) -> int:
    from .pipeline import controls_stage, reconstruct_stage, report_stage

    settings = _settings(args)
    with _results_for_writing(args.results) as results:
        with _client(args) as client:
            summary = _drive(reconstruct_stage(results, settings, recording_path=args.recording, client=client), args)
            code = _print_summary(summary, results.path)
            if code == EXIT_OK and settings.controls:
                if len(summary.trial_ids) < 2:
                    print("controls skipped: they need at least two trials", file=sys.stderr)
                else:
                    controls = _drive(controls_stage(results, settings, recording_path=args.recording, client=client), args)
                    print(controls["markdown"])
        stale = (results.read_controls() or {}).get("stale")
        if stale:
            print(f"controls.json is stale: it was computed from earlier reconstructions of trial(s) {stale}; "
                  "re-run the controls", file=sys.stderr)
        if args.report:
            print(f"report: {_drive(report_stage(results), args)}")
    return code


def _cmd_evaluate(args) -> int:
    with _results_for_writing(args.results, create=False) as folder:
        return _evaluate(args, folder)


def _evaluate(args, folder) -> int:
    import numpy as np

    from .reconstruct.metrics import ArtifactIndex, score_movie
    from .results import load_results

    sources = folder.trial_sources()  # the files scored below (the lock keeps them as they are)
    results = load_results(folder.path)
    if not results.trials:
        raise InputError("no reconstructed trials to evaluate (run `movie-recon reconstruct` first)", folder.path)
    mask = results.mask if results.mask is not None else np.ones(results.trials[0].stimulus.shape[1:], np.float32)
    rows = []
    print(f"{'trial':>6} {'masked r':>9} {'SSIM':>7} {ArtifactIndex.HEADER}")
    for trial in results.trials:
        scores = score_movie(trial.reconstruction, trial.stimulus, mask, drop_frames=args.drop_frames)
        rows.append({"trial_id": trial.trial_id, "tier": trial.tier, "correlation": scores.correlation,
                     "ssim": scores.ssim, "members": trial.members, "frames": trial.n_frames, **scores.artifacts.to_dict()})
        print(f"{trial.trial_id:>6} {scores.correlation:>9.3f} {scores.ssim:>7.3f} {scores.artifacts.columns()}")
    corr = [r["correlation"] for r in rows]
    summary = {"trials": len(rows), "mean_correlation": float(np.mean(corr)), "median_correlation": float(np.median(corr)),
               "mean_ssim": float(np.mean([r["ssim"] for r in rows])), "drop_frames": args.drop_frames,
               "convention": "Pearson r over pixels with alpha >= 1 x frames, first frames dropped (Bauer et al. 2025)"}
    if args.encoders:
        summary["encoders"] = _evaluate_encoders(folder, args)
    folder.write_metrics(rows, summary, {t.trial_id: sources[t.trial_id] for t in results.trials})
    print(f"mean masked r = {summary['mean_correlation']:.3f} over {len(rows)} trial(s); metrics: {folder.path / 'metrics.csv'}")
    from .evaluation import evaluate_results

    print("\n".join(evaluate_results(folder.path, drop_frames=args.drop_frames).verdict_lines()))
    return EXIT_OK


def _evaluate_encoders(folder, args) -> list[dict]:
    from .model import evaluate_encoder, load_encoder
    from .pipeline import _recording_path_of, open_recording

    recording = open_recording(_recording_path_of(folder, args.recording))
    out = []
    for path in folder.checkpoints():
        encoder = load_encoder(path, recording)
        scores = evaluate_encoder(encoder, recording, "test")
        out.append({"model": path.name, **{k: v for k, v in scores.items() if isinstance(v, (int, float))}})
        print(f"{path.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[-1].items() if isinstance(v, float)))
    return out


def _cmd_report(args) -> int:
    from .report import write_report
    from .results import ResultsFolder

    from .errors import check_writable

    folder = ResultsFolder.open(args.results)
    output = Path(args.output) if args.output is not None else folder.report_path
    if output.absolute().parent != folder.path.absolute():  # writes elsewhere: the folder is only read
        check_writable(output.parent)
        path = write_report(folder.path, output)
    else:
        with _results_for_writing(folder.path, create=False):
            path = write_report(folder.path, output)
    print(f"report: {path}")
    return EXIT_OK


# ------------------------------------------------------------------------------------ parser
def _common(p, *, device=True, cluster=False, seed=False, scheduler="local"):
    if device:
        p.add_argument("--device", default=None, help="auto (CUDA, then MPS, then CPU; the default), cpu, cuda, cuda:1, mps")
    if seed:
        p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    if cluster:
        local, none = ("'local' (default)", "'none'") if scheduler == "local" else ("'local'", "'none' (default)")
        p.add_argument("--scheduler", default=scheduler, metavar="ADDRESS",
                       help=f"{local}: a Dask LocalCluster sized to this machine; {none}: run in this process; "
                            "or the address of an existing Dask scheduler (tcp://host:8786, or a scheduler JSON file)")
        p.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: one per core)")
        p.add_argument("--threads", type=int, default=None, help="torch threads per task (default: the worker's)")
        p.add_argument("--retries", type=int, default=None, help="retries of a failed task before it is reported (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _plugin_option(p)
    _verbose_option(p, default=argparse.SUPPRESS)


def _plugin_option(p):
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="import this Python module first, to register its encoder kinds and losses (repeatable; "
                        "also read from MOVIE_RECON_PLUGINS; docs/architecture.md)")


def _loss_option(p, what: str):
    p.add_argument("--loss", default=None, metavar="NAME",
                   help=f"the loss {what}, from the loss table: poisson (default), mse, or one a plugin registers")


def _verbose_option(p, default):
    # SUPPRESS on the subcommands, so that "movie-recon --verbose demo" is not reset by the subparser
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="also show dependencies' log messages and warnings")


# long: the command line's option table, one subcommand after another; issue 22 generates it from
# the settings schema.
def build_parser() -> argparse.ArgumentParser:
    from .model.config import PRESETS

    parser = _Parser(
        prog="movie-recon",
        description="Reconstruct the movie a mouse saw from its visual cortex activity.",
        epilog=(
            "Pipeline: extract (suite2p) -> build (align) -> train (encoders) -> reconstruct -> evaluate -> report.\n\n"
            "Examples:\n"
            "  movie-recon demo --quick                      # the whole pipeline on a simulated mouse\n"
            "  movie-recon extract session.toml -o results/\n"
            "  movie-recon build session.toml -o results/\n"
            "  movie-recon train results/ --models 3\n"
            "  movie-recon reconstruct results/\n"
            "  movie-recon report results/\n"
            "  movie-recon info results/\n\n"
            "Exit codes: 0 success, 1 bad input, 2 usage, 3 some tasks failed (finished work kept), 4 internal error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    _verbose_option(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="versions, the compute device, and what a results folder holds",
                       description="Print versions and the device; with a results folder, what it holds.",
                       epilog="Examples:\n  movie-recon info\n  movie-recon info movie-recon-demo/")
    p.add_argument("results", nargs="?", type=Path, help="a results folder")
    _verbose_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="run the whole pipeline on a simulated session",
                       description="Simulate a two-photon session of mouse V1, then extract, build, train, reconstruct, "
                                   "run the controls and write a report. Needs no data and no network.",
                       epilog="Examples:\n  movie-recon demo                 # the full demo session\n"
                              "  movie-recon demo --quick         # a short session (timings: docs/user-guide.md)\n"
                              "  movie-recon demo -o /tmp/demo --scheduler local   # on a local Dask cluster\n\n"
                              "The demo runs in this process by default: it is sized for a 2-core laptop, where a local\n"
                              "Dask cluster measured slower (docs/user-guide.md).")
    p.add_argument("--quick", action="store_true", help="a short session, a small ensemble and fewer controls")
    p.add_argument("-o", "--output", type=Path, help="results folder (default ./movie-recon-demo[-quick]); reused to resume")
    _common(p, cluster=True, seed=True, scheduler="none")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("extract", help="suite2p on a session's raw stack",
                       description="Run suite2p on the raw imaging of a session manifest (or on raw TIFF/HDF5 files) "
                                   "into RESULTS/extraction/suite2p. A finished identical run is reused; an "
                                   "interrupted one resumes.",
                       epilog="Examples:\n  movie-recon extract session.toml -o results/\n"
                              "  movie-recon extract raw/*.tif --fs 30 --tau 0.7 --diameter 10 -o results/\n"
                              "  movie-recon extract session.toml -o results/ --small-fov --cell-threshold 0")
    p.add_argument("inputs", nargs="+", help="a session manifest (.toml, or a folder holding one), or raw TIFF/HDF5 files")
    p.add_argument("-o", "--output", type=Path, required=True, help="results folder")
    p.add_argument("--fs", type=float, default=None, help="imaging volume rate per plane (Hz)")
    p.add_argument("--tau", type=float, default=None, help="indicator decay time (s): ~0.7 GCaMP6f, 1.0-1.5 GCaMP6s")
    p.add_argument("--diameter", type=float, default=None, help="expected cell diameter (pixels)")
    p.add_argument("--cell-threshold", type=float, default=None,
                   help="classifier probability a ROI needs (default 0.5; negative: suite2p's own iscell)")
    p.add_argument("--small-fov", action="store_true", help="suite2p settings for a small, low-resolution field of view")
    p.add_argument("--overwrite", action="store_true", help="replace a suite2p folder made from other input or settings")
    _common(p)
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("build", help="align traces and behaviour onto the stimulus frames",
                       description="Cut the session into trials on the stimulus clock (see docs/manifest.md) and save "
                                   "the recording as RESULTS/recording (Sensorium 2023 layout).",
                       epilog="Examples:\n  movie-recon build session.toml -o results/\n"
                              "  movie-recon build session.toml -o results/ --suite2p old_run/suite2p\n"
                              "  movie-recon build session.nwb -o results/ --nwb-response Deconvolved")
    p.add_argument("manifest", type=Path, help="the session manifest (.toml) or an ophys NWB file (.nwb)")
    p.add_argument("-o", "--output", type=Path, required=True, help="results folder")
    p.add_argument("--suite2p", type=Path, default=None, help="an existing suite2p output folder (default: RESULTS/extraction)")
    p.add_argument("--nwb-response", default=None, help="NWB: the RoiResponseSeries to use, by name (when there are several)")
    p.add_argument("--nwb-stimulus", default=None, help="NWB: the stimulus IndexSeries, presentation table or ImageSeries")
    p.add_argument("--signal", choices=("spks", "F", "corrected"), default=None,
                   help="spks: deconvolved (default); F; corrected: F - 0.7 Fneu")
    p.add_argument("--cell-threshold", type=float, default=None, help="classifier probability a ROI needs (default 0.5)")
    _common(p, device=False)
    p.set_defaults(func=_cmd_build)

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
    _common(p, device=False)
    p.set_defaults(func=_cmd_export_nwb)

    p = sub.add_parser("train", help="train the encoder ensemble",
                       description="Train an ensemble of encoders (one Dask task per member) on RESULTS/recording or on "
                                   "a Sensorium 2023 mouse folder. Checkpoints go to RESULTS/models; members already "
                                   "trained with the same settings are kept.",
                       epilog="Examples:\n  movie-recon train results/\n"
                              "  movie-recon train results/ --models 7 --preset large --device cuda --scheduler none\n"
                              "  movie-recon train results/ --recording sensorium/dynamic29515-10-12-Video-full\n"
                              "  movie-recon train results/ --scheduler tcp://10.0.0.5:8786\n"
                              "  movie-recon train results/ --plugin my_lab.encoders --encoder-kind pooled-linear --loss mse")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("--recording", type=Path, default=None, help="a Sensorium 2023 mouse folder (default: RESULTS/recording)")
    p.add_argument("--models", type=int, default=None, help="ensemble size (default 3)")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="small: CPU-friendly (default); fast: half the cost, for quick looks; large: for GPUs")
    p.add_argument("--encoder-kind", default=None, metavar="KIND",
                   help="the registered encoder kind to train (default dynamic-cnn, the built-in; a plugin may add others)")
    _loss_option(p, "the encoders are trained with")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs per model")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget per model")
    p.add_argument("--init-core", default=None, help="'bundled' pretrained core, or a core/checkpoint path")
    p.add_argument("--overwrite", action="store_true", help="retrain members that already exist")
    _common(p, cluster=True, seed=True)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("reconstruct", help="reconstruct test trials, run the controls, write metrics",
                       description="Reconstruct trials (trials x members are Dask tasks) into RESULTS/reconstructions "
                                   "with the stimulus, as TIFF. Re-running resumes: finished trials are not redone.",
                       epilog="Examples:\n  movie-recon reconstruct results/\n"
                              "  movie-recon reconstruct results/ --trials 3,7 --iterations 400 --no-controls\n"
                              "  movie-recon reconstruct results/ --scheduler scheduler.json")
    p.add_argument("results", type=Path, help="results folder with trained models")
    p.add_argument("--recording", type=Path, default=None, help="recording folder (default: the one the models were trained on)")
    p.add_argument("--trials", type=_int_list, default=None, help="trial ids, comma-separated (default: every test trial)")
    p.add_argument("--iterations", type=int, default=None, help="optimisation steps (default 200; stops early on a plateau)")
    p.add_argument("--controls", dest="controls", action="store_true", default=None, help="run the controls (default)")
    p.add_argument("--no-controls", dest="controls", action="store_false", help="skip the controls")
    p.add_argument("--neuron-counts", type=_int_list, default=None, help="neuron counts for the curve (default 1/8, 1/4, 1/2)")
    p.add_argument("--control-variants", type=_name_list, default=None,
                   help="reconstructing controls, comma-separated (default: time-reversed,circular shift,grey-screen prior); "
                        "the shuffled control costs nothing and always runs")
    p.add_argument("--overwrite", action="store_true", help="replace reconstructions made with other models or settings")
    p.add_argument("--report", action="store_true", help="write the report afterwards")
    _loss_option(p, "the pixels are optimised for")
    _common(p, cluster=True, seed=True)
    p.set_defaults(func=_cmd_reconstruct)

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
    _common(p, device=False)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="write the HTML report of a results folder",
                       description="Render one self-contained HTML file (figures and animation embedded).",
                       epilog="Examples:\n  movie-recon report results/\n  movie-recon report results/ -o ~/mouse12.html")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default RESULTS/report.html)")
    _common(p, device=False)
    p.set_defaults(func=_cmd_report)
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
