"""Models: the catalog with weights status, importing weights files, and your own checkpoints."""

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from backbones.errors import BackboneError
from backbones.paths import allowed_suffix
from backbones.redaction import display_path
from backbones.zoo.catalog import list_models
from dashboard import actions, caches, components, state
from dashboard.i18n import t
from dashboard.serving import weights_import_allowed

st.title(t("models.title"))
st.caption(t("models.caption"))

tab_catalog, tab_checkpoint, tab_import = st.tabs([t("models.tab.catalog"), t("models.tab.checkpoint"), t("models.tab.import")])
# The source filter's values are compared below; only "all" and "curated" are words, the rest are source names.
SOURCE_LABELS = {"all": t("models.source.all"), "curated": t("models.source.curated")}

with tab_catalog:
    c1, c2 = st.columns([2, 3])
    source = c1.radio(t("models.source"), ["all", "curated", "torchvision", "timm", "bundled"], horizontal=True,
                      key="models_source", format_func=lambda v: SOURCE_LABELS.get(v, v))
    query = c2.text_input(t("models.search"), key="models_query", placeholder=t("models.search_placeholder"))
    rows = caches.catalog_rows()
    table = pd.DataFrame(
        [
            {
                "name": r["name"],
                "family": r["family"],
                "source": r["source"],
                "curated": r["default"],
                "params (M)": r["params"] / 1e6 if r["params"] else None,
                "MACs (G)": r["macs"] / 1e9 if r["macs"] else None,
                "published MACs (G)": r["published_macs"] / 1e9 if r["published_macs"] else None,
                "top-1 (%)": r["published_top1"],
                "top-5 (%)": r["published_top5"],
                "input": "×".join(map(str, r["input_size"][1:])),
                "weights": r["weights"][0]["status"] if r["weights"] else "none",
                "size (MB)": (r["weights"][0].get("size_bytes") or 0) / 1e6 if r["weights"] else None,
                "all weights": ", ".join(f"{w['name']}: {w['status']}" for w in r["weights"]),
                "published figures from": r["published_source"],
            }
            for r in rows
        ]
    )
    if source == "curated":
        table = table[table["curated"]]
    elif source != "all":
        table = table[table["source"] == source]
    if query:
        q = query.lower()
        table = table[table["name"].str.lower().str.contains(q, regex=False) | table["family"].str.lower().str.contains(q, regex=False)]
    headers = {
        "name": t("models.col.name"), "family": t("models.col.family"), "source": t("models.col.source"),
        "curated": t("models.col.curated"), "params (M)": t("models.col.params"), "MACs (G)": t("models.col.macs"),
        "published MACs (G)": t("models.col.published_macs"),
        "top-1 (%)": t("models.col.top1"), "top-5 (%)": t("models.col.top5"), "input": t("models.col.input"),
        "weights": t("models.col.weights"), "size (MB)": t("models.col.size"),
        "all weights": t("models.col.all_weights"), "published figures from": t("models.col.published_source"),
    }
    components.table(table.rename(columns=headers), key="models_table",
                     decimals={headers["MACs (G)"]: 3, headers["published MACs (G)"]: 3})
    st.caption(t("models.macs_note"))
    st.caption(t("models.catalog_note", shown=len(table), total=len(rows)))
    missing = [r["name"] for r in rows if r["weights"] and r["weights"][0]["status"] == "downloadable"]
    wanted = st.multiselect(
        t("models.download_for"), missing, default=[o for o in state.selected_models() if o in missing],
        format_func=state.display_name, key="models_download", placeholder=t("models.download_placeholder"),
    )
    if wanted:
        components.weights_gate(wanted, key="models")

with tab_checkpoint:
    st.markdown(t("models.checkpoint_intro"))
    arch_options = [e.name for e in list_models()]
    c1, c2 = st.columns(2)
    arch = c1.selectbox(t("models.architecture"), arch_options, index=arch_options.index("resnet50"), key="ckpt_arch", format_func=state.display_name)
    label = c2.text_input(t("models.name"), key="ckpt_label", placeholder=t("models.name_placeholder"))
    ckpt_file = st.file_uploader(t("models.checkpoint"), type=["pth", "pt", "bin", "safetensors", "ckpt"], key="ckpt_file")
    classes_file = st.file_uploader(t("models.class_names"), type=["txt", "json"], key="ckpt_classes")
    if st.button(t("models.load"), type="primary", key="ckpt_load", disabled=ckpt_file is None):
        try:
            with st.spinner(t("models.checking_checkpoint")):
                loaded = actions.load_checkpoint_upload(
                    ckpt_file.getvalue(),
                    ckpt_file.name,
                    arch=arch,
                    label=label,
                    classes=(classes_file.getvalue(), classes_file.name) if classes_file is not None else None,
                )
            state.flash(t("models.loaded", model=loaded.describe()))
            st.rerun()
        except BackboneError as exc:
            components.show_error(exc)
    message = state.pop_flash()
    if message:
        st.success(components.md(message))
    customs = state.custom_models()
    saved = [c for c in caches.custom_models().values() if c.saved and c.label not in customs]
    if saved:
        st.markdown(f"**{t('models.saved_here')}**")
        for i, custom in enumerate(saved):
            cols = st.columns([4, 1])
            cols[0].markdown(t("models.saved_line", label=components.md(custom.label), arch=custom.arch,
                               n=custom.num_classes, path=components.md(custom.path)))
            if cols[1].button(t("models.forget"), key=f"ckpt_forget_{i}"):
                actions.forget_saved_checkpoint(custom.path)
                st.rerun()
    if customs:
        st.markdown(f"**{t('models.loaded_this_session')}**")
        for custom in customs.values():
            cols = st.columns([4, 1])
            cols[0].markdown(t("models.custom_line", label=components.md(custom.label), arch=custom.arch,
                               n=custom.num_classes))
            if cols[1].button(t("models.remove"), key=f"ckpt_remove_{custom.label}"):
                state.remove_custom(custom.label)
                st.rerun()

def import_weights_tab() -> None:
    st.markdown(t("models.import_intro"))
    if not weights_import_allowed():
        st.info(t("models.import_off"), icon=":material/lock:")
        return
    importable = [e.name for e in list_models() if e.source != "bundled"]
    c1, c2 = st.columns(2)
    target = c1.selectbox(t("models.model"), importable, key="import_model", format_func=state.display_name)
    from backbones.zoo.weights import weights_status

    statuses = weights_status(target)
    which = c2.selectbox(t("models.weights"), [s.name for s in statuses], key="import_weights_name")
    chosen = next(s for s in statuses if s.name == which)
    st.markdown(t("models.weights_status", status=chosen.status, path=display_path(chosen.path), url=chosen.url))
    weights_file = st.file_uploader(t("models.weights_file"), type=["pth", "pt", "bin", "safetensors"], key="import_file")
    if st.button(t("models.import"), key="import_go", disabled=weights_file is None):
        from backbones.zoo.importing import import_weights

        try:
            # A temporary file whose name the server makes; the upload's own name picks only the suffix.
            suffix = allowed_suffix(weights_file.name, (".pth", ".pt", ".bin", ".safetensors"))
            with tempfile.TemporaryDirectory() as tmpdir:
                tmp = Path(tmpdir) / f"upload{suffix}"
                tmp.write_bytes(weights_file.getvalue())
                with st.spinner(t("models.importing")):
                    dest = import_weights(target, tmp, weights=which)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            caches.catalog_rows.clear()
            st.success(components.md(t("models.imported", dest=display_path(dest))))


with tab_import:
    import_weights_tab()
