"""Wrapper overhead: ``extract_traces`` against calling ``suite2p.run_s2p`` directly on the same stack.

Both runs use the identical, complete suite2p settings dict, the same TIFF and the CPU. The
wrapper's time includes everything a user waits for: reading the TIFF through our reader,
writing the binary, the worker thread and log relay, the run marker, the rename into place and
loading the results as ``Traces``. The two are run alternately ``--repeats`` times in one
process; the ratio of the medians is the overhead (target: <= 1.05).

    python benchmarks/extract_overhead.py                      # CaImAn demo movie, 1000 x 30 x 40
    python benchmarks/extract_overhead.py --synthetic 3000 128 # a 3000-frame 128x128 synthetic stack
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DOC_BEGIN = "<!-- overhead-benchmark:begin -->"
DOC_END = "<!-- overhead-benchmark:end -->"


def synthetic_tiff(path: Path, frames: int, size: int, seed: int = 0) -> Path:
    import tifffile
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    n_cells = max(4, size * size // 400)
    centres = rng.uniform(6, size - 6, (n_cells, 2))
    yy, xx = np.mgrid[:size, :size]
    texture = gaussian_filter(rng.standard_normal((size, size)), 1.5)
    background = 300 + 60 * np.clip(texture / texture.std(), -3, 3)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        calcium = np.zeros(n_cells)
        for start in range(0, frames, 500):
            block = []
            for _ in range(min(500, frames - start)):
                calcium = calcium * np.exp(-1 / 10) + (rng.random(n_cells) < 0.03)
                frame = background.copy()
                for (cy, cx), c in zip(centres, calcium):
                    if c > 0.01:
                        frame += 400 * c * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
                block.append(rng.poisson(frame).astype(np.int16))
            for frame in block:
                tif.write(frame, contiguous=True)
    return path


def run_direct(tiff: Path, out: Path, settings: dict) -> float:
    import suite2p

    db = suite2p.default_db()
    db["data_path"] = [str(tiff.parent)]
    db["file_list"] = [tiff.name]
    db["save_path0"] = str(out)
    t0 = time.perf_counter()
    suite2p.run_s2p(db=db, settings=settings)
    return time.perf_counter() - t0


def run_direct_in_thread(tiff: Path, out: Path, settings: dict) -> float:
    """The same call from a worker thread, as the wrapper runs it (see the note in main)."""
    import threading

    result = {}

    def work():
        try:
            result["seconds"] = run_direct(tiff, out, settings)
        except BaseException as exc:  # re-raised below
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["seconds"]


def run_wrapper(tiff: Path, out: Path, kwargs: dict) -> float:
    from movie_reconstruction.extract import extract_traces
    from movie_reconstruction.progress import run

    t0 = time.perf_counter()
    traces = run(extract_traces(tiff, out, device="cpu", **kwargs))
    elapsed = time.perf_counter() - t0
    assert traces and traces[0].n_frames > 0
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", type=Path, default=REPO.parent / "shared" / "data" / "twop" / "calcium_imaging.tif")
    parser.add_argument("--synthetic", nargs=2, type=int, metavar=("FRAMES", "SIZE"), help="use a synthetic stack instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-main-thread", action="store_true", help="do not also time run_s2p from the main thread")
    parser.add_argument("--write-docs", type=Path, default=None)
    args = parser.parse_args(argv)

    import logging

    import suite2p

    from movie_reconstruction.extract import small_fov_overrides, suite2p_settings
    from movie_reconstruction.extract.suite2p_config import fit_settings_to_frame

    logging.getLogger("suite2p").setLevel(logging.WARNING)  # neither run prints; the wrapper raises it to INFO itself
    work = Path(tempfile.mkdtemp(prefix="extract-overhead-"))
    try:
        if args.synthetic:
            frames, size = args.synthetic
            (work / "input").mkdir()
            tiff = synthetic_tiff(work / "input" / "stack.tif", frames, size)
            label = f"synthetic {frames} x {size} x {size}"
            kwargs = {"fs": 10.0, "diameter": 6}
        else:
            tiff = args.stack
            label = f"{tiff.name}"
            kwargs = {"fs": 10.0, "tau": 2.0, "diameter": 6, "settings": small_fov_overrides(6)}
        import tifffile

        with tifffile.TiffFile(tiff) as tif:
            shape = (len(tif.pages), *tif.pages[0].shape)
        settings = suite2p_settings(
            fs=kwargs["fs"], tau=kwargs.get("tau", 1.0), diameter=kwargs["diameter"], device="cpu",
            overrides=kwargs.get("settings"),
        )
        fit_settings_to_frame(settings, shape[1:], explicit_nonrigid=False)  # as the wrapper does
        assert suite2p.default_settings().keys() == settings.keys()

        # The wrapper runs suite2p in a worker thread. Under CPU oversubscription torch's
        # OpenMP pool is much slower when driven from the main thread than from a fresh
        # thread (we measured >10x on a loaded 2-core machine), which would flatter the
        # wrapper; so the like-for-like baseline calls run_s2p from a worker thread too, and
        # the main-thread call is reported beside it for information.
        runners = {
            "direct (worker thread)": lambda out: run_direct_in_thread(tiff, out, settings),
            "extract_traces": lambda out: run_wrapper(tiff, out, kwargs),
        }
        if not args.skip_main_thread:
            runners["direct (main thread)"] = lambda out: run_direct(tiff, out, settings)
        times = {name: [] for name in runners}
        names = list(runners)
        for repeat in range(args.repeats + 1):  # the first round warms up numba/torch and the page cache
            order = names if repeat % 2 == 0 else names[::-1]
            for name in order:
                out = work / f"run{repeat}-{names.index(name)}"
                seconds = runners[name](out)
                shutil.rmtree(out, ignore_errors=True)
                if repeat > 0:
                    times[name].append(seconds)
                print(f"repeat {repeat} {name}: {seconds:.2f} s{' (warm-up)' if repeat == 0 else ''}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    d, w = statistics.median(times["direct (worker thread)"]), statistics.median(times["extract_traces"])
    ratio = w / d
    main_thread = statistics.median(times["direct (main thread)"]) if "direct (main thread)" in times else float("nan")
    text = "\n".join([
        f"Stack: {label} ({shape[0]} frames of {shape[1]}x{shape[2]}), CPU, median of {args.repeats} alternating runs "
        f"after one warm-up round.",
        "",
        "| suite2p.run_s2p, worker thread (s) | extract_traces (s) | ratio | target | run_s2p, main thread (s) |",
        "|---|---|---|---|---|",
        f"| {d:.2f} | {w:.2f} | {ratio:.3f} | <= 1.05 | {main_thread:.2f} |",
    ])
    print()
    print(text)
    if args.write_docs:
        from movie_reconstruction._atomic import write_text

        command = "python benchmarks/extract_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
        block = f"{DOC_BEGIN}\n\nMeasured with `{command.strip()}`:\n\n{text}\n\n{DOC_END}"
        old = args.write_docs.read_text() if args.write_docs.exists() else ""
        if DOC_BEGIN in old:
            new = re.sub(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), lambda _: block, old, flags=re.S)
        else:
            new = old.rstrip() + "\n\n" + block + "\n"
        write_text(args.write_docs, new)
    return ratio


if __name__ == "__main__":
    main()
