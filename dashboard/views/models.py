"""Models: the catalog with weights status, importing weights files, and your own checkpoints."""

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from backbones.errors import BackboneError
from backbones.paths import allowed_suffix
from backbones.zoo.catalog import list_models
from dashboard import actions, caches, components, state

st.title("Models")
st.caption("CLI: `python -m backbones list --all --json`, `python -m backbones weights NAME`, `python -m backbones import-weights NAME FILE`.")

tab_catalog, tab_checkpoint, tab_import = st.tabs(["Catalog", "Your checkpoint", "Import weights"])

with tab_catalog:
    c1, c2 = st.columns([2, 3])
    source = c1.radio("Source", ["all", "curated", "torchvision", "timm", "bundled"], horizontal=True, key="models_source")
    query = c2.text_input("Search", key="models_query", placeholder="name or family, e.g. resnet, ViT")
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
    components.table(table, key="models_table")
    st.caption(
        f"{len(table)} of {len(rows)} models. Weights: **bundled** ships with the app; **cached** is on this "
        "machine (torch's hub cache or the Hugging Face cache timm shares); **downloadable** is fetched on demand "
        "(below, or `python -m backbones download NAME`), or imported on the 'Import weights' tab on a machine "
        "without internet. Every model works untrained for size, latency and summaries."
    )
    missing = [r["name"] for r in rows if r["weights"] and r["weights"][0]["status"] == "downloadable"]
    wanted = st.multiselect(
        "Download weights for", missing, default=[o for o in state.selected_models() if o in missing],
        format_func=state.display_name, key="models_download", placeholder="Pick backbones to download",
    )
    if wanted:
        components.weights_gate(wanted, key="models")

with tab_checkpoint:
    st.markdown(
        "Load a fine-tuned checkpoint (`.pth`, `.pt`, `.bin`, `.safetensors`) for any catalog architecture. "
        "`module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes are handled; the number of classes "
        "is read from the classifier. It is then available on every page, under its own name, for this session."
    )
    arch_options = [e.name for e in list_models()]
    c1, c2 = st.columns(2)
    arch = c1.selectbox("Architecture", arch_options, index=arch_options.index("resnet50"), key="ckpt_arch", format_func=state.display_name)
    label = c2.text_input("Name", key="ckpt_label", placeholder="e.g. flowers102-resnet50")
    ckpt_file = st.file_uploader("Checkpoint", type=["pth", "pt", "bin", "safetensors", "ckpt"], key="ckpt_file")
    classes_file = st.file_uploader("Class names (optional): .txt one per line, or .json", type=["txt", "json"], key="ckpt_classes")
    if st.button("Load checkpoint", type="primary", key="ckpt_load", disabled=ckpt_file is None):
        try:
            with st.spinner("Checking that the checkpoint fits…"):
                loaded = actions.load_checkpoint_upload(
                    ckpt_file.getvalue(),
                    ckpt_file.name,
                    arch=arch,
                    label=label,
                    classes=(classes_file.getvalue(), classes_file.name) if classes_file is not None else None,
                )
            state.flash(f"Loaded {loaded.describe()}; it is selected in the sidebar.")
            st.rerun()
        except BackboneError as exc:
            components.show_error(exc)
    message = state.pop_flash()
    if message:
        st.success(components.md(message))
    customs = state.custom_models()
    if customs:
        st.markdown("**Loaded this session**")
        for custom in customs.values():
            cols = st.columns([4, 1])
            cols[0].markdown(f"★ **{components.md(custom.label)}** — {custom.arch}, {custom.num_classes} classes")
            if cols[1].button("Remove", key=f"ckpt_remove_{custom.label}"):
                state.remove_custom(custom.label)
                st.rerun()

with tab_import:
    st.markdown(
        "No internet here: download a torchvision weights file elsewhere (the URL is listed below) and import it. "
        "The file is checked against the official hash and loaded into the architecture before it is copied "
        "into torch's hub cache; then predictions and CAMs work offline."
    )
    importable = [e.name for e in list_models() if e.source != "bundled"]
    c1, c2 = st.columns(2)
    target = c1.selectbox("Model", importable, key="import_model", format_func=state.display_name)
    from backbones.zoo.weights import weights_status

    statuses = weights_status(target)
    which = c2.selectbox("Weights", [s.name for s in statuses], key="import_weights_name")
    chosen = next(s for s in statuses if s.name == which)
    st.markdown(f"Status: **{chosen.status}** · expected file: `{chosen.path}` · from: {chosen.url}")
    weights_file = st.file_uploader("Weights file", type=["pth", "pt", "bin", "safetensors"], key="import_file")
    if st.button("Import", key="import_go", disabled=weights_file is None):
        from backbones.zoo.importing import import_weights

        try:
            # A temporary file whose name the server makes; the upload's own name picks only the suffix.
            suffix = allowed_suffix(weights_file.name, (".pth", ".pt", ".bin", ".safetensors"))
            with tempfile.TemporaryDirectory() as tmpdir:
                tmp = Path(tmpdir) / f"upload{suffix}"
                tmp.write_bytes(weights_file.getvalue())
                with st.spinner("Checking and importing…"):
                    dest = import_weights(target, tmp, weights=which)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            caches.catalog_rows.clear()
            st.success(components.md(f"Imported into {dest}"))
