"""One self-contained HTML report of a results folder, for a PI to open in any browser.

Every figure is a PNG (matplotlib, Agg backend) and the animation a GIF (Pillow), embedded as
``data:`` URIs, so the single file can be mailed around. Everything is read back from the
results folder with :func:`movie_reconstruction.results.load_results`; nothing is recomputed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from . import _atomic
from ._report_html import _evaluation_outline, _img, _png, _subplots, _table
from .report_statistics import detail_tables, verdict_section
from .results import REPORT, Results, load_results

DROP_FRAMES = 30  # the evaluation convention; frames before this are greyed out in plots
GIF_SCALE = 4


# ------------------------------------------------------------------------------------ figures
def frames_figure(trial, mask, n_frames: int = 6) -> str:
    t = trial.n_frames
    start = min(DROP_FRAMES, t - 1)
    picks = np.linspace(start, t - 1, n_frames).round().astype(int)
    fig, axes = _subplots(2, n_frames, figsize=(1.9 * n_frames, 2.6), squeeze=False)
    for col, k in enumerate(picks):
        for row, (movie, name) in enumerate(((trial.stimulus, "stimulus"), (trial.reconstruction, "reconstruction"))):
            ax = axes[row, col]
            ax.imshow(movie[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            _evaluation_outline(ax, mask)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
            if row == 0:
                r = trial.frame_correlation[k] if k < len(trial.frame_correlation) else np.nan
                ax.set_title(f"frame {k}" + (f"\nr = {r:.2f}" if np.isfinite(r) else ""), fontsize=8)
    fig.suptitle(f"trial {trial.trial_id}: masked r = {trial.correlation:.3f}, SSIM = {trial.ssim:.3f}", fontsize=10, y=1.1)
    return _png(fig)


def frame_correlation_figure(trials) -> str:
    n = len(trials)
    fig, axes = _subplots(n, 1, figsize=(9, 1.7 * n + 0.4), squeeze=False, sharex=True)
    for ax, trial in zip(axes[:, 0], trials):
        frames = np.arange(trial.n_frames)
        ax.plot(frames, trial.frame_correlation, color="#1f77b4", lw=1.2, label="per-frame r")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvspan(0, min(DROP_FRAMES, trial.n_frames), color="0.92", lw=0)
        ax.set_ylim(-0.6, 1.0)
        ax.set_ylabel(f"trial {trial.trial_id}\nr", fontsize=8)
        if trial.population_activity.size == trial.n_frames:
            twin = ax.twinx()
            twin.plot(frames, trial.population_activity, color="#d62728", lw=0.8, alpha=0.7, label="mean activity")
            twin.set_ylabel("activity", fontsize=7, color="#d62728")
            twin.tick_params(labelsize=7, colors="#d62728")
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("stimulus frame (grey: first 30 frames, not evaluated)")
    return _png(fig)


def neuron_curve_figure(controls: dict) -> str | None:
    curve = controls.get("neuron_curve") or []
    if len(curve) < 2:
        return None
    fig, ax = _subplots(figsize=(4.6, 3.2))
    n = np.array([c["neurons"] for c in curve])
    mean = np.array([c["mean_r"] for c in curve])
    for c in curve:
        ax.scatter([c["neurons"]] * len(c["per_trial"]), c["per_trial"], s=8, color="0.6", zorder=1)
    ax.plot(n, mean, "o-", color="#1f77b4", zorder=2, label="mean over trials")
    for row in controls.get("rows", []):
        if row["condition"] == "shuffled":
            ax.axhline(row["mean_r"], color="#d62728", ls="--", lw=1, label="shuffled control")
    ax.set_xscale("log", base=2)
    ax.set_xticks(n)
    ax.set_xticklabels([str(v) for v in n], fontsize=8)
    ax.set_xlabel("neurons used for the reconstruction")
    ax.set_ylabel("masked correlation r")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def training_figure(training: list[dict]) -> str | None:
    if not training or not any(t["history"] for t in training):
        return None
    fig, (ax_loss, ax_corr) = _subplots(1, 2, figsize=(9, 3.2))
    for k, t in enumerate(training):
        history = t["history"]
        epochs = [h["epoch"] for h in history]
        loss = [h.get("loss") for h in history]
        corr = [h.get("val_corr") for h in history]
        label = f"model {k + 1} (seed {t.get('seed')})"
        ax_loss.plot([e for e, v in zip(epochs, loss) if v is not None], [v for v in loss if v is not None], "o-", ms=3, label=label)
        ax_corr.plot([e for e, v in zip(epochs, corr) if v is not None], [v for v in corr if v is not None], "o-", ms=3, label=label)
        if t.get("best_epoch") is not None and t.get("best_val_corr") is not None:
            ax_corr.scatter([t["best_epoch"]], [t["best_val_corr"]], marker="*", s=90, zorder=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training Poisson loss")
    ax_corr.set_xlabel("epoch")
    ax_corr.set_ylabel("validation correlation (★ kept)")
    for ax in (ax_loss, ax_corr):
        ax.grid(alpha=0.3)
    ax_corr.legend(fontsize=7)
    return _png(fig)


def budget_paragraphs(checkpoints) -> list[str]:
    """Each member's training budget in one line (epochs run against planned, why it stopped), and
    a warning, set off like the others, for each member that its time budget starved."""
    from .model.budget import checkpoint_budget

    items, warnings = [], []
    for checkpoint in checkpoints:
        name, budget = Path(checkpoint).name, checkpoint_budget(checkpoint)
        if budget is None:
            continue
        items.append(f"<li>{html.escape(name)}: {html.escape(budget.sentence)}</li>")
        if budget.warning:
            warnings.append(f"<p class='verdict bad'>Warning: {html.escape(name)}: {html.escape(budget.warning)}.</p>")
    return ([f"<ul>{''.join(items)}</ul>"] if items else []) + warnings


def roi_figure(rois: dict, mask) -> str | None:
    panels = len(rois) + (1 if mask is not None else 0)
    if panels == 0:
        return None
    fig, axes = _subplots(1, panels, figsize=(4.2 * panels, 4), squeeze=False)
    for ax, (plane, data) in zip(axes[0], sorted(rois.items())):
        mean = data.get("mean_image")
        labels = data.get("labels")
        if mean is not None:
            lo, hi = np.percentile(mean, [1, 99.5])
            ax.imshow(mean, cmap="gray", vmin=lo, vmax=hi)
        if labels is not None and labels.max() > 0:
            rng = np.random.default_rng(0)
            colours = rng.uniform(0.2, 1.0, (int(labels.max()) + 1, 3))
            overlay = np.zeros((*labels.shape, 4))
            overlay[..., :3] = colours[labels]
            overlay[..., 3] = np.where(labels > 0, 0.45, 0.0)
            ax.imshow(overlay)
        ax.set_title(f"plane {plane}: mean image, {int(labels.max()) if labels is not None else 0} ROIs", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if mask is not None:
        ax = axes[0, -1]
        image = ax.imshow(mask, cmap="magma", vmin=0, vmax=max(1.5, float(mask.max())))
        ax.contour(mask >= 1, levels=[0.5], colors="#00e0ff", linewidths=1)
        ax.contour(mask >= 0.5, levels=[0.5], colors="#ffffff", linewidths=0.8, linestyles="--")
        ax.set_title("transparency mask\n(cyan: evaluated, dashed: updated)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.03)
    return _png(fig)


def animation_gif(trial, mask=None, scale: int = GIF_SCALE, max_frames: int = 300) -> str:
    """Stimulus | reconstruction side by side, as an animated GIF at the recording's frame rate."""
    from PIL import Image, ImageDraw

    stimulus = np.clip(trial.stimulus[:max_frames], 0, 255).astype(np.uint8)
    reconstruction = np.clip(trial.reconstruction[:max_frames], 0, 255).astype(np.uint8)
    t, h, w = stimulus.shape
    gap = 4
    frames = []
    for k in range(t):
        canvas = np.full((h, 2 * w + gap), 255, np.uint8)
        canvas[:, :w] = stimulus[k]
        canvas[:, w + gap:] = reconstruction[k]
        image = Image.fromarray(canvas).resize(((2 * w + gap) * scale, h * scale), Image.NEAREST).convert("P")
        draw = ImageDraw.Draw(image)
        draw.text((4, 2), f"stimulus  frame {k}", fill=255)
        draw.text(((w + gap) * scale + 4, 2), "reconstruction", fill=255)
        frames.append(image)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=33, loop=0, optimize=False)
    return "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode()


