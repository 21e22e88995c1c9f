"""The statistical part of the HTML report: the verdict table first, then identification,
resolution, the reliability map and the detail (read from controls.json and metrics.json)."""

from __future__ import annotations

import html

import numpy as np

from ._report_html import _evaluation_outline, _img, _png, _subplots, _table
from .results import Results


def _interval(comparison: dict) -> str:
    low, high = comparison.get("ci_low"), comparison.get("ci_high")  # None (NaN in JSON) when not applicable
    return "–" if low is None or high is None else f"{low:+.3f} to {high:+.3f}"


def _g(value) -> str:
    return "–" if value is None else f"{value:.2g}"


def reliability_figure(reliability: np.ndarray, mask) -> str:
    """The per-pixel correlation over time (mean over trials), with the evaluation mask outlined."""
    fig, ax = _subplots(figsize=(5.2, 3.4))
    image = ax.imshow(reliability, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    _evaluation_outline(ax, mask)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("per-pixel correlation over time (mean over trials)\nyellow: evaluation mask", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, label="r")
    return _png(fig)



_VERDICT_CLASS = {"beats every control": "good", "does not beat every control": "bad", "cannot tell": "unclear"}


def verdict_section(controls: dict | None, statistics: dict | None, results: Results) -> list[str]:
    """The verdict table a reviewer reads first, then identification, resolution and the reliability map."""
    parts = []
    if controls and controls.get("verdicts"):
        overall = controls.get("overall", "cannot tell")
        parts.append(f"<p class='verdict {_VERDICT_CLASS.get(overall, 'unclear')}'>Verdict: <b>{html.escape(overall)}</b>. "
                     f"{html.escape(controls.get('overall_sentence', ''))}.</p>")
        rows = []
        for v in controls["verdicts"]:
            for c in v["comparisons"]:
                if c["measure"] in v["judged_on"]:
                    rows.append({"control": v["control"], "judged on": c["measure"], "real r": c["real"],
                                 "control r": c["control_score"], "effect (real - control)": c["effect"],
                                 "95% CI": _interval(c),
                                 "p": _g(c["p_value"]) if c["verdict"] != "cannot tell" else f"min {c['min_p']:.2g}",
                                 "tested over": f"{c['units']} {c['resampling']}", "verdict": c["verdict"]})
        parts.append(_table(rows, ["control", "judged on", "real r", "control r", "effect (real - control)", "95% CI",
                                   "p", "tested over", "verdict"]))
        parts.append("<p class='muted'>One-sided tests at p &lt; 0.01 of real minus control. Masked r and the static part "
                     "(per-pixel temporal means) are shared by every frame of a trial, so they are tested over trials "
                     "(exact sign flips; fewer than 7 trials cannot reach p &lt; 0.01, and the verdict says "
                     "&ldquo;cannot tell&rdquo;). The moving part (each pixel minus its mean) is tested by swapping real "
                     "and control in blocks of at least 1 s within trials.</p>")
    elif controls:
        parts.append("<p class='verdict unclear'>These controls were run before the statistical verdicts existed: "
                     "run <code>movie-recon evaluate</code> on this folder.</p>")
    if statistics:
        parts.append(_identification_and_resolution(statistics))
    path = results.path / "reliability_map.npy"
    if path.is_file():
        parts.append(_img(reliability_figure(np.load(path), results.mask), "reliability map", "560px"))
    return parts


def _identification_and_resolution(statistics: dict) -> str:
    lines = []
    ident = statistics.get("identification")
    if ident:
        lines.append(f"<b>Identification</b>: the own stimulus ranks {', '.join(map(str, ident['ranks']))} among "
                     f"{ident['candidates']} movies (top-1 {ident['top1']:.2f}, chance {ident['chance_top1']:.3f}; "
                     f"top-5 {ident['top5']:.2f}, chance {ident['chance_top5']:.3f}; p = {ident['p_value']:.2g}). "
                     f"Per 1 s segment: top-1 {ident['segment_top1']:.2f} (chance {ident['segment_chance_top1']:.4f}) "
                     f"among {ident['segment_candidates']} segments. Distractors: {html.escape(ident['distractor_source'])}.")
    for key, what in (("temporal_resolution", "Temporal resolution"), ("spatial_resolution", "Spatial resolution")):
        spectrum = statistics.get(key)
        if spectrum:
            limit = spectrum.get("limit")
            text = (f"coherence &ge; {spectrum['level']:g} up to <b>{limit:.3g} {html.escape(spectrum['unit'])}</b>"
                    if limit is not None else f"coherence below {spectrum['level']:g} at every frequency")
            lines.append(f"<b>{what}</b>: {text}.")
    lines += [f"<span class='muted'>{html.escape(n)}</span>" for n in statistics.get("notes", [])]
    return "<p>" + "<br>".join(lines) + "</p>"


def detail_tables(controls: dict, statistics: dict | None) -> list[str]:
    """Static and moving content of every condition, and every comparison (not only the judged ones)."""
    parts = []
    content = (statistics or {}).get("content") or {}
    if content:
        measures = list(next(iter(content.values()))[0])
        rows = [{"condition": name, **{m: float(np.mean([t[m] for t in trials])) for m in measures}}
                for name, trials in content.items()]
        parts.append("<p class='muted'>Mean over trials of r for the static part, the moving part and the changes "
                     "over k frames (frames &ge; 30, evaluation mask).</p>")
        parts.append(_table(rows, ["condition", *measures]))
    comparisons = [c for v in controls.get("verdicts", []) for c in v["comparisons"]]
    if comparisons:
        rows = [{"control": c["control"], "measure": c["measure"], "effect": c["effect"],
                 "95% CI": _interval(c), "p": _g(c["p_value"]),
                 "tested over": f"{c['units']} {c['resampling']}", "verdict": c["verdict"]} for c in comparisons]
        parts.append("<details><summary>Every comparison, judged or not</summary>"
                     + _table(rows, ["control", "measure", "effect", "95% CI", "p", "tested over", "verdict"]) + "</details>")
    return parts
