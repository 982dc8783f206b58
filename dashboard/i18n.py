"""The dashboard's two languages: every visible string comes from one catalogue per language.

``t("compare.title")`` returns the string for the session's language (``?lang=zh`` in a link, the sidebar
toggle, else the browser's language), formatted with keyword values. Catalogues are plain mappings in
``dashboard/locales/<lang>.py``; a test fails when a key is missing in either language or when the two
disagree on a string's ``{placeholders}``. Numbers, model names, class names and file names are data,
not strings to translate.
"""

from __future__ import annotations

import importlib
import string

LANGUAGES = {"en": "English", "zh": "中文"}
DEFAULT = "en"


def catalogue(lang: str) -> dict[str, str]:
    return importlib.import_module(f"dashboard.locales.{lang}").STRINGS


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def language_for(query: str | None, browser_locale: str | None) -> str:
    """The language a new session starts in: the link's ``?lang=``, else the browser's, else English."""
    for candidate in (query, (browser_locale or "").split("-")[0].split("_")[0]):
        if candidate and candidate.lower() in LANGUAGES:
            return candidate.lower()
    return DEFAULT


def translate(lang: str, key: str, **values) -> str:
    strings = catalogue(lang)
    text = strings.get(key)
    if text is None:
        text = catalogue(DEFAULT)[key]  # a KeyError here is a bug the catalogue test catches
    return text.format(**values) if values else text


def language() -> str:
    """This session's language: chosen in the sidebar, else ``?lang=`` in the link, else the browser's."""
    import streamlit as st

    from dashboard import state

    lang = state.stored_language()
    if lang is None:
        lang = language_for(st.query_params.get("lang"), st.context.locale)
        state.set_language(lang, share=False)
    return lang


def t(key: str, **values) -> str:
    """``key``'s text in this session's language."""
    return translate(language(), key, **values)
