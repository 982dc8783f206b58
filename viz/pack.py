"""A slide pack: one zip with a page's figures as projector-size PNGs, its numbers as CSV, the settings and the commands.

:func:`build_pack` is what every page (and ``python -m viz pack``) calls: it
takes figures (matplotlib figures, PIL images or PNG bytes), tables (pandas
DataFrames or rows of dicts), the settings that produced them and the CLI lines
that reproduce them, and returns the zip's bytes::

    figures/<name>.png   1920 px wide (PROJECTOR_WIDTH)
    tables/<name>.csv
    settings.json        the given settings plus the library versions
    commands.sh          the CLI lines, runnable from the project root

Commands are argument lists, never text: :func:`backbones.shell.format_command` writes each one with every
value quoted by the shell's own rules (``shlex.quote``), so a checkpoint or photo named
``$(rm -rf ~)`` stays a name. A value that no quoting makes safe to show in a script (control
characters, newlines, NUL, bidi and other invisible format characters) is written as a neutral
placeholder (``PLACEHOLDER_1``) whose original text is kept, as data, under ``placeholders`` in
``settings.json``. :func:`predict_commands`, :func:`compare_commands` and :func:`explain_commands`
are the lines of the dashboard's Predict, Compare and Explain packs.

Figures of images are drawn with matplotlib's object API (no pyplot: no global
state, safe in a server thread); :func:`render_explanations_figure` lays out a
row of heatmaps with fonts readable from the back of a room.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import re
import zipfile
from collections.abc import Mapping, Sequence
from importlib import metadata

import numpy as np
from PIL import Image

from backbones.errors import BackboneError
from backbones.jsonsafe import json_safe
from backbones.shell import format_command, format_comment
from viz.inputs import ensure_rgb
from viz.methods.registry import METHODS
from viz.overlay import overlay_image

#: Width of every PNG in a pack, in pixels (a 1080p projector).
PROJECTOR_WIDTH = 1920
#: Font size in points at 100 dpi (about 24 px): readable on a projected slide.
FONT_SIZE = 18

_PACKAGES = ("torch", "torchvision", "timm", "captum", "numpy", "pillow", "matplotlib")
# Zip entries carry this date so that the same inputs give the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def collect_versions() -> dict[str, str]:
    """Python's and the installed libraries' versions, for ``settings.json``."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def render_png(figure) -> bytes:
    """PNG bytes ``PROJECTOR_WIDTH`` pixels wide from a matplotlib figure, a PIL image or PNG/JPEG bytes.

    A matplotlib figure is drawn at the dpi that makes it that wide (its fonts
    keep their size relative to the figure); images are resampled (Lanczos).
    """
    buf = io.BytesIO()
    if hasattr(figure, "savefig"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(figure)  # a figure made without pyplot needs a canvas to draw on
        width, height = figure.get_size_inches()
        figure.set_size_inches(PROJECTOR_WIDTH / 100, height * PROJECTOR_WIDTH / 100 / width)
        figure.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
    if isinstance(figure, (bytes, bytearray)):
        try:
            figure = Image.open(io.BytesIO(figure))
            figure.load()
        except Exception as exc:  # Pillow raises many types for a damaged file
            raise BackboneError(f"a pack figure is not a readable image: {exc}") from exc
    if not isinstance(figure, Image.Image):
        raise BackboneError(f"a pack figure must be a matplotlib figure, a PIL image or PNG bytes, got {type(figure).__name__}")
    img = figure.convert("RGB")
    if img.width != PROJECTOR_WIDTH:
        img = img.resize((PROJECTOR_WIDTH, max(1, round(img.height * PROJECTOR_WIDTH / img.width))), Image.Resampling.LANCZOS)
    img.save(buf, format="PNG")
    return buf.getvalue()


def table_csv(table) -> str:
    """CSV text of a pandas DataFrame or of rows (dicts sharing keys, in the first row's key order)."""
    if hasattr(table, "to_csv"):
        return table.to_csv(index=False)
    rows = list(table)
    out = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(json_safe(dict(row)) for row in rows)
    return out.getvalue()


def safe_name(name: str) -> str:
    """``name`` as a file name inside the pack (``timm:rexnet_100`` -> ``timm_rexnet_100``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    if not clean:
        raise BackboneError(f"cannot name a pack file after {name!r}")
    return clean


def format_script(commands: Sequence[Sequence[object] | str], placeholders: dict[str, str]) -> str:
    """``commands.sh``: a ``set -e`` script of the argument lists (``str`` items are comments)."""
    lines = []
    for item in commands:
        lines.append(format_comment(item.lstrip("# ")) if isinstance(item, str) else format_command(item, placeholders))
    head = ["#!/bin/sh", "# Reproduces the figures of this slide pack; run from the Backbone Lens project root."]
    if placeholders:
        head.append("# PLACEHOLDER_<n>: a name that cannot be written safely in a script; its text is under "
                    '"placeholders" in settings.json.')
    return "\n".join([*head, "set -e", *lines]) + "\n"


def model_arguments(name: str, checkpoint_arch: str | None = None) -> list[str]:
    """``--model NAME``, or for a checkpoint (labelled ``name``) ``--model ARCH --checkpoint NAME``."""
    return ["--model", checkpoint_arch, "--checkpoint", name] if checkpoint_arch else ["--model", name]


def predict_commands(images: Sequence[str], models: Sequence[tuple[str, str | None]], *, topk: int) -> list:
    """The Predict pack's lines: one ``predict`` per model over the photos (``models``: ``(name, checkpoint arch)``)."""
    lines: list = []
    if any(arch for _, arch in models):
        lines.append("--checkpoint names a checkpoint as labelled on the Models page: give the path of its file")
    for name, arch in models:
        lines.append(["python", "-m", "backbones", "predict", *images, *model_arguments(name, arch),
                      "--topk", topk, "--json"])
    return lines


def compare_commands(models: Sequence[tuple[str, str | None]], *, device: str, batch_size: int,
                     threads: int | None) -> list:
    """The Compare pack's lines: ``bench`` (catalog models together, each checkpoint on its own line), then ``compare``."""
    common = ["--device", device, "--batch-size", batch_size, *(["--threads", threads] if threads else [])]
    catalog = [name for name, arch in models if not arch]
    lines: list = [["python", "-m", "backbones", "bench", *catalog, *common, "--json"]] if catalog else []
    for name, arch in models:
        if arch:
            lines.append(["python", "-m", "backbones", "bench", arch, "--checkpoint", name, *common, "--json"])
    lines.append(["python", "-m", "backbones", "compare", *[name for name, _ in models], "--device", device,
                  "--batch-size", batch_size, "--json"])
    return lines


def transfer_commands(dataset: str, models: Sequence[str], *, probes: Sequence[str]) -> list:
    """The Transfer pack's lines: the ranking the page showed (``dataset`` as the CLI names it, or a file the
    reader of the pack replaces: an uploaded zip's path is the visitor's, not the server's)."""
    lines: list = []
    if dataset != "sample-transfer":
        lines.append(f"replace {dataset} with the path of the folder, zip or CSV it came from")
    lines.append(["python", "-m", "backbones", "transfer", dataset, "--models", *models, "--probes", ",".join(probes),
                  "--json"])
    return lines


def explain_commands(image: str, model: tuple[str, str | None], *, method: str, layer: str | None,
                     target: int) -> list:
    """The Explain pack's lines: the overlay, its faithfulness scores and the top-5 of one model."""
    name, arch = model
    args = model_arguments(name, arch)
    layer_args = ["--layer", layer] if layer else []
    return [
        ["python", "-m", "viz", "cam", image, *args, "--method", method, *layer_args, "--target", target,
         "--out", "overlay.png", "--json"],
        ["python", "-m", "viz", "faithfulness", image, *args, "--method", method, *layer_args, "--target", target,
         "--json"],
        ["python", "-m", "backbones", "predict", image, *args, "--topk", 5, "--json"],
    ]


def _add(zf: zipfile.ZipFile, name: str, data: bytes | str, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    zf.writestr(info, data)


def build_pack(
    figures: Mapping[str, object],
    tables: Mapping[str, object],
    settings: Mapping[str, object],
    commands: Sequence[str],
) -> bytes:
    """The slide pack's zip bytes (layout in the module docstring).

    ``figures`` maps a name to a matplotlib figure, PIL image or PNG bytes;
    ``tables`` a name to a DataFrame or rows of dicts; ``settings`` (models,
    weights, layer, target, method, device, ...) gets ``versions`` unless it has
    them; ``commands`` are the argument lists that reproduce the figures (a ``str``
    is a comment), written by :func:`format_script`; values that cannot be written in a
    script are kept under ``placeholders`` in ``settings.json``.
    """
    settings = dict(settings)
    settings.setdefault("versions", collect_versions())
    placeholders: dict[str, str] = {}
    script = format_script(commands, placeholders)
    if placeholders:
        settings["placeholders"] = placeholders
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, fig in figures.items():
            _add(zf, f"figures/{safe_name(name)}.png", render_png(fig))
        for name, table in tables.items():
            _add(zf, f"tables/{safe_name(name)}.csv", table_csv(table))
        _add(zf, "settings.json", json.dumps(json_safe(settings), indent=2, ensure_ascii=False) + "\n")
        _add(zf, "commands.sh", script, executable=True)
    return buf.getvalue()


def render_explanations_figure(image, explanations: Sequence, *, title: str | None = None, captions: Sequence[str] | None = None):
    """A matplotlib figure: the photo, then each explanation's heatmap on it, in one row (``PROJECTOR_WIDTH`` wide).

    ``captions`` (one per explanation, e.g. faithfulness scores) go under the panels.
    """
    from matplotlib.figure import Figure

    img = ensure_rgb(image)
    panels = [(img, "input")] + [(overlay_image(img, e.heatmap), _panel_title(e)) for e in explanations]
    n = len(panels)
    aspect = img.height / img.width
    width = PROJECTOR_WIDTH / 100
    fig = Figure(figsize=(width, width / n * aspect + 1.6 + (0.6 if title else 0)), dpi=100)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, (ax, (panel, label)) in enumerate(zip(axes, panels)):
        ax.imshow(np.asarray(panel))
        ax.set_title(label, fontsize=FONT_SIZE * (0.8 if n > 3 else 1.0))
        ax.set_xticks([])
        ax.set_yticks([])
        if captions is not None and i > 0:
            ax.set_xlabel(captions[i - 1], fontsize=FONT_SIZE * 0.8)
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE * 1.2)
    fig.tight_layout()
    return fig


def _panel_title(exp) -> str:
    where = f" @ {exp.layer}" if exp.layer else ""
    return f"{METHODS[exp.method].title}{where}\n{exp.target.label} {exp.target.prob:.0%}"


def render_topk_figure(image, rows_by_model: Mapping[str, Sequence[Mapping]], *, title: str | None = None):
    """A matplotlib figure: the photo, then one horizontal top-k bar chart per model (``PROJECTOR_WIDTH`` wide)."""
    from matplotlib.figure import Figure

    img = ensure_rgb(image)
    n = len(rows_by_model) + 1
    width = PROJECTOR_WIDTH / 100
    fig = Figure(figsize=(width, max(3.5, width / n * 1.1) + (0.6 if title else 0)), dpi=100)
    axes = fig.subplots(1, n, squeeze=False)[0]
    axes[0].imshow(np.asarray(img))
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, (model, rows) in zip(axes[1:], rows_by_model.items()):
        labels = [r["label"] for r in rows][::-1]
        probs = [100 * r["prob"] for r in rows][::-1]
        ax.barh(range(len(rows)), probs, color="#2563eb")
        ax.set_yticks(range(len(rows)), labels, fontsize=FONT_SIZE * 0.7)
        ax.set_xlim(0, 100)
        ax.set_xlabel("probability (%)", fontsize=FONT_SIZE * 0.7)
        ax.set_title(model, fontsize=FONT_SIZE * 0.8)
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE * 1.2)
    fig.tight_layout()
    return fig
