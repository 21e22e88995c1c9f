"""Reconstruction quality on the digital twin: oracle vs learned ensemble, controls, neuron count.

For the test trials of a twin dataset (``make_twin_dataset.py`` output, read with
``read_sensorium``), this reconstructs every movie

- through the twin itself (the oracle, ``reconstruct_twin.TwinOracle``: the ceiling), and
- through a learned ensemble (``--checkpoints``: encoder checkpoint folders), if given,

from the same single-trial noisy responses with the same settings and mask, and runs the
controls (shuffled pairing, time-reversed, circularly shifted, grey-screen prior) and the
neuron-count curve for each. It prints markdown tables and, with ``--markdown``, writes them
to a file. The paper's figures (Bauer et al. 2025, 7-model ensemble, real mice) are shown
beside ours for orientation; they are not the same data.

The oracle follows the dataset's kind: a plain twin (running gain), or one made with
``--behaviour-effects`` (the eye moves the image on the retina, each neuron has its own running
and pupil gain). Reconstruction gives every model the behaviour channels it names, by name
(``reconstruct.inputs.behavior_for``): ``running`` for the plain oracle, ``pupil, running,
pupil_x, pupil_y`` for the behaviour one.

Example (hours on 2 CPU cores, minutes on a GPU)::

    PYTHONPATH=src python benchmarks/reconstruct_quality.py --checkpoints runs/ens/model_* \
        --neuron-counts 1000 2000 4000 7776 --markdown docs/reconstruction_benchmark.md

``--results FOLDER`` instead takes a results folder that ``movie-recon train`` and
``movie-recon reconstruct`` filled (the learned ensemble, through the product's own path):
it reads that folder's per-trial correlations, mask and reconstruction settings, runs the
oracle on the same trials one at a time with exactly those settings and that mask, and
prints both side by side with the folder's controls table::

    movie-recon train runs/twin --recording ~/.cache/movie-recon/twin-full
    movie-recon reconstruct runs/twin
    PYTHONPATH=src python benchmarks/reconstruct_quality.py --results runs/twin
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

PAPER_CURVE = {1000: 0.34, 2000: 0.43, 4000: 0.51, 7776: 0.57}


def load_trials(dataset: Path, n_trials: int, frames: int | None):
    from movie_reconstruction.io.sensorium import read_sensorium

    recording = read_sensorium(dataset)
    test = recording.indices("test")[:n_trials]
    trials = [recording.trial(int(i)) for i in test]
    if frames:
        trials = [
            dataclasses.replace(t, video=t.video[:frames], responses=t.responses[:, :frames], behavior=t.behavior[:, :frames])
            for t in trials
        ]
    return recording, trials


def publish(text: str, title: str, markdown: Path | None) -> None:
    """Print a benchmark's tables, and write them with the command line to ``markdown`` if given."""
    print(text)
    if markdown:
        from movie_reconstruction._atomic import write_text

        write_text(markdown, f"# {title}\n\nCommand: `{' '.join(sys.argv)}`\n\n{text}\n")


def load_learned(checkpoints, recording):
    from movie_reconstruction.model import load_encoder

    return [load_encoder(path, recording) for path in checkpoints]


def main(argv=None):
    from reconstruct_twin import TwinOracle, default_paths

    from movie_reconstruction.progress import run_with_tqdm
    from movie_reconstruction.reconstruct import ReconstructionConfig
    from movie_reconstruction.reconstruct.controls import CONTROLS, run_controls
    from movie_reconstruction.reconstruct.mask import load_mask, mask_for_model

    twin_dir, dataset = default_paths()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=dataset, help="twin dataset folder (Sensorium layout)")
    parser.add_argument("--twin-dir", type=Path, default=twin_dir, help="folder with make_twin_dataset.py and the checkpoint")
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=[], help="encoder checkpoint folders (the ensemble)")
    parser.add_argument("--results", type=Path, default=None,
                        help="a reconstructed results folder: compare its trials with the oracle run the same way")
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--trials", type=int, default=10, help="how many test trials (the first ones)")
    parser.add_argument("--trial-ids", default=None,
                        help="with --results: only these finished trials, comma-separated (e.g. to spread the oracle over runs)")
    parser.add_argument("--frames", type=int, default=None, help="crop trials to this many frames (default: whole)")
    parser.add_argument("--drop-frames", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=None, help="override the default iteration budget")
    parser.add_argument("--no-early-stopping", action="store_true")
    parser.add_argument("--controls", nargs="*", default=list(CONTROLS))
    parser.add_argument("--neuron-counts", type=int, nargs="*", default=[])
    parser.add_argument("--mask", default="readout", help="'readout' (estimate from the oracle's readout) or a mask file")
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    recording, trials = load_trials(args.dataset, args.trials, args.frames)
    config = ReconstructionConfig()
    if args.iterations:
        config = dataclasses.replace(config, iterations=args.iterations)
    if args.no_early_stopping:
        config = dataclasses.replace(config, early_stopping=False)

    oracle = TwinOracle(args.twin_dir, args.dataset)
    if args.results:
        return compare_with_results(args, oracle)
    mask = mask_for_model(oracle, eval_fraction=args.eval_fraction) if args.mask == "readout" else load_mask(args.mask)

    systems = []
    if not args.no_oracle:
        systems.append(("oracle (twin)", [oracle]))
    if args.checkpoints:
        systems.append((f"learned ensemble ({len(args.checkpoints)})", load_learned(args.checkpoints, recording)))
    if not systems:
        parser.error("nothing to run: give --checkpoints or drop --no-oracle")

    lines = [
        f"Dataset: `{args.dataset}`, {len(trials)} test trials x {trials[0].n_frames} frames, "
        f"{recording.n_neurons} neurons; first {args.drop_frames} frames dropped; mask: {mask.method} "
        f"(eval {int(mask.evaluation.sum())} px, update {int(mask.update.sum())} px); config: "
        f"`{config.to_dict()}`; torch threads {torch.get_num_threads()}.",
        "",
    ]
    results = {}
    for name, models in systems:
        start = time.perf_counter()
        print(f"--- {name}", flush=True)
        table = run_with_tqdm(
            run_controls(
                models, trials, config, mask=mask, controls=args.controls,
                neuron_counts=args.neuron_counts, drop_frames=args.drop_frames, device=args.device,
            ),
        )
        elapsed = time.perf_counter() - start
        results[name] = table
        lines += [
            f"### {name}",
            "",
            f"Per-trial masked r: {', '.join(f'{r:.3f}' for r in table.real_per_trial)} "
            f"(mean {table.real:.3f}); wall time for all conditions {elapsed:.0f} s; "
            f"iterations of the real run {table.extra['iterations']}.",
            "",
            table.to_markdown(),
            "",
        ]
        if table.neuron_curve:
            lines += ["| neurons | ours | paper (real mice, 7-model ensemble) |", "|---|---|---|"]
            for count, values in table.neuron_curve:
                paper = PAPER_CURVE.get(count, PAPER_CURVE.get(7776) if count > 7000 else None)
                lines.append(f"| {count} | {float(np.mean(values)):.3f} | {paper if paper is not None else ''} |")
            lines.append("")
    if len(results) == 2:
        (oracle_name, o), (learned_name, learned) = results.items()
        ratio = learned.real / o.real if o.real else float("nan")
        lines += [f"**{learned_name} / oracle = {learned.real:.3f} / {o.real:.3f} = {ratio:.2f}** (target >= 0.85)", ""]
    text = "\n".join(lines)
    publish(text, "Reconstruction benchmark", args.markdown)


