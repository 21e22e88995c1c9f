"""The ``movie-recon`` subcommands: each reads its settings, calls the stage API
(:mod:`movie_reconstruction.pipeline`, the same calls the napari widgets make) and prints
what a user needs to read."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from . import __version__
from .cli_options import settings_from_args as _settings
from .errors import InputError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_TASKS_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


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


def cmd_info(args) -> int:
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


def cmd_demo(args) -> int:
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


def cmd_extract(args) -> int:
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


def cmd_build(args) -> int:
    _require_existing([args.manifest, args.suite2p])
    with _results_for_writing(args.output) as results:
        return _build(args, results)


def _build(args, results) -> int:
    from .pipeline import build_stage

    traces = None
    if args.suite2p is not None:
        from .io.suite2p_folder import read_suite2p_folder

        traces = read_suite2p_folder(args.suite2p, cell_threshold=_settings(args).cell_threshold)
    nwb_options = {k: v for k, v in (("response", args.nwb_response), ("stimulus", args.nwb_stimulus)) if v}
    recording = _drive(build_stage(results, args.manifest, traces, _settings(args), nwb_options=nwb_options), args)
    print(repr(recording))
    print(f"recording: {results.recording_dir}")
    return EXIT_OK


def cmd_export_nwb(args) -> int:
    from .io.nwb_results import write_results_nwb

    subject = {"subject_id": args.subject_id, "species": "Mus musculus", "sex": args.sex, "age": args.age} if args.age else None
    out = write_results_nwb(args.results, args.out, source=args.source, subject=subject)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_train(args) -> int:
    from .pipeline import train_stage

    settings = _settings(args)
    with _results_for_writing(args.results) as results, _client(args) as client:
        checkpoints = _drive(train_stage(results, settings, recording_path=args.recording, client=client), args)
    from .model.budget import training_summary_lines

    for line in training_summary_lines(checkpoints):
        print(line)
    print(f"{len(checkpoints)} model(s) in {results.models_dir}")
    return EXIT_OK


def cmd_reconstruct(args) -> int:
    from .pipeline import reconstruct_and_judge, report_stage

    settings = _settings(args)
    with _results_for_writing(args.results) as results:
        with _client(args) as client:
            judged = _drive(reconstruct_and_judge(results, settings, recording_path=args.recording, client=client), args)
        code = _print_summary(judged.summary, results.path)
        if judged.controls is not None:
            print(judged.controls.get("verdict_table") or judged.controls.get("markdown", ""))
        elif settings.controls:
            print(judged.skipped_controls, file=sys.stderr)
        stale = (results.read_controls() or {}).get("stale")
        if stale:
            print(f"controls.json is stale: it was computed from earlier reconstructions of trial(s) {stale}; "
                  "re-run the controls", file=sys.stderr)
        if args.report:
            print(f"report: {_drive(report_stage(results), args)}")
    return code


def cmd_evaluate(args) -> int:
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
    from .results_recording import open_recording, recording_path_of

    recording = open_recording(recording_path_of(folder, args.recording))
    out = []
    for path in folder.checkpoints():
        encoder = load_encoder(path, recording)
        scores = evaluate_encoder(encoder, recording, "test")
        out.append({"model": path.name, **{k: v for k, v in scores.items() if isinstance(v, (int, float))}})
        print(f"{path.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[-1].items() if isinstance(v, float)))
    return out


def cmd_report(args) -> int:
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


