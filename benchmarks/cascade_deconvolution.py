"""suite2p's deconvolution (baseline removal + OASIS) against electrophysiological ground truth.

For each CASCADE ground-truth recording (simultaneous two-photon dF/F and cell-attached spikes):

1. the dF/F trace is resampled to a common rate by averaging the samples that fall in each
   frame of the common rate (the anti-aliasing a slower microscope's frame integration does);
2. suite2p deconvolves it exactly as its pipeline does (``extraction.preprocess`` with the
   default maximin baseline, then ``extraction.oasis``) with the indicator's tau;
3. the true spikes are counted in the same frames;
4. both the deconvolved trace and the true spike counts are smoothed with the same Gaussian
   kernel and correlated (Pearson, whole recording).

Per dataset it reports the median correlation over recordings and its spread (interquartile
range), next to the same figure for the smoothed dF/F itself (what deconvolution adds).

    python benchmarks/cascade_deconvolution.py --data ../shared/data/cascade --write-docs docs/extraction.md
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TAU_BY_INDICATOR = {"GCaMP6f": 0.7, "GCaMP6m": 1.0, "GCaMP6s": 1.25}
DOC_BEGIN = "<!-- cascade-benchmark:begin -->"
DOC_END = "<!-- cascade-benchmark:end -->"


def load_recordings(mat_path: Path):
    """(dF/F, sample times in s, spike times in s) for each recording in a CASCADE .mat file."""
    from scipy.io import loadmat

    records = np.atleast_1d(loadmat(mat_path, squeeze_me=True, struct_as_record=False)["CAttached"])
    for record in records:
        trace = np.asarray(record.fluo_mean, dtype=np.float64).ravel()
        times = np.asarray(record.fluo_time, dtype=np.float64).ravel()
        spikes = np.atleast_1d(np.asarray(record.events_AP, dtype=np.float64)) / 1e4  # CASCADE stores 1e-4 s units
        finite = np.isfinite(trace) & np.isfinite(times)
        if finite.sum() < 100:
            continue
        yield trace[finite], times[finite], spikes


def resample(trace, times, spikes, rate):
    """Average dF/F and count spikes in consecutive frames of ``1/rate`` s."""
    edges = np.arange(times[0], times[-1], 1.0 / rate)
    index = np.digitize(times, edges) - 1
    valid = (index >= 0) & (index < len(edges) - 1)
    n = len(edges) - 1
    counts = np.bincount(index[valid], minlength=n)
    sums = np.bincount(index[valid], weights=trace[valid], minlength=n)
    filled = counts > 0
    frames = np.interp(np.arange(n), np.flatnonzero(filled), sums[filled] / counts[filled])
    spike_counts = np.histogram(spikes, bins=edges)[0].astype(np.float64)
    return frames, spike_counts


def smooth(x, sigma_frames):
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma_frames, mode="nearest")


def deconvolve(traces: list[np.ndarray], rate: float, tau: float) -> list[np.ndarray]:
    """suite2p's own pipeline steps: maximin baseline removal, then OASIS."""
    import suite2p
    import torch

    settings = suite2p.default_settings()
    pre = settings["dcnv_preprocess"]
    out = []
    for trace in traces:  # one at a time: recordings differ in length
        F = trace[None].astype(np.float32)
        F = suite2p.extraction.preprocess(
            F=F, baseline=pre["baseline"], win_baseline=pre["win_baseline"], sig_baseline=pre["sig_baseline"],
            fs=rate, prctile_baseline=pre["prctile_baseline"], batch_size=settings["extraction"]["batch_size"],
            device=torch.device("cpu"),
        )
        out.append(suite2p.extraction.oasis(F=F, batch_size=settings["extraction"]["batch_size"], tau=tau, fs=rate)[0])
    return out


def corr(a, b):
    if np.std(a) == 0 or np.std(b) == 0:
        return np.nan
    return float(np.corrcoef(a, b)[0, 1])


