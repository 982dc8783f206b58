"""Both languages have every string the dashboard uses, with the same placeholders."""

from __future__ import annotations

import ast
from pathlib import Path

from dashboard.i18n import LANGUAGES, catalogue, language_for, placeholders, translate

ROOT = Path(__file__).resolve().parents[2]


def keys_used() -> dict[str, str]:
    """Every literal key passed to ``t(...)`` in dashboard/, with where it is used."""
    used = {}
    for path in (ROOT / "dashboard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "t"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                used[node.args[0].value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return used


def test_every_language_has_every_key():
    keys = {lang: set(catalogue(lang)) for lang in LANGUAGES}
    english = keys["en"]
    for lang, have in keys.items():
        assert have == english, f"{lang}: missing {sorted(english - have)[:10]}, extra {sorted(have - english)[:10]}"


def test_every_key_the_pages_use_exists():
    missing = {k: where for k, where in keys_used().items() if k not in catalogue("en")}
    assert not missing, missing


def test_placeholders_agree():
    en = catalogue("en")
    for lang in LANGUAGES:
        for key, text in catalogue(lang).items():
            assert placeholders(text) == placeholders(en[key]), (lang, key)


def test_chinese_is_chinese():
    zh = catalogue("zh")
    cjk = [k for k, v in zh.items() if any("\u4e00" <= c <= "\u9fff" for c in v)]
    assert len(cjk) >= 0.8 * len(zh), "most Chinese strings contain Chinese characters"


def test_language_choice():
    assert language_for("zh", "en-US") == "zh"
    assert language_for(None, "zh-CN") == "zh"
    assert language_for("xx", "fr-FR") == "en"
    key = next(iter(catalogue("en")))
    assert translate("zh", key) == catalogue("zh")[key]
