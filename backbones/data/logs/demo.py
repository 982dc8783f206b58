"""The demo training logs shipped with the library: one student's group-meeting notes from the seed notes.

``demo/seed_003_group_meeting.md`` is the seed note verbatim (VGG19, NIN, GoogLeNet and ResNet trained on
a small animal dataset, pasted under Chinese headings). :func:`demo_runs` reads it like any upload and
names each run for a user who has never seen the notes: ``"demo · VGG19"``, ``"demo · NIN"``, ...
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from backbones.data.logs.reader import read_log
from backbones.data.logs.runs import Run

#: Where the demo logs live inside the installed package.
DEMO_FOLDER = Path(__file__).resolve().with_name("demo")

#: What the notes call each run (the headings above it) -> what a user is shown.
_DEMO_NAMES = {
    "动物数据集": "demo · animal dataset, first model",
    "Vgg19 / 初始结构": "demo · VGG19",
    "NIN": "demo · NIN",
    "googLeNet / 使用trunc_normal截断正太分布初始化以及增加BN层后": "demo · GoogLeNet, truncated-normal init + BN",
    "googLeNet / 对训练数据进行缩放裁剪、更改亮度等预处理": "demo · GoogLeNet, data augmentation",
    "googLeNet / 改用预训练模型": "demo · GoogLeNet, pretrained",
    "ResNet": "demo · ResNet, run 1",
    "ResNet (2)": "demo · ResNet, run 2",
    "ResNet (3)": "demo · ResNet, run 3",
}


def demo_logs() -> list[tuple[str, bytes]]:
    """``[(file name, bytes)]`` of the shipped demo logs, in name order (what an upload would give)."""
    return [(p.name, p.read_bytes()) for p in sorted(DEMO_FOLDER.iterdir()) if p.is_file()]


def _demo_run(run: Run) -> Run:
    # A run split out of a document has source "file.md:LINE"; keep the line and the notes' own heading,
    # so a user can find the run in the shipped file, but drop the file name, which means nothing to them.
    line = run.source.rsplit(":", 1)[-1]
    name = _DEMO_NAMES.get(run.name, f"demo · {run.name}")
    return replace(run, name=name, source=f"demo notes, line {line} ({run.name})")


def demo_runs() -> list[Run]:
    """The demo logs' runs, named ``"demo · <model>"``, with ``source`` ``"demo notes, line N (<heading>)"``."""
    return [_demo_run(r) for name, data in demo_logs() for r in read_log(data, filename=name)]