def run_dataset(folder: Path, rate: float, sigma_s: float, max_files: int | None):
    indicator = next((name for name in TAU_BY_INDICATOR if name.lower() in folder.name.lower()), None)
    tau = TAU_BY_INDICATOR.get(indicator, 1.0)
    files = sorted(folder.glob("*.mat"))[: max_files or None]
    resampled, truth = [], []
    for path in files:
        for trace, times, spikes in load_recordings(path):
            frames, counts = resample(trace, times, spikes, rate)
            if counts.sum() == 0:
                continue
            resampled.append(frames)
            truth.append(counts)
    t0 = time.perf_counter()
    spks = deconvolve(resampled, rate, tau)
    seconds = time.perf_counter() - t0
    sigma = sigma_s * rate
    deconvolved = np.array([corr(smooth(s, sigma), smooth(t, sigma)) for s, t in zip(spks, truth)])
    raw = np.array([corr(smooth(f, sigma), smooth(t, sigma)) for f, t in zip(resampled, truth)])
    return {
        "dataset": folder.name,
        "tau": tau,
        "files": len(files),
        "recordings": len(spks),
        "hours": sum(len(t) for t in truth) / rate / 3600,
        "spikes": int(sum(t.sum() for t in truth)),
        "median": float(np.nanmedian(deconvolved)),
        "q25": float(np.nanpercentile(deconvolved, 25)),
        "q75": float(np.nanpercentile(deconvolved, 75)),
        "min": float(np.nanmin(deconvolved)),
        "max": float(np.nanmax(deconvolved)),
        "raw_median": float(np.nanmedian(raw)),
        "seconds": seconds,
    }


def table(rows, rate, sigma_s) -> str:
    lines = [
        f"Common rate {rate:g} Hz; both signals smoothed with a Gaussian of sigma {sigma_s:g} s; Pearson r per recording.",
        "",
        "| dataset | tau (s) | recordings | spikes | median r (deconvolved) | IQR | range | median r (dF/F, no deconvolution) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['tau']:g} | {r['recordings']} ({r['files']} files, {r['hours']:.2f} h) | {r['spikes']} "
            f"| {r['median']:.3f} | {r['q25']:.3f}-{r['q75']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {r['raw_median']:.3f} |"
        )
    return "\n".join(lines)


def write_docs(doc: Path, text: str, command: str) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from movie_reconstruction._atomic import write_text

    block = f"{DOC_BEGIN}\n\nMeasured with `{command}`:\n\n{text}\n\n{DOC_END}"
    old = doc.read_text() if doc.exists() else ""
    if DOC_BEGIN in old and DOC_END in old:
        new = re.sub(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    write_text(doc, new)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cascade", help="folder of CASCADE dataset folders")
    parser.add_argument("--rate", type=float, default=30.0, help="common frame rate (Hz) to resample to")
    parser.add_argument("--sigma", type=float, default=0.2, help="Gaussian smoothing sigma (s) applied to both signals")
    parser.add_argument("--max-files", type=int, default=None, help="at most this many .mat files per dataset (quick runs)")
    parser.add_argument("--write-docs", type=Path, default=None, help="write the table into this markdown file")
    args = parser.parse_args(argv)

    datasets = sorted(p for p in args.data.iterdir() if p.is_dir() and any(p.glob("*.mat")))
    if not datasets:
        parser.error(f"no CASCADE datasets (folders of .mat files) in {args.data}")
    rows = []
    for folder in datasets:
        rows.append(run_dataset(folder, args.rate, args.sigma, args.max_files))
        r = rows[-1]
        print(f"{r['dataset']}: {r['recordings']} recordings, median r {r['median']:.3f} (IQR {r['q25']:.3f}-{r['q75']:.3f}), "
              f"OASIS {r['seconds']:.1f} s", flush=True)
    text = table(rows, args.rate, args.sigma)
    print()
    print(text)
    if args.write_docs:
        command = "python benchmarks/cascade_deconvolution.py " + " ".join(
            a for a in (f"--rate {args.rate:g}", f"--sigma {args.sigma:g}",
                        f"--max-files {args.max_files}" if args.max_files else "", f"--write-docs {args.write_docs}") if a
        )
        write_docs(args.write_docs, text, command)


if __name__ == "__main__":
    main()
