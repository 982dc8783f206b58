"""Text and Markdown logs: lines with ``epoch N`` and ``name value`` pairs (see the package docstring)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backbones.data.logs.metrics import classify_metric, parse_number
from backbones.data.logs.runs import PendingEpoch, Run, apply_name, deduplicate_names, finish_epochs
from backbones.errors import LogFormatError

_EPOCH_RE = re.compile(r"(?<![A-Za-z0-9_])epoch(?:s)?(?![A-Za-z])\s*[:=#]?\s*[\[(]?\s*(\d+)(?:\s*/\s*(\d+))?\s*[\])]?", re.I)
_KEY_WORD = r"[A-Za-z][A-Za-z0-9_@]*(?:[./-][A-Za-z0-9_@]+)*"
_PAIR_RE = re.compile(
    rf"(?P<key>{_KEY_WORD}(?:[ ]{_KEY_WORD}){{0,3}}?)(?:\s*[:=]\s*|\s+)"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)\s*(?P<unit>%|ms|secs?|s)?(?![\w.])",
    re.I,
)
_EPOCH_ONLY_RE = re.compile(r"[\W_]*epoch\s*[:#]?\s*[\[(]?\s*\d+\s*[\])]?[\W_]*", re.I)
_LONG_TOKEN_RE = re.compile(r"\S{41,}")
#: Characters of a line searched for metrics (progress bars make long lines; junk makes longer ones).
MAX_LINE_CHARS = 4000
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_SEGMENT_RE = re.compile(r"[,;|\t]|\s-\s|\s{3,}")


def _metrics_in(text: str) -> tuple[dict[str, tuple[float, bool]], int]:
    """``{field: (value, percent)}`` from ``name value`` pairs, and how many known names had no usable value."""
    found: dict[str, tuple[float, bool]] = {}
    bad = 0
    # No metric name is 40 characters long; dropping longer tokens keeps the pair search linear.
    text = _LONG_TOKEN_RE.sub(" ~ ", text[:MAX_LINE_CHARS])
    for segment in _SEGMENT_RE.split(text):
        if not segment.strip():
            continue
        matched = False
        for m in _PAIR_RE.finditer(segment):
            name = classify_metric(m.group("key"))
            if name is None:
                continue
            matched = True
            value = parse_number(m.group("num"))
            if value is None:
                bad += 1
                continue
            unit = (m.group("unit") or "").lower()
            if name == "time_s" and unit == "ms":
                value /= 1000.0
            found.setdefault(name, (value, unit == "%"))
        if not matched and classify_metric(segment.strip()) is not None:
            bad += 1  # "loss n/a", "test accuracy 0.9x1": a known name without a readable value
    return found, bad


def _is_heading_candidate(line: str) -> bool:
    if not line or len(line) > 60:
        return False
    if line[0] in "-*+>`|![$\\<{" or re.match(r"^\d+[.)]\s", line):
        return False
    if line.endswith(("?", "？", ":", "：", "`")):
        return False
    return bool(re.search(r"[^\W\d_]", line))  # some letter, in any script


def _is_title(line: str) -> bool:
    """A short Latin heading such as "Vgg19", "NIN", "ResNet", "GoogLeNet + BN"."""
    return bool(re.fullmatch(r"[A-Za-z][\w+.\-]*(?: [\w+.\-]+){0,2}", line)) and len(line) <= 30


@dataclass
class _Block:
    accs: list[PendingEpoch]
    title: str | None
    context: list[str]
    first_line: int
    skipped: int = 0


def parse_text_log(text: str, *, source: str = "log", name: str | None = None) -> list[Run]:
    """Runs from a plain-text or Markdown training log (see :mod:`backbones.data.logs`).

    Raises :class:`LogFormatError` when no line gives an epoch with metrics.
    """
    lines = text.splitlines()
    document = any(_FENCE_RE.match(ln) or re.match(r"^#{1,6}\s", ln) for ln in lines)
    blocks: list[_Block] = []
    current: _Block | None = None
    in_fence = False
    title: str | None = None
    context: list[str] = []  # heading candidates since the last epoch line
    prose_since_epoch = False
    pending: tuple[int, int] | None = None  # (epoch, line) of a Keras "Epoch 3/10" header
    skipped = 0

    def start_block(line_no: int) -> _Block:
        block = _Block([], title, list(context), line_no)
        blocks.append(block)
        return block

    def add_epoch(epoch: int, metrics: dict[str, tuple[float, bool]], line_no: int) -> None:
        nonlocal current, prose_since_epoch
        last = current.accs[-1] if current and current.accs else None
        new_run = current is None or (document and prose_since_epoch) or (last is not None and epoch < last.epoch)
        if last is not None and not new_run and epoch == last.epoch:
            # The same epoch again: its evaluation line, or per-iteration lines (the last one wins).
            for k, (v, pct) in metrics.items():
                last.put(k, v, percent=pct)
            prose_since_epoch = False
            return
        if new_run:
            current = start_block(line_no)
        acc = PendingEpoch(epoch, line_no)
        for k, (v, pct) in metrics.items():
            acc.put(k, v, percent=pct)
        current.accs.append(acc)
        prose_since_epoch = False

    for line_no, raw in enumerate(lines, start=1):
        if _FENCE_RE.match(raw):
            in_fence = not in_fence
            continue
        line = raw.strip()
        if not line:
            continue
        m = _EPOCH_RE.search(line)
        if m:
            epoch = int(m.group(1))
            rest = line[: m.start()] + " , " + line[m.end():]
            metrics, bad = _metrics_in(rest)
            if metrics:
                pending = None
                add_epoch(epoch, metrics, line_no)
                context.clear()
                if bad and current is not None:
                    current.skipped += 1
            elif m.group(2) or _EPOCH_ONLY_RE.fullmatch(line):
                if pending is not None:
                    skipped += 1
                pending = (epoch, line_no)  # "Epoch 3/10": the figures follow on the next line
            else:
                skipped += 1
            continue
        if pending is not None:
            metrics, _ = _metrics_in(line)
            if metrics:
                add_epoch(pending[0], metrics, pending[1])
                context.clear()
                pending = None
                continue
        if in_fence:
            continue
        heading = line.lstrip("#").strip() if line.startswith("#") else line
        if line.startswith("#") or _is_heading_candidate(heading):
            if _is_title(heading) or line.startswith("#"):
                title = heading
            context.append(heading)
        if current is not None and current.accs:
            prose_since_epoch = True
    if pending is not None:
        skipped += 1
    blocks = [b for b in blocks if b.accs]
    if not blocks:
        raise LogFormatError(
            f"{source}: no epoch lines found (expected lines like 'epoch 3, loss 0.41, train accuracy 0.87, "
            "test accuracy 0.82, use time 62.6', a CSV with an epoch column, or a TensorBoard event file)"
        )
    blocks[0].skipped += skipped
    stem = Path(source).stem or "log"
    # A plain log's stray lines ("training on cpu") are no names; a document's headings are.
    names = _name_blocks(blocks, stem) if document or len(blocks) > 1 else [stem]
    runs = []
    for block, run_name in zip(blocks, names):
        epochs, notes = finish_epochs(block.accs)
        if block.skipped:
            notes.append(f"{block.skipped} line(s) could not be read")
        src = f"{source}:{block.first_line}" if len(blocks) > 1 else source
        runs.append(Run(run_name, src, epochs, "text", block.skipped, tuple(notes)))
    return apply_name(runs, name)


def _name_blocks(blocks: Sequence[_Block], stem: str) -> list[str]:
    names: list[str] = []
    for i, block in enumerate(blocks):
        last = block.context[-1] if block.context else None
        if block.title and last and last != block.title:
            base = f"{block.title} / {last}"
        elif block.title or last:
            base = block.title or last
        elif i > 0:
            base = names[-1]
        else:
            base = stem
        names.append(base)
    return deduplicate_names(names)
