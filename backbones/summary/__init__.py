"""Layer-by-layer summaries of a model: shapes, parameters, MACs, receptive fields and worked derivations.

The seed notes print torchinfo tables and then work out by hand, per layer, the
output size ``N = (W - F + 2P) / S + 1``, the parameters (weights + bias), the
"neurons" (elements of the output feature map) and the receptive field
``F(i) = (F(i+1) - 1) x stride + ksize``. :func:`summarize_model` does all of
that at once and returns an immutable :class:`ModelSummary` the dashboard can
expand, search and step through::

    s = summarize_model("alexnet")                 # cached per (model, input size)
    s.find("features.0").derivation
    # 'Conv2d 3->64, k11 s4 p2: 64*(3*11*11)+64 = 23,296 params; out 55 = (224-11+2*2)/4+1;
    #  55x55x64 = 193,600 neurons'
    s.find("features.2").receptive_field, s.find("features.2").jump   # (19, 8)
    s.to_dict(depth=2)                             # the ``summary --json`` document
    print(format_summary(s, depth=2))              # the ``summary`` text table

Modules, one concern each:

* :mod:`.rows` — the result types :class:`LayerRow` and :class:`ModelSummary`;
* :mod:`.summarize` — :func:`summarize_model`: building (on the meta device when
  possible), error translation, caching;
* :mod:`.tree` — torchinfo's layer tree turned into rows, in one traced forward pass that also counts
  each row's MACs with ``torch.utils.flop_counter``;
* :mod:`.tracer` — receptive field and jump traced along the data flow;
* :mod:`.derivations` — the worked derivation strings;
* :mod:`.geometry` — kernel / stride / padding / dilation of a window as pairs;
* :mod:`.text` — :func:`format_summary`, the text table.

Transformers (ViT, Swin, MaxViT) report null receptive fields: attention mixes
every position, so a receptive field does not apply.
"""

from backbones.callbacks import ProgressFn, StopFn
from backbones.summary.rows import LayerRow, ModelSummary
from backbones.summary.summarize import MAX_INPUT_SIDE, clear_summary_cache, normalize_input_size, summarize_model
from backbones.summary.text import format_summary
from backbones.summary.tree import APPROX_NOTE, TRANSFORMER_NOTE, WHOLE_NOTE

__all__ = [
    "APPROX_NOTE",
    "MAX_INPUT_SIDE",
    "TRANSFORMER_NOTE",
    "WHOLE_NOTE",
    "LayerRow",
    "ModelSummary",
    "ProgressFn",
    "StopFn",
    "clear_summary_cache",
    "format_summary",
    "normalize_input_size",
    "summarize_model",
]
