"""Training logs read into runs to compare: the seed notes' text format, CSV and TensorBoard.

The seed notes print one line per epoch (d2l style)::

    epoch 83, loss 0.1116, train accuracy 0.970, test accuracy 0.822, use time 62.638

and paste several runs into one Markdown document under headings ("Vgg19",
"NIN", "googLeNet"). :func:`read_log` accepts

- **text** logs: any line with ``epoch N`` and ``name value`` pairs (commas,
  tabs, ``|``, `` - `` or spaces between them; ``name: value`` and
  ``name=value`` too; Keras' ``Epoch 3/10`` header followed by a metrics line).
  Other lines are ignored. A file splits into several runs where the epoch
  number restarts or goes back, and, in a Markdown document (one with code
  fences or ``#`` headings), where prose separates two blocks of epoch lines.
  Runs are named after the headings above them ("Vgg19 / 初始结构"), else after
  the file (a plain log holding one run is always named after its file).
- **CSV** with an ``epoch`` column and columns such as ``loss``/``train_loss``,
  ``acc``/``train_acc``/``accuracy``, ``val_acc``/``test_acc``/``val_accuracy``,
  ``time`` (Keras' CSVLogger, Lightning's metrics.csv, timm's summary.csv).
- **TensorBoard** event files or log directories: scalar tags such as
  ``loss/train``, ``accuracy/test``, ``train_loss``, ``val_acc``, ``epoch_loss``
  (Keras' ``train/`` and ``validation/`` sub-folders are one run). The step is
  the epoch unless an ``epoch`` scalar says otherwise.

Metric names are read by their words: ``loss`` is a loss, ``acc``/``accuracy``/
``top1`` an accuracy, ``time``/``duration``/``elapsed`` the epoch time in seconds;
``test``/``val``/``valid``/``eval`` make it a test metric, otherwise it is a
training one. Accuracies are fractions: values written with ``%``, or a run whose
accuracies exceed 1, are divided by 100 (the run's ``notes`` say so).

Malformed input raises :class:`LogFormatError` (one line); partly valid logs
keep what parses and count the rest in ``Run.skipped_lines``. What one log may cost is capped:
:data:`MAX_RUNS_PER_LOG` runs (the rest dropped, with a notice), :data:`MAX_EVENT_BYTES` of
TensorBoard events and :data:`MAX_SCALARS` scalar values (refused past either); run names lose
bidi control characters (``"\u202egol.exe"`` would show as "exe.log").

Modules: ``runs`` (the :class:`Run` and :class:`Epoch` types every parser returns),
``metrics`` (the metric-name classifier), one parser per format (``text_log``,
``csv_log``, ``tensorboard_log``), ``reader`` (:func:`read_log` / :func:`read_logs`,
which pick the parser) and ``demo`` (:func:`demo_runs`: the seed notes' group-meeting logs,
shipped as package data in ``demo/``, with names a user understands: ``"demo · VGG19"``) and ``local``
(:func:`local_runs`: this machine's fine-tunes, from the runs folder).
"""

from __future__ import annotations

from backbones.data.logs.csv_log import parse_csv_log
from backbones.data.logs.demo import demo_logs, demo_runs
from backbones.data.logs.local import local_run_logs, local_runs
from backbones.data.logs.metrics import classify_metric
from backbones.data.logs.reader import MAX_LOG_BYTES, parse_log_text, read_log, read_logs
from backbones.data.logs.runs import FIELDS, MAX_RUNS_PER_LOG, Best, Epoch, Run, clean_label, summarize_runs, usual_step
from backbones.data.logs.tensorboard_log import MAX_EVENT_BYTES, MAX_SCALARS, read_tensorboard
from backbones.data.logs.text_log import MAX_LINE_CHARS, parse_text_log

__all__ = [
    "FIELDS",
    "MAX_EVENT_BYTES",
    "MAX_LINE_CHARS",
    "MAX_LOG_BYTES",
    "MAX_RUNS_PER_LOG",
    "MAX_SCALARS",
    "Best",
    "Epoch",
    "Run",
    "classify_metric",
    "clean_label",
    "demo_logs",
    "demo_runs",
    "local_run_logs",
    "local_runs",
    "parse_csv_log",
    "parse_log_text",
    "parse_text_log",
    "read_log",
    "read_logs",
    "read_tensorboard",
    "summarize_runs",
    "usual_step",
]
