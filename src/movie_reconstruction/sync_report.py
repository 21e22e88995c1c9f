"""What the sync signals said (:class:`SyncReport`): frame-clock pulses, rates, gaps, dropped and
irregular flips, the display lag, the wheel encoder's counts and distance, as data
(:meth:`SyncReport.to_dict`) and as text for people.
:mod:`movie_reconstruction.sync` fills it in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DroppedFlip:
    """A flip interval longer (``extra_refreshes > 0``) or shorter (< 0) than nominal."""

    frame: int  # the stimulus frame that appeared late (or early)
    time_s: float
    extra_refreshes: int


@dataclass
class ImagingClockReport:
    n_pulses: int
    n_frames: int | None  # frames in the imaging data, when known
    frame_rate_hz: float
    missing_at_end: int = 0  # frames acquired after the clock stopped being recorded
    extra_at_end: int = 0  # pulses after the last frame (the clock kept running)
    gaps: list[tuple[int, float]] = field(default_factory=list)  # (pulse index, interval s) where pulses are missing
    glitches_removed: int = 0


@dataclass
class StimulusSyncReport:
    source: str  # "vsync", "photodiode" or "vsync+photodiode"
    n_flips: int
    refresh_hz: float
    nominal_refreshes: int  # refreshes per stimulus frame
    dropped: list[DroppedFlip] = field(default_factory=list)  # intervals longer than nominal
    short: list[DroppedFlip] = field(default_factory=list)  # intervals shorter than nominal
    irregular: list[tuple[int, float]] = field(default_factory=list)  # (frame, interval s) not a whole refresh count
    display_lag_s: float | None = None  # median photodiode - vsync
    display_lag_spread_s: float | None = None
    unmatched_vsync: int = 0  # vsync edges without a photodiode transition (lag-corrected vsync used)
    n_movie_frames: int | None = None
    glitches_removed: int = 0


@dataclass
class WheelReport:
    """What a wheel encoder's lines gave (:mod:`movie_reconstruction.sync_wheel` fills it in)."""

    encoder: str  # "quadrature" or "analog"
    circumference_cm: float
    counts: int | None = None  # quadrature: net counts (forwards minus backwards)
    transitions: int | None = None  # quadrature: valid state changes, either way
    invalid_transitions: int = 0  # quadrature: both lines changed at once (not counted)
    glitches_removed: int = 0  # quadrature: pulses shorter than the debounce time
    wraps: int | None = None  # analogue: 0..V_max wraps found, either way
    revolutions: float | None = None  # analogue: net revolutions
    distance_cm: float = 0.0  # net, forwards positive
    forwards_cm: float = 0.0
    backwards_cm: float = 0.0
    mean_speed_cm_s: float = 0.0  # signed, over the whole recording
    max_speed_cm_s: float = 0.0  # largest |speed|
    direction: str = "still"  # "forwards", "backwards", "both" or "still"
    smoothing_s: float = 0.0
    frames_outside: int = 0  # frame times outside the DAQ recording (speed held at its edge value)


@dataclass
class SyncReport:
    """What the sync signals said: counts, rates, dropped flips, missing frames."""

    imaging: ImagingClockReport | None
    stimulus: StimulusSyncReport | None
    source: str | None = None
    wheel: WheelReport | None = None

    @property
    def dropped_frames(self) -> list[int]:
        return [d.frame for d in self.stimulus.dropped] if self.stimulus else []

    def summary(self) -> str:
        lines = [f"sync signals from {self.source}" if self.source else "sync signals"]
        if self.imaging is not None:
            lines += _imaging_lines(self.imaging)
        if self.stimulus is not None:
            lines += _stimulus_lines(self.stimulus)
        if self.wheel is not None:
            lines += _wheel_lines(self.wheel)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    def one_line(self) -> str:
        """The counts that matter, for a progress line."""
        parts = []
        if self.imaging is not None:
            parts.append(f"{self.imaging.n_pulses} frame-clock pulses")
            if self.imaging.missing_at_end:
                parts.append(f"{self.imaging.missing_at_end} imaging frame(s) missing at the end")
        if self.stimulus is not None:
            parts.append(f"{self.stimulus.n_flips} stimulus flips ({self.stimulus.source}), "
                         f"{len(self.stimulus.dropped)} dropped, {len(self.stimulus.irregular)} irregular")
        if self.wheel is not None:
            parts.append(f"wheel ({self.wheel.encoder}) {self.wheel.distance_cm:.0f} cm, {self.wheel.direction}, "
                         f"max {self.wheel.max_speed_cm_s:.1f} cm/s")
        return "sync: " + "; ".join(parts)


