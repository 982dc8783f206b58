"""TensorBoard logs: event files or log directories, one run per folder of event files."""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from backbones.data.logs.metrics import EPOCH_NAMES, classify_metric, metric_words, names_split
from backbones.data.logs.runs import PendingEpoch, Run, apply_name, deduplicate_names, finish_epochs
from backbones.errors import LogFormatError

_SPLIT_DIRS = {"train", "training", "validation", "val", "valid", "test", "eval"}
#: Largest total size of the event files of one log read (a 10 MiB file of 200,000 scalars costs
#: about 4.5 s of CPU here; a 50 MB one cost 23 s and 800 MB). Export bigger runs' scalars to CSV.
MAX_EVENT_BYTES = 16 * 2**20
#: Most scalar values kept from one log (every tag together).
MAX_SCALARS = 200_000


def _event_dirs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    dirs = sorted({f.parent for f in path.rglob("*tfevents*") if f.is_file()})
    return dirs


def _event_files(targets: list[Path]) -> list[Path]:
    return [t for t in targets if t.is_file()] + [f for t in targets if t.is_dir() for f in t.glob("*tfevents*")
                                                  if f.is_file()]


def read_tensorboard(path: str | os.PathLike, *, name: str | None = None, max_bytes: int | None = None,
                     max_scalars: int | None = None) -> list[Run]:
    """Runs from a TensorBoard event file or log directory (each folder of event files is one run).

    Folders called ``train``/``validation`` (Keras) are the two halves of their
    parent's run. Epoch times come from a ``time`` scalar, else from the event
    wall times (noted). Event files larger than ``max_bytes`` together, or holding more
    than ``max_scalars`` scalar values, are refused (one line) rather than read at any cost
    (defaults :data:`MAX_EVENT_BYTES`, :data:`MAX_SCALARS`).
    """
    max_bytes = MAX_EVENT_BYTES if max_bytes is None else max_bytes
    max_scalars = MAX_SCALARS if max_scalars is None else max_scalars
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError as exc:  # tensorboard is in requirements.txt; say so if it went missing
        raise LogFormatError("reading TensorBoard files needs the tensorboard package") from exc
    path = Path(path)
    label = path.name or str(path)
    targets = _event_dirs(path)
    if not targets:
        raise LogFormatError(f"{label}: no TensorBoard event files (events.out.tfevents.*) found")
    total = sum(f.stat().st_size for f in _event_files(targets))
    if total > max_bytes:
        raise LogFormatError(f"{label}: {total / 2**20:.1f} MiB of TensorBoard events is more than the "
                             f"{max_bytes / 2**20:.0f} MiB read here; export the scalars to CSV")
    # Scalars: one more than the cap per tag, so that going past it shows; the rest (images,
    # histograms, tensors) are never used here: keep one of each, not TensorBoard's defaults.
    guidance = {ea.SCALARS: max_scalars + 1, ea.IMAGES: 1, ea.AUDIO: 1, ea.HISTOGRAMS: 1,
                ea.COMPRESSED_HISTOGRAMS: 1, ea.TENSORS: 1}
    kept = 0
    groups: dict[Path, list[tuple[Path, str | None]]] = {}
    for t in targets:
        if t.is_dir() and t.name.lower() in _SPLIT_DIRS and t != path:
            groups.setdefault(t.parent, []).append((t, t.name.lower()))
        else:
            groups.setdefault(t, []).append((t, None))
    runs: list[Run] = []
    for run_path, members in groups.items():
        scalars: dict[str, list[tuple[int, float, float]]] = {}  # field -> (step, wall_time, value)
        epoch_steps: list[tuple[int, int]] = []
        specific: dict[str, bool] = {}
        for member, hint in members:
            try:
                acc = ea.EventAccumulator(str(member), size_guidance=guidance)
                acc.Reload()
                tags = acc.Tags().get("scalars", [])
            except Exception as exc:  # corrupt records surface as assorted tensorboard/protobuf errors
                raise LogFormatError(f"{label}: cannot read TensorBoard events ({type(exc).__name__}: {exc})") from exc
            kept += sum(len(acc.Scalars(tag)) for tag in tags)
            if kept > max_scalars:
                raise LogFormatError(f"{label}: more than {max_scalars:,} scalar values in the TensorBoard events; "
                                     "export the scalars to CSV")
            for tag in sorted(tags):
                words = metric_words(tag)
                if words and set(words) <= EPOCH_NAMES:
                    epoch_steps += [(ev.step, int(round(ev.value))) for ev in acc.Scalars(tag)]
                    continue
                f = classify_metric(tag, hint)
                if f is None:
                    continue
                explicit = names_split(tag) or hint is not None
                if f in scalars and (specific[f] or not explicit):
                    continue
                scalars[f] = [(ev.step, ev.wall_time, ev.value) for ev in acc.Scalars(tag)]
                specific[f] = explicit
        if not scalars:
            continue
        epoch_of = _step_to_epoch(sorted(epoch_steps))
        accs: dict[int, PendingEpoch] = {}
        wall: dict[int, float] = {}
        for f, events in scalars.items():
            for step, wall_time, value in events:
                e = epoch_of(step)
                accs.setdefault(e, PendingEpoch(e)).put(f, float(value))
                wall[e] = max(wall.get(e, 0.0), wall_time)
        ordered = [accs[e] for e in sorted(accs)]
        notes_extra: list[str] = []
        if "time_s" not in scalars and len(ordered) > 1:
            # Event wall times give the epoch time as the gap since the previous epoch's last event.
            for prev, cur in zip(ordered, ordered[1:]):
                cur.put("time_s", wall[cur.epoch] - wall[prev.epoch])
            notes_extra.append("epoch times estimated from event wall times")
        epochs, notes = finish_epochs(ordered)
        run_name = run_path.name if run_path.is_dir() else path.stem
        if run_path.is_file() or run_path == path:
            run_name = (path.name if path.is_dir() else path.parent.name) or run_name
        runs.append(Run(run_name, str(run_path), epochs, "tensorboard", 0, tuple(notes + notes_extra)))
    if not runs:
        raise LogFormatError(f"{label}: no loss or accuracy scalars in the TensorBoard events")
    names = deduplicate_names([r.name for r in runs])
    runs = [r if r.name == n else r.renamed(n) for r, n in zip(runs, names)]
    return apply_name(runs, name)


def _step_to_epoch(epoch_steps: list[tuple[int, int]]):
    if not epoch_steps:
        return lambda step: int(step)
    steps = [s for s, _ in epoch_steps]

    def epoch_of(step: int) -> int:
        i = bisect.bisect_right(steps, step) - 1
        return epoch_steps[max(i, 0)][1]

    return epoch_of
