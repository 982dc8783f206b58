"""Backbone Lens: `streamlit run dashboard/app.py`. This file only sets up the page and routes.

The packages are importable because `pip install -r requirements.txt` installs this project (editable).
"""

from pathlib import Path

import streamlit as st

from dashboard.i18n import t

VIEWS = Path(__file__).resolve().parent / "views"


def pages() -> list:
    """Every page, each served at its own URL path (a bookmarked /compare opens Compare).

    Streamlit serves the default page only at the root URL, so Compare is there twice: hidden at ``/`` and
    listed at ``/compare``.
    """
    compare = VIEWS / "compare.py"
    return [
        st.Page(compare, title=t("page.compare"), icon=":material/leaderboard:", url_path="home", default=True, visibility="hidden"),
        st.Page(compare, title=t("page.compare"), icon=":material/leaderboard:", url_path="compare"),
        st.Page(VIEWS / "architecture.py", title=t("page.architecture"), icon=":material/account_tree:", url_path="architecture"),
        st.Page(VIEWS / "predict.py", title=t("page.predict"), icon=":material/label:", url_path="predict"),
        st.Page(VIEWS / "explain.py", title=t("page.explain"), icon=":material/local_fire_department:", url_path="explain"),
        st.Page(VIEWS / "evaluate.py", title=t("page.evaluate"), icon=":material/target:", url_path="evaluate"),
        st.Page(VIEWS / "transfer.py", title=t("page.transfer"), icon=":material/swap_horiz:", url_path="transfer"),
        st.Page(VIEWS / "training.py", title=t("page.training"), icon=":material/show_chart:", url_path="training"),
        st.Page(VIEWS / "models.py", title=t("page.models"), icon=":material/inventory_2:", url_path="models"),
    ]


def run() -> None:
    st.set_page_config(
        page_title="Backbone Lens", page_icon=":material/biotech:", layout="wide", initial_sidebar_state="expanded"
    )
    from dashboard.serving import checked_settings

    settings = checked_settings()
    if settings.refusal:  # listening on every interface by accident: nothing is served
        st.error(settings.refusal, icon=":material/lock:")
        st.stop()
    from dashboard.components import render_device_picker, render_sidebar

    page = st.navigation(pages())
    device_slot = render_sidebar()
    try:
        page.run()
    finally:
        # Listing devices imports torch (seconds on a fresh server): the page paints first, even one that stops.
        render_device_picker(device_slot)


if __name__ == "__main__":
    run()