def compare_with_results(args, oracle):
    """The oracle on a results folder's reconstructed trials, with that folder's settings and mask."""
    import torch

    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.progress import run
    from movie_reconstruction.reconstruct import ReconstructionConfig, reconstruct
    from movie_reconstruction.reconstruct.mask import load_mask
    from movie_reconstruction.reconstruct.metrics import DROP_FRAMES, masked_correlation
    from movie_reconstruction.results import ResultsFolder

    results = ResultsFolder.open(args.results)
    provenance = results.provenance()
    stored = dict(provenance["settings"]["reconstruct"]["reconstruction"])
    stored["pixel_range"] = tuple(stored["pixel_range"])
    config = ReconstructionConfig(**stored)
    mask = load_mask(results.mask_path)
    finished = sorted(results.finished_trials().items())
    if args.trial_ids:
        wanted = {int(t) for t in args.trial_ids.split(",") if t.strip()}
        finished = [(t, meta) for t, meta in finished if t in wanted]
    finished = finished[: args.trials]
    if not finished:
        raise SystemExit(f"{args.results} holds no finished reconstructions of the chosen trials")
    recording = read_sensorium(args.dataset)
    position = {int(t): i for i, t in enumerate(recording.trial_ids)}
    members = finished[0][1]["members"]
    lines = [
        f"Results folder `{args.results}` ({members}-member ensemble, "
        f"{provenance['settings'].get('train', {}).get('preset', '?')} preset); dataset `{args.dataset}`; "
        f"mask: {mask.method} (eval {int(mask.evaluation.sum())} px, update {int(mask.update.sum())} px); "
        f"reconstruction settings (both): `{config.to_dict()}`; torch threads {torch.get_num_threads()}.",
        "",
        "| trial | learned ensemble r | its iterations (per member) | oracle r | oracle iterations | oracle s |",
        "|---|---|---|---|---|---|",
    ]
    learned, oracle_r = [], []
    for trial_id, meta in finished:
        trial = recording.trial(position[trial_id])
        result = run(reconstruct([oracle], trial, config, mask=mask, device=args.device))
        # the folder's correlations were scored with the pipeline's fixed convention; so is the oracle's
        r = masked_correlation(result.movie, trial.video, mask.alpha, drop_frames=DROP_FRAMES)
        learned.append(float(meta["correlation"]))
        oracle_r.append(r)
        row = (f"| {trial_id} | {meta['correlation']:.3f} | {', '.join(str(i) for i in meta['iterations'])} | "
               f"{r:.3f} | {result.iterations_run} | {result.elapsed_s:.0f} |")
        print(row, flush=True)
        lines.append(row)
    ratio = np.mean(learned) / np.mean(oracle_r)
    lines += [
        f"| **mean** | **{np.mean(learned):.3f}** | | **{np.mean(oracle_r):.3f}** | | |",
        "",
        f"**learned / oracle = {np.mean(learned):.3f} / {np.mean(oracle_r):.3f} = {ratio:.2f}** (target >= 0.85)",
        "",
    ]
    controls = results.read_controls()
    if controls:
        lines += [f"Controls of the learned ensemble (trials {controls['trial_ids']}):", "", controls["markdown"], ""]
    text = "\n".join(lines)
    publish(text, "Learned ensemble vs oracle", args.markdown)


if __name__ == "__main__":
    main()
