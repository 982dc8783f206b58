"""Which model outputs count as the right answer for each dataset class.

- An **integer label** (a CSV label such as ``2``, or a folder called ``2``) is an
  index into the model's classes: the checkpoint's own classes, or ImageNet's 1000
  for ImageNet models (``0`` = tench).
- A **class name** is matched against the model's class names, case-insensitively,
  with ``_`` and ``-`` read as spaces: first exactly, then (ImageNet only) against
  WordNet synonyms (``tabby_cat`` -> tabby) and synset ids (``n01440764``), then in
  the singular (``daisies`` -> daisy), then as whole words contained in exactly one
  class name (``uniform`` -> military uniform). ``class_map`` overrides all of this.
- Classes that match nothing are **excluded** from the accuracy and reported with
  their image counts (and, when a name is ambiguous, the candidates).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backbones.errors import DatasetError


@dataclass(frozen=True)
class ClassMatch:
    """How one dataset class maps onto model outputs.

    ``indices`` are the model outputs that count as correct (empty: unmatched);
    ``how`` is one of ``index``, ``exact``, ``synonym``, ``wnid``, ``singular``,
    ``contains``, ``map`` or ``unmatched``; ``note`` says why a class did not match.
    """

    label: str
    indices: tuple[int, ...]
    how: str
    model_labels: tuple[str, ...] = ()
    note: str = ""

    @property
    def matched(self) -> bool:
        return bool(self.indices)

    def to_dict(self) -> dict:
        return {"label": self.label, "how": self.how, "indices": list(self.indices),
                "model_labels": list(self.model_labels), "note": self.note}


def normalize_name(name: str) -> str:
    """``"Military_Uniform "`` -> ``"military uniform"``: lower case, ``_``/``-`` as spaces."""
    return " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())


def _singular(name: str) -> str:
    words = name.split()
    if not words:
        return name
    w = words[-1]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    return " ".join(words[:-1] + [w])


@functools.cache
def _imagenet_synonyms() -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """ImageNet-1k synset ids and WordNet lemmas per class (timm ships them), or empty when unavailable."""
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo("imagenet-1k")
        wnids = tuple(info.label_names())
        lemmas = tuple(tuple(normalize_name(x) for x in d.split(",")) for d in info.label_descriptions())
    except Exception:  # an optional refinement: exact names still work without it
        return (), ()
    if len(wnids) != 1000 or len(lemmas) != 1000:
        return (), ()
    return wnids, lemmas


def is_imagenet(categories: Sequence[str]) -> bool:
    from backbones.zoo.catalog import imagenet_categories

    return tuple(categories) == imagenet_categories()


def _match_one(label: str | int, categories: Sequence[str], normalized: list[str], imagenet: bool) -> ClassMatch:
    display = str(label)
    index = label if isinstance(label, int) else (int(label) if str(label).isdigit() else None)
    names: dict[str, list[int]] = {}
    for i, n in enumerate(normalized):
        names.setdefault(n, []).append(i)
    if isinstance(label, int):
        if 0 <= label < len(categories):
            return ClassMatch(categories[label], (label,), "index", (categories[label],))
        return ClassMatch(display, (), "unmatched", (), f"class index {label} is outside the model's {len(categories)} classes")
    key = normalize_name(label)

    def found(indices: Iterable[int], how: str) -> ClassMatch:
        idx = tuple(sorted(set(indices)))
        return ClassMatch(display, idx, how, tuple(categories[i] for i in idx))

    if key in names:
        return found(names[key], "exact")
    wnids, lemmas = _imagenet_synonyms() if imagenet else ((), ())
    if lemmas:
        hits = [i for i, ls in enumerate(lemmas) if key in ls]
        if hits:
            return found(hits, "synonym")
        if re.fullmatch(r"n\d{8}", key) and key in wnids:
            return found([wnids.index(key)], "wnid")
    single = _singular(key)
    if single != key:
        if single in names:
            return found(names[single], "singular")
        if lemmas:
            hits = [i for i, ls in enumerate(lemmas) if single in ls]
            if hits:
                return found(hits, "singular")
    if index is not None:  # a folder called "2": a class index
        if 0 <= index < len(categories):
            return ClassMatch(categories[index], (index,), "index", (categories[index],))
        return ClassMatch(display, (), "unmatched", (), f"class index {index} is outside the model's {len(categories)} classes")
    # Whole words contained in exactly one class name ("uniform" -> "military uniform").
    candidates = set()
    for word in {key, single}:
        if len(word) < 3:
            continue
        pattern = re.compile(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])")
        candidates |= {i for i, n in enumerate(normalized) if pattern.search(n)}
        if lemmas:
            candidates |= {i for i, ls in enumerate(lemmas) if any(pattern.search(x) for x in ls)}
    if len(candidates) == 1:
        return found(candidates, "contains")
    if candidates:
        shown = ", ".join(sorted(categories[i] for i in candidates)[:6])
        more = f" and {len(candidates) - 6} more" if len(candidates) > 6 else ""
        return ClassMatch(display, (), "unmatched", (),
                          f"ambiguous: {len(candidates)} model classes contain {key!r} ({shown}{more}); use a class map")
    return ClassMatch(display, (), "unmatched", (), "no model class with this name")


def match_classes(
    labels: Sequence[str | int],
    categories: Sequence[str],
    *,
    class_map: Mapping[str, str | int | Sequence[str | int]] | None = None,
) -> dict[str | int, ClassMatch]:
    """Map each dataset label to the model outputs that count as correct for it.

    ``categories`` are the model's class names (``LoadedModel.categories``);
    ImageNet's are recognised and get WordNet synonyms and synset ids. A
    ``class_map`` entry (dataset label -> model class name(s) or index(es))
    takes precedence over the automatic rules described in the module docstring.
    """
    categories = tuple(categories)
    normalized = [normalize_name(c) for c in categories]
    imagenet = is_imagenet(categories)
    mapped = {str(k): v for k, v in (class_map or {}).items()}
    out: dict[str | int, ClassMatch] = {}
    for label in labels:
        target = mapped.get(str(label))
        if target is None:
            out[label] = _match_one(label, categories, normalized, imagenet)
            continue
        targets = [target] if isinstance(target, (str, int)) else list(target)
        indices: list[int] = []
        for t in targets:
            m = _match_one(t, categories, normalized, imagenet)
            if not m.matched:
                raise DatasetError(f"class map: {label!s} -> {t!s}: {m.note}")
            indices += m.indices
        idx = tuple(sorted(set(indices)))
        display = categories[label] if isinstance(label, int) and 0 <= label < len(categories) else str(label)
        out[label] = ClassMatch(display, idx, "map", tuple(categories[i] for i in idx))
    return out