# ------------------------------------------------------------------------------------ the page
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right;font-size:.92em}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.pass{color:#087f23;font-weight:600}
.fail{color:#b00020;font-weight:600}.verdict{font-size:1.1em;padding:.6em 1em;border-radius:6px;display:inline-block}
.good{background:#e6f4ea}.bad{background:#fdecea}.unclear{background:#fff4d6}.muted{color:#666;font-size:.9em}code{background:#f5f5f5;padding:0 .2em}
details{margin:.6em 0}summary{cursor:pointer}
"""


# long: the report's sections in page order, one after another; every figure is its own function.
def render_report(results: Results) -> str:
    prov = results.provenance
    versions = prov.get("versions", {})
    trials = results.trials
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Movie reconstruction report · {html.escape(results.path.name)}</title>",
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>Movie reconstruction report</h1><p class='muted'>{html.escape(str(results.path))} · "
                 f"updated {html.escape(str(prov.get('updated')))} · napari-movie-reconstruction "
                 f"{html.escape(str(versions.get('napari-movie-reconstruction')))} · device {html.escape(str(prov.get('device')))}</p>")

    # ---------------------------------------------------------------- summary
    parts.append("<h2>Summary</h2>")
    for warning in results.warnings:
        parts.append(f"<p class='verdict bad'>Warning: {html.escape(warning)}.</p>")
    if trials:
        corr = np.array([t.correlation for t in trials])
        parts.append(f"<p>{len(trials)} trial(s) reconstructed by an ensemble of {trials[0].members} encoder(s). "
                     f"Masked pixel correlation with the stimulus: mean <b>{corr.mean():.3f}</b> "
                     f"(range {corr.min():.3f} to {corr.max():.3f}).</p>")
    else:
        parts.append("<p>No reconstructed trials in this folder yet.</p>")
    controls = results.controls
    if controls and controls.get("stale"):
        parts.append("<p class='verdict bad'>The controls below are out of date (see the warning above): no verdict.</p>")
    else:
        parts += verdict_section(controls, (results.metrics or {}).get("summary", {}).get("statistics"), results)
    parts.append("<p class='muted'>Convention (Bauer, Margrie &amp; Clopath, eLife 2025): one Pearson correlation over all "
                 "pixels inside the evaluation mask (alpha &ge; 1, yellow outline) × all frames of a movie, "
                 "after dropping the first 30 frames, which no response can explain yet.</p>")
    if trials:
        rows = [{"trial": t.trial_id, "tier": t.tier, "masked r": t.correlation, "SSIM": t.ssim, "frames": t.n_frames,
                 "members": t.members} for t in trials]
        parts.append(_table(rows, ["trial", "tier", "masked r", "SSIM", "frames", "members"]))

    # ---------------------------------------------------------------- movies
    if trials:
        best = max(trials, key=lambda t: t.correlation)
        parts.append(f"<h2>Trial {best.trial_id}, animated</h2><p class='muted'>Left: the stimulus; right: the "
                     f"reconstruction from the recorded activity (the best trial, r = {best.correlation:.3f}). "
                     "Plays at 30 frames/s.</p>")
        parts.append(_img(animation_gif(best, results.mask), f"trial {best.trial_id} animation", "90%"))
        parts.append("<h2>Stimulus and reconstruction, frame by frame</h2>")
        for trial in trials:
            parts.append(_img(frames_figure(trial, results.mask), f"trial {trial.trial_id} frames"))
        parts.append("<h2>Per-frame correlation</h2><p class='muted'>Blue: correlation of each reconstructed frame "
                     "with the stimulus frame (evaluation mask); red: the recorded population activity.</p>")
        parts.append(_img(frame_correlation_figure(trials), "per-frame correlation"))

    # ---------------------------------------------------------------- controls
    parts.append("<h2>Controls and the neuron-count curve</h2>")
    if controls:
        parts.append("<p class='muted'>Each control reconstructs from responses that carry no information about this "
                     "movie (or pairs the movie with another trial's reconstruction). The verdict column is the "
                     "statistical verdict of the summary (docs/reconstruction.md, \"Verdicts\").</p>")
        parts.append(_table(controls["rows"], ["condition", "mean_r", "margin", "control/real", "verdict"]))
        parts += detail_tables(controls, (results.metrics or {}).get("summary", {}).get("statistics"))
        curve = neuron_curve_figure(controls)
        if curve:
            parts.append(_img(curve, "neuron-count curve", "520px"))
    else:
        parts.append("<p>No controls were run (they need at least two reconstructed trials; "
                     "<code>movie-recon reconstruct --controls</code>).</p>")

    # ---------------------------------------------------------------- training
    parts.append("<h2>Training</h2>")
    figure = training_figure(results.training)
    if figure:
        rows = [{"model": Path(t["checkpoint"]).name, "seed": t.get("seed"), "best epoch": t.get("best_epoch"),
                 "validation r": t.get("best_val_corr"), "stopped because": t.get("stopped_because"),
                 "minutes": (t.get("seconds") or 0) / 60} for t in results.training]
        parts.append(_table(rows, ["model", "seed", "best epoch", "validation r", "stopped because", "minutes"],
                            {"minutes": "{:.1f}"}))
        parts += budget_paragraphs([t["checkpoint"] for t in results.training])
        parts.append(_img(figure, "training curves"))
    else:
        parts.append("<p>No training history in this folder.</p>")

    # ---------------------------------------------------------------- ROIs
    parts.append("<h2>ROI map and transparency mask</h2>")
    figure = roi_figure(results.rois, results.mask)
    parts.append(_img(figure, "ROI map") if figure else "<p>No ROI map (the recording was not extracted here).</p>")

    # ---------------------------------------------------------------- provenance
    parts.append("<h2>Provenance</h2>")
    timings = prov.get("timings_s", {})
    if timings:
        parts.append(_table([{"stage": k, "seconds": float(v)} for k, v in timings.items()], ["stage", "seconds"],
                            {"seconds": "{:.1f}"}))
    parts.append(_table([{"package": k, "version": v} for k, v in versions.items()], ["package", "version"]))
    inputs = prov.get("inputs", [])
    if inputs:
        rows = [{"role": r["role"], "file": Path(r["path"]).name, "bytes": r["bytes"], "sha256": r["sha256"][:16] + "…"}
                for r in inputs]
        parts.append(f"<details><summary>{len(inputs)} input file(s) with SHA-256</summary>"
                     + _table(rows, ["role", "file", "bytes", "sha256"]) + "</details>")
    import json

    parts.append("<details><summary>Settings and seeds</summary><pre>"
                 + html.escape(json.dumps({"seeds": prov.get("seeds"), "settings": prov.get("settings")}, indent=1))
                 + "</pre></details>")
    parts.append("<p class='muted'>What this is and is not: the reconstruction shows what the trained encoders "
                 "consider most consistent with the recorded activity, starting from grey. It is limited to the "
                 "part of the screen the recorded neurons see (the mask), blurred by their receptive fields, and "
                 "biased toward what the encoders learned from the training movies.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results_dir: str | Path, output: str | Path | None = None) -> Path:
    """Render the report of a results folder into ``output`` (default: ``results_dir/report.html``)."""
    results = load_results(results_dir)
    page = render_report(results)
    target = Path(output) if output is not None else results.path / REPORT
    _atomic.write_text(target, page)
    return target