def _imaging_lines(r: ImagingClockReport) -> list[str]:
    known = f" for {r.n_frames} imaging frames" if r.n_frames is not None else ""
    lines = [f"frame clock: {r.n_pulses} pulses{known} at {r.frame_rate_hz:.3f} Hz"]
    if r.missing_at_end:
        lines.append(f"  {r.missing_at_end} imaging frame(s) at the end have no clock pulse: their times are extrapolated")
    if r.extra_at_end:
        lines.append(f"  {r.extra_at_end} clock pulse(s) after the last imaging frame were ignored")
    for index, interval in r.gaps[:10]:
        lines.append(f"  gap of {interval * 1e3:.1f} ms after pulse {index} (missing pulses?)")
    if r.glitches_removed:
        lines.append(f"  {r.glitches_removed} glitch(es) shorter than the debounce time ignored")
    return lines


def _stimulus_lines(r: StimulusSyncReport) -> list[str]:
    lines = [f"stimulus ({r.source}): {r.n_flips} flips, {r.nominal_refreshes} refresh(es) per frame at {r.refresh_hz:g} Hz"]
    if r.n_movie_frames is not None and r.n_movie_frames != r.n_flips:
        lines.append(f"  the stimulus movie has {r.n_movie_frames} frames, {r.n_flips} were shown")
    if r.display_lag_s is not None:
        lines.append(f"  display lag (photodiode after vsync): {r.display_lag_s * 1e3:.2f} ms "
                     f"(spread {r.display_lag_spread_s * 1e3:.2f} ms)")
    if r.unmatched_vsync:
        lines.append(f"  {r.unmatched_vsync} vsync edge(s) without a photodiode transition: vsync + lag used")
    if r.dropped:
        shown = ", ".join(f"{d.frame} (+{d.extra_refreshes})" for d in r.dropped[:20])
        more = f" and {len(r.dropped) - 20} more" if len(r.dropped) > 20 else ""
        lines.append(f"  {len(r.dropped)} dropped flip(s), the previous frame held on screen longer; late frames: {shown}{more}")
    else:
        lines.append("  no dropped flips")
    if r.short:
        lines.append(f"  {len(r.short)} frame(s) shown too briefly: " + ", ".join(str(d.frame) for d in r.short[:20]))
    if r.irregular:
        lines.append(f"  {len(r.irregular)} irregular interval(s) (not a whole number of refreshes), first before frame "
                     f"{r.irregular[0][0]} ({r.irregular[0][1] * 1e3:.1f} ms)")
    if r.glitches_removed:
        lines.append(f"  {r.glitches_removed} glitch(es) shorter than the debounce time ignored")
    return lines



def _wheel_lines(r: WheelReport) -> list[str]:
    if r.encoder == "quadrature":
        counted = f"{r.counts} net counts from {r.transitions} valid transitions"
    else:
        counted = f"{r.revolutions:.2f} net revolutions, {r.wraps} wrap(s)"
    lines = [f"wheel ({r.encoder}): {counted}; {r.distance_cm:.1f} cm net ({r.forwards_cm:.1f} forwards, "
             f"{r.backwards_cm:.1f} backwards), direction {r.direction}",
             f"  speed: mean {r.mean_speed_cm_s:.2f} cm/s, max {r.max_speed_cm_s:.1f} cm/s "
             f"(straight-line fit over {r.smoothing_s:g} s)"]
    if r.invalid_transitions:
        lines.append(f"  {r.invalid_transitions} invalid transition(s) (both lines changed at once) not counted")
    if r.glitches_removed:
        lines.append(f"  {r.glitches_removed} pulse(s) shorter than the debounce time removed")
    if r.frames_outside:
        lines.append(f"  {r.frames_outside} frame(s) outside the DAQ recording: speed held at its edge value")
    return lines
