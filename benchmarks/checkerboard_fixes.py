"""Anti-aliasing without retraining, measured against today's method (issue 24).

Reconstructs a results folder's test trials with its trained encoders, its mask and the
reconstruction settings its provenance records, changing only the anti-aliasing settings of
``ReconstructionConfig`` (``jitter``, ``gradient_blur``), and scores each variant: masked r,
SSIM, the artifact index and the Nyquist share (``reconstruct.artifacts``). ``--control``
also runs the grey-screen-prior control (the encoders' own predictions to a grey screen as
the "recorded" responses) and reports its masked r: a remedy that makes that control look
like the movie would be a defect.

    PYTHONPATH=src python benchmarks/checkerboard_fixes.py --results /tmp/demofull \\
        --variant today --variant jitter=1 --variant gradient_blur=1 --control --json fixes.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from checkerboard_cause import a_trous  # noqa: E402


def load(results_path: Path):
    from movie_reconstruction.model import load_encoder
    from movie_reconstruction.reconstruct import ReconstructionConfig
    from movie_reconstruction.results import load_results
    from movie_reconstruction.results_recording import open_recording

    results = load_results(results_path)
    recording = open_recording(results_path / "recording")
    models = [load_encoder(p, recording).eval() for p in sorted((results_path / "models").glob("model_*"))]
    trials = [recording.trial(i) for i in recording.indices("test")]
    provenance = json.loads((results_path / "provenance.json").read_text())
    settings = dict(provenance["settings"]["reconstruct"]["reconstruction"])
    settings["pixel_range"] = tuple(settings["pixel_range"])
    # settings recorded before the anti-aliasing settings existed are today's method: both off
    settings.setdefault("jitter", 0)
    settings.setdefault("gradient_blur", 0.0)
    return models, trials, results.mask, ReconstructionConfig(**settings)


def variant_config(base, spec: str):
    """``today``, ``a_trous`` (the encoders' stride-2 core run densely, checkerboard_cause.a_trous:
    no prepared pass for its dilated convolutions) or ``name=value[,name=value]`` of ReconstructionConfig fields."""
    if spec == "today":
        return base
    if spec == "a_trous":
        return dataclasses.replace(base, reuse_fixed_parts=False)
    changes = {}
    for part in spec.split(","):
        name, value = part.split("=")
        field_type = type(getattr(base, name))
        changes[name] = field_type(float(value)) if field_type is int else field_type(value)
    return dataclasses.replace(base, **changes)


def score(models, trials, config, mask, responses=None) -> dict:
    from movie_reconstruction.progress import run
    from movie_reconstruction.reconstruct import reconstruct
    from movie_reconstruction.reconstruct.artifacts import artifact_index
    from movie_reconstruction.reconstruct.metrics import masked_correlation, ssim

    if responses is not None:
        trials = [dataclasses.replace(t, responses=r) for t, r in zip(trials, responses)]
    started = time.perf_counter()
    result = run(reconstruct(models, trials, config, mask=mask))
    rows = []
    for movie, trial in zip(result.movies, trials):
        index = artifact_index(movie, trial.video, mask)
        rows.append({"trial": int(trial.trial_id), "r": masked_correlation(movie, trial.video, mask),
                     "ssim": ssim(movie, trial.video, mask), **index.to_dict()})
    return {"trials": rows, "seconds": time.perf_counter() - started, "iterations": int(result.iterations_run)}


def main(argv=None) -> int:
    import torch

    from movie_reconstruction.reconstruct.metrics import predict

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--variant", action="append", default=[], help="today, or name=value[,name=value]")
    parser.add_argument("--control", action="store_true",
                        help="also the grey-screen-prior control's r (a variant already in --json is not re-run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="results are added to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, trials, mask, base = load(args.results)
    stored = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    for spec in args.variant or ["today"]:
        config = variant_config(base, spec)
        members = [a_trous(m) for m in models] if spec == "a_trous" else models
        entry = stored[spec] if args.control and spec in stored else score(members, trials, config, mask)
        if args.control:  # the grey screen as the encoders of today see it, whatever the variant
            grey = [predict(models, np.full_like(t.video, config.start_grey), t) for t in trials]
            entry["grey_prior_r"] = [row["r"] for row in score(members, trials, config, mask, grey)["trials"]]
        stored[spec] = entry
        rows = entry["trials"]
        print(f"{spec}: r {[round(r['r'], 3) for r in rows]} mean {np.mean([r['r'] for r in rows]):.3f}; "
              f"SSIM {np.mean([r['ssim'] for r in rows]):.3f}; artifact index {[round(r['artifact_index'], 2) for r in rows]}; "
              f"Nyquist {[round(r['nyquist_share'], 3) for r in rows]}; grey prior r {entry.get('grey_prior_r')}; "
              f"{entry['seconds']:.0f} s")
        if args.json:
            args.json.write_text(json.dumps(stored, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
