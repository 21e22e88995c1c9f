"""Reconstruction speed: our whole-movie loop vs the paper's windowed loop, in one run.

Both loops run on the same encoder(s), the same trial(s), the same mask and (by default)
the same number of iterations; the table gives wall time, seconds per iteration, masked
correlation (for models that mean something: the twin oracle or trained checkpoints) and
the speed ratio. Ours runs twice: as it is, and recomputing every step what it otherwise
computes once (``reuse_fixed_parts=False``), to show what that saves.

Models (``--model``):
- ``oracle``: the twin itself (``reconstruct_twin.TwinOracle``), 60 MMAC per frame;
- ``small`` / ``fast``: the package's preset encoder with random weights and the dataset's
  neuron count: the right cost for timing a default ensemble, meaningless correlations;
- ``checkpoints``: trained encoder folders given with ``--checkpoints``.

``--windowed-steps K`` times only K windowed iterations and extrapolates linearly (the
windowed loop's cost per iteration is constant); the table says so.

``--match-quality`` adds a second comparison, at equal quality instead of equal iterations:
the windowed loop (paper settings) runs until its blurred movie's masked correlation reaches
ours (checked every ``--check-every`` iterations, the checks not timed) or until
``--match-max-iterations``, and the table gives its time to get there. Example::

    PYTHONPATH=src python benchmarks/reconstruct_speed.py --model small --members 3 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_models(args, recording):
    import torch

    if args.model == "oracle":
        from reconstruct_twin import TwinOracle

        return [TwinOracle(args.twin_dir, args.dataset)], True
    if args.model == "checkpoints":
        from movie_reconstruction.model import load_encoder

        return [load_encoder(p, recording) for p in args.checkpoints], True
    from movie_reconstruction.model import Encoder, EncoderConfig

    models = []
    for k in range(args.members):
        torch.manual_seed(k)
        positions = recording.neurons.positions
        models.append(
            Encoder(
                recording.n_neurons, recording.frame_shape, recording.behavior_channels,
                EncoderConfig.preset(args.model), neuron_positions=positions,
            ).eval()
        )
    return models, False


def mean_correlation(movies, trials, mask, drop_frames) -> float:
    """Masked correlation of each movie with its trial's stimulus, averaged over trials."""
    from movie_reconstruction.reconstruct.metrics import masked_correlation

    return float(np.mean([masked_correlation(m, t.video, mask, drop_frames=drop_frames) for m, t in zip(movies, trials)]))


def windowed_until(models, trials, mask, target, args):
    """Run the windowed loop until its ensemble movie, blurred as at the end, reaches ``target``.

    Returns (iterations, optimisation seconds without the checks, correlation). Members run
    one after another in the windowed loop, so with several the check is only meaningful at
    the end; use one model.
    """
    from windowed_baseline import WindowedConfig, reconstruct_windowed

    from movie_reconstruction.reconstruct.ensemble import blur_movies

    if len(models) != 1:
        raise SystemExit("--match-quality compares one model; give one checkpoint")
    config = WindowedConfig(iterations=args.match_max_iterations, learning_rate=args.windowed_lr,
                            preview_every=args.check_every)
    job = reconstruct_windowed(models, trials, config, mask=mask, device=args.device)
    checking, r, step = 0.0, float("nan"), 0
    start = time.perf_counter()
    for event in job:
        step = event.step
        if event.preview is None:
            continue
        check_start = time.perf_counter()
        movies = np.clip(blur_movies(event.preview, config.blur_sigma), *config.pixel_range)
        r = mean_correlation(movies, trials, mask, args.drop_frames)
        checking += time.perf_counter() - check_start
        if r >= target:
            job.close()
            break
    return step, time.perf_counter() - start - checking, r


