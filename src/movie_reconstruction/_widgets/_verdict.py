"""The controls' verdict as the plots panel shows it, read from a layer's ``controls`` metadata:
the ``controls.json`` of a results folder (rows, verdicts, overall verdict, neuron-count curve),
or the bare rows a Reconstruct run leaves (no verdicts judged yet). Plain Python, no Qt."""

from __future__ import annotations

import math

HEADER = ("control", "mean r", "ctrl/real", "verdict", "p (masked r)")


def _rows(controls) -> list[dict]:
    if isinstance(controls, dict):
        return list(controls.get("rows") or [])
    return list(controls or [])


def _masked_p(verdict: dict | None) -> str:
    """The masked-correlation comparison's p, as ``movie-recon evaluate`` prints it."""
    for comparison in (verdict or {}).get("comparisons", []):
        if comparison.get("measure") == "masked":
            if comparison.get("verdict") == "cannot tell":
                return f"≥ {comparison['min_p']:.2g}"
            return f"{comparison['p_value']:.2g}"
    return ""


def _number(value, digits: int) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def verdict_rows(controls) -> list[tuple[str, ...]]:
    """One row per condition (``real`` first), in the columns of :data:`HEADER`."""
    verdicts = {v.get("control"): v for v in (controls.get("verdicts") or [])} if isinstance(controls, dict) else {}
    table = []
    for row in _rows(controls):
        name = str(row.get("condition", ""))
        is_real = name == "real"
        table.append((
            name,
            _number(row.get("mean_r"), 3),
            "" if is_real else _number(row.get("control/real"), 2),
            "" if is_real else str(row.get("verdict") or "not judged"),
            "" if is_real else _masked_p(verdicts.get(name)),
        ))
    return table


def overall_text(controls, limit: int | None = None) -> str:
    """The overall verdict in one sentence (or why there is none), cut to ``limit`` characters."""
    if not _rows(controls):
        return "No controls in these results: run Reconstruct with controls, or `movie-recon evaluate`."
    if not isinstance(controls, dict) or not controls.get("overall"):
        return "Controls not judged yet: `movie-recon evaluate` on the results folder gives the verdicts."
    text = f"Verdict: {controls['overall']}"
    if controls.get("overall_sentence"):
        text += f" ({controls['overall_sentence']})"
    if controls.get("stale"):
        text += f". STALE: computed before trial(s) {controls['stale']} changed; re-run the controls."
    return text if limit is None or len(text) <= limit else text[: limit - 1].rstrip() + "…"


def neuron_curve(controls) -> tuple[list[int], list[float]]:
    """Neurons used and the mean masked r with that many (empty when the folder has no curve)."""
    points = controls.get("neuron_curve") if isinstance(controls, dict) else None
    neurons, mean_r = [], []
    for point in points or []:
        neurons.append(int(point["neurons"]))
        mean_r.append(float(point["mean_r"]))
    return neurons, mean_r
