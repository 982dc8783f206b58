"""CSV logs: a header row with an ``epoch`` column (Keras' CSVLogger, Lightning's metrics.csv, timm's summary.csv)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from backbones.data.logs.metrics import EPOCH_NAMES, classify_metric, names_split, parse_number
from backbones.data.logs.runs import PendingEpoch, Run, apply_name, finish_epochs
from backbones.errors import LogFormatError


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def looks_like_csv(text: str) -> bool:
    """Whether the first non-empty line is a CSV header with an epoch column."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = _sniff_delimiter(first)
    cells = [c.strip().strip('"').lower() for c in first.split(delimiter)]
    return len(cells) >= 2 and any(re.sub(r"[\s\-.]+", "_", c) in EPOCH_NAMES for c in cells)


def parse_csv_log(text: str, *, source: str = "log.csv", name: str | None = None) -> list[Run]:
    """Runs from a CSV log with a header row including an ``epoch`` column.

    Consecutive rows of one epoch merge (Lightning writes train and validation
    rows separately); an epoch number that goes back starts a new run.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise LogFormatError(f"{source}: empty CSV")
    delimiter = _sniff_delimiter(lines[0])
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, skipinitialspace=True))
    except csv.Error as exc:
        raise LogFormatError(f"{source}: not a readable CSV ({exc})") from exc
    header = [c.strip() for c in rows[0]]
    normalized = [re.sub(r"[\s\-.]+", "_", c.lower()) for c in header]
    epoch_col = next((i for i, c in enumerate(normalized) if c in EPOCH_NAMES), None)
    if epoch_col is None:
        raise LogFormatError(f"{source}: CSV has no epoch column (columns: {', '.join(header[:12]) or 'none'})")
    columns: dict[str, int] = {}
    for i, h in enumerate(header):
        if i == epoch_col:
            continue
        f = classify_metric(h)
        if f is None:
            continue
        # An explicit "train_acc"/"val_acc" column wins over a bare "acc".
        if f not in columns or (names_split(h) and not names_split(header[columns[f]])):
            columns[f] = i
    if not columns:
        raise LogFormatError(
            f"{source}: CSV has no loss, accuracy or time columns (columns: {', '.join(header[:12])})"
        )
    runs_accs: list[list[PendingEpoch]] = [[]]
    skipped = 0
    for line_no, row in enumerate(rows[1:], start=2):
        cell = row[epoch_col].strip() if len(row) > epoch_col else ""
        epoch_value = parse_number(cell)
        if epoch_value is None or epoch_value != int(epoch_value) or epoch_value < 0:
            skipped += 1
            continue
        epoch = int(epoch_value)
        values: dict[str, tuple[float, bool]] = {}
        for f, i in columns.items():
            text_value = row[i].strip() if len(row) > i else ""
            pct = text_value.endswith("%")
            v = parse_number(text_value.rstrip("%").strip()) if text_value else None
            if v is not None:
                values[f] = (v, pct)
        if not values:  # a row of other figures (Lightning's per-step rows)
            continue
        accs = runs_accs[-1]
        if accs and epoch < accs[-1].epoch:
            runs_accs.append([])
            accs = runs_accs[-1]
        if not accs or epoch != accs[-1].epoch:
            accs.append(PendingEpoch(epoch, line_no))
        for f, (v, pct) in values.items():
            accs[-1].put(f, v, percent=pct)
    runs_accs = [a for a in runs_accs if a]
    if not runs_accs:
        raise LogFormatError(f"{source}: no rows with an epoch number and figures")
    stem = Path(source).stem or "log"
    names = [stem] if len(runs_accs) == 1 else [f"{stem} ({i})" for i in range(1, len(runs_accs) + 1)]
    runs = []
    for i, (accs, run_name) in enumerate(zip(runs_accs, names)):
        epochs, notes = finish_epochs(accs)
        n_skipped = skipped if i == 0 else 0
        if n_skipped:
            notes.append(f"{n_skipped} row(s) could not be read")
        src = f"{source}:{accs[0].line}" if len(runs_accs) > 1 else source
        runs.append(Run(run_name, src, epochs, "csv", n_skipped, tuple(notes)))
    return apply_name(runs, name)