def main(argv=None):
    from reconstruct_quality import load_trials, publish
    from reconstruct_twin import TwinOracle, default_paths
    from windowed_baseline import WindowedConfig, reconstruct_windowed, window_starts

    from movie_reconstruction.progress import run
    from movie_reconstruction.reconstruct import ReconstructionConfig, reconstruct
    from movie_reconstruction.reconstruct.mask import load_mask, mask_for_model

    twin_dir, dataset = default_paths()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=dataset)
    parser.add_argument("--twin-dir", type=Path, default=twin_dir)
    parser.add_argument("--model", choices=("oracle", "small", "fast", "checkpoints"), default="small")
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=[])
    parser.add_argument("--members", type=int, default=3, help="ensemble size for --model small or fast")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--drop-frames", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=None, help="ours: override the default budget")
    parser.add_argument("--no-early-stopping", action="store_true")
    parser.add_argument("--windowed-iterations", type=int, default=None, help="default: as many as ours ran")
    parser.add_argument("--windowed-steps", type=int, default=None, help="time only this many windowed steps, extrapolate")
    parser.add_argument("--windowed-lr", type=float, default=1000.0)
    parser.add_argument("--mask", type=Path, default=None,
                        help="a saved mask (e.g. RESULTS/mask.safetensors); default: the oracle's readout estimate")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--match-quality", action="store_true",
                        help="also time the windowed loop until it reaches our correlation")
    parser.add_argument("--check-every", type=int, default=5)
    parser.add_argument("--match-max-iterations", type=int, default=300)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    recording, trials = load_trials(args.dataset, args.trials, args.frames)
    models, meaningful = build_models(args, recording)
    if args.mask:
        mask = load_mask(args.mask)
    else:
        oracle_for_mask = models[0] if isinstance(models[0], TwinOracle) else TwinOracle(args.twin_dir, args.dataset)
        mask = mask_for_model(oracle_for_mask, eval_fraction=0.1)

    config = ReconstructionConfig()
    if args.iterations:
        config = dataclasses.replace(config, iterations=args.iterations)
    if args.no_early_stopping:
        config = dataclasses.replace(config, early_stopping=False)

    ours = run(reconstruct(models, trials, config, mask=mask, device=args.device))
    # the same loop recomputing each step what fixed behaviour and the mask leave unchanged
    recomputing = run(reconstruct(models, trials, dataclasses.replace(config, reuse_fixed_parts=False),
                                  mask=mask, device=args.device))
    iterations = args.windowed_iterations or ours.iterations_run
    steps = min(args.windowed_steps or iterations, iterations)
    windowed_config = WindowedConfig(iterations=steps, learning_rate=args.windowed_lr)
    start = time.perf_counter()
    windowed = run(reconstruct_windowed(models, trials, windowed_config, mask=mask, device=args.device))
    windowed_measured = time.perf_counter() - start
    windowed_time = windowed_measured * iterations / steps
    extrapolated = steps < iterations

    def corr(result):
        if not meaningful or extrapolated and result is windowed:
            return "n/a"
        return f"{mean_correlation(result.movies, trials, mask, args.drop_frames):.3f}"

    n_windows = len(window_starts(trials[0].n_frames, 32, 8))
    lines = [
        f"{len(models)} x {args.model} model(s), {len(trials)} trial(s) x {trials[0].n_frames} frames x "
        f"{recording.frame_shape}, {recording.n_neurons} neurons, device {ours.device}; windowed loop: "
        f"{n_windows} windows of 32 frames, stride 8, lr {args.windowed_lr}.",
        "",
        "| loop | iterations | wall time (s) | s / iteration | masked r |",
        "|---|---|---|---|---|",
        f"| ours (whole movie) | {ours.iterations_run} | {ours.elapsed_s:.1f} | {ours.elapsed_s / ours.iterations_run:.2f} | {corr(ours)} |",
        f"| ours, fixed parts recomputed each step | {recomputing.iterations_run} | {recomputing.elapsed_s:.1f} | "
        f"{recomputing.elapsed_s / recomputing.iterations_run:.2f} | {corr(recomputing)} |",
        f"| windowed (paper) | {iterations}{' (timed ' + str(steps) + ', extrapolated)' if extrapolated else ''} | "
        f"{windowed_time:.1f} | {windowed_measured / steps:.2f} | {corr(windowed)} |",
        "",
        f"**speed-up: {windowed_time / ours.elapsed_s:.1f}x** (per iteration: "
        f"{(windowed_measured / steps) / (ours.elapsed_s / ours.iterations_run):.1f}x; with the fixed parts "
        f"recomputed: {windowed_time / recomputing.elapsed_s:.1f}x)",
    ]
    if args.match_quality:
        if not meaningful:
            raise SystemExit("--match-quality needs trained models (--model checkpoints or oracle)")
        target = mean_correlation(ours.movies, trials, mask, args.drop_frames)
        iterations_needed, seconds, r = windowed_until(models, trials, mask, target, args)
        verdict = (f"reached r {r:.3f} after {iterations_needed} iterations" if r >= target
                   else f"did not reach it in {iterations_needed} iterations (r {r:.3f})")
        lines += [
            "",
            f"At equal quality: the windowed loop {verdict}, {seconds:.1f} s of optimisation against our "
            f"{ours.elapsed_s:.1f} s to r {target:.3f}: **{seconds / ours.elapsed_s:.1f}x**"
            f"{'' if r >= target else ' (a lower bound)'}.",
        ]
    text = "\n".join(lines)
    publish(text, "Reconstruction speed", args.markdown)


if __name__ == "__main__":
    main()
