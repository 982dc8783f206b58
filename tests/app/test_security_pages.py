"""Security regressions through the pages, as a visitor on the same network would try them.

Each hostile input is generated here; the project tree is checksummed before and after, so a file
written anywhere in it (the reported attack overwrote a page) fails the test.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from pathlib import Path

import pytest

from tests.app.conftest import errors, no_exception, open_page, shown
from tests.unit.test_archives import REPO, tree_digest

MIME = "application/octet-stream"


def hostile_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("cat/1.jpg", b"x")
        z.writestr("\\" + str(REPO / "dashboard" / "views" / "training.py").lstrip("/").replace("/", "\\"), b"raise SystemExit")
    return buffer.getvalue()


def test_config_listens_locally_and_hides_tracebacks():
    toml = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "toml")
    config = toml.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["enableXsrfProtection"] is True


def test_evaluate_offers_no_server_path_without_roots(app, monkeypatch):
    monkeypatch.delenv("BACKBONES_DATA_ROOTS", raising=False)
    open_page(app, "evaluate")
    no_exception(app)
    assert "a folder on the server" not in app.radio(key="eval_source").options
    assert not [t for t in app.text_input if t.key == "eval_path"]


def test_server_paths_only_inside_roots_with_one_message(app, monkeypatch, tmp_path, flower_photo):
    root = tmp_path / "data"
    (root / "flowers" / "daisy").mkdir(parents=True)
    (root / "flowers" / "daisy" / "1.jpg").write_bytes(flower_photo.read_bytes())
    (root / "escape").symlink_to(REPO)  # a link inside a root that points out of it
    monkeypatch.setenv("BACKBONES_DATA_ROOTS", str(root))
    open_page(app, "evaluate")
    app.radio(key="eval_source").set_value("server").run()
    messages = set()
    for path in ["/etc", str(REPO), str(REPO / "README.md"), "/no/such/dir", str(root / "missing"),
                 str(root / "escape"), str(root / ".." / root.name / "escape" / "dashboard"), "../../etc"]:
        app.text_input(key="eval_path").set_value(path).run()
        no_exception(app)
        shown = errors(app)
        assert len(shown) == 1, (path, shown)
        messages.add(shown[0])
    assert len(messages) == 1 and "not an allowed dataset path" in messages.pop()
    app.text_input(key="eval_path").set_value(str(root / "flowers")).run()
    no_exception(app)
    assert not errors(app)
    assert not app.button(key="eval_go").disabled


def test_traversal_zip_upload_writes_nothing(app, tmp_path):
    before = tree_digest(REPO)
    open_page(app, "evaluate")
    app.radio(key="eval_source").set_value("upload").run()
    app.file_uploader(key="eval_zip").set_value(("dataset.zip", hostile_zip(), "application/zip"))
    app.run()
    no_exception(app)
    shown = errors(app)
    assert len(shown) == 1 and "archive refused" in shown[0]
    assert tree_digest(REPO) == before
    datasets = tmp_path / "cache" / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []


@pytest.mark.parametrize(
    "client_name",
    [
        "{site}/evil.pth",  # the reported attack: a .pth in site-packages runs at every interpreter start
        "..\\..\\..\\evil.pth",
        "../../evil.pth",
        "C:\\evil.pth",
        "evil\u202egnp.pth",  # right-to-left override: displays as evil.pth.png
    ],
)
def test_import_weights_never_uses_the_client_file_name(app, tmp_path, client_name):
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    name = client_name.replace("{site}", str(site))
    before_site = {p.name for p in site.iterdir()}
    before = tree_digest(REPO / "dashboard")
    open_page(app, "models")
    app.selectbox(key="import_model").set_value("resnet18")
    app.file_uploader(key="import_file").set_value((name, b"import os; os.system('touch /tmp/pwned')\n", MIME))
    app.run()
    app.button(key="import_go").click().run()
    no_exception(app)
    assert len(errors(app)) == 1
    assert {p.name for p in site.iterdir()} == before_site
    assert tree_digest(REPO / "dashboard") == before
    assert not (tmp_path / "evil.pth").exists()


def test_refused_checkpoint_does_not_stay_in_uploads(app, tmp_path):
    open_page(app, "models")
    app.selectbox(key="ckpt_arch").set_value("resnet18")
    app.file_uploader(key="ckpt_file").set_value(("../../x.pth", b"not a checkpoint at all", MIME))
    app.run()
    app.button(key="ckpt_load").click().run()
    no_exception(app)
    assert len(errors(app)) == 1
    uploads = tmp_path / "cache" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_names_render_as_plain_text(app, grace_hopper):
    name = "![x](http://127.0.0.1:9/beacon.png) [click](http://127.0.0.1:9) <b>.jpg"
    open_page(app, "predict")
    app.file_uploader(key="predict_upload").set_value([(name, grace_hopper.read_bytes(), "image/jpeg")])
    app.run()
    no_exception(app)
    headers = [h.value for h in app.subheader]
    # Every bracket and angle bracket is escaped: no image, link or tag survives Markdown.
    assert headers and all(re.search(r"(?<!\\)[\[\]<>]", h) is None for h in headers), headers
    assert shown(headers[0]) == name


def test_measure_is_capped_with_an_estimate_before_it_starts(app, monkeypatch):
    monkeypatch.setenv("BACKBONES_MEASURE_MAX_SECONDS", "30")
    app.run()
    app.sidebar.multiselect[0].set_value(["squeezenet1_1", "resnet18"])
    open_page(app, "compare")
    button = app.button(key="cmp_measure")
    assert "about" in button.label and not button.disabled  # the estimate is shown before anything runs
    app.sidebar.multiselect[0].set_value(["vgg19", "resnet152", "convnext_tiny", "densenet121", "vit_h_14"])
    app.selectbox(key="cmp_batch").set_value(64)
    app.number_input(key="cmp_budget").set_value(10.0)
    app.run()
    no_exception(app)
    assert app.button(key="cmp_measure").disabled
    said = errors(app) + [shown(c.value) for c in app.caption]
    assert any("limit" in m for m in said), said


def test_markdown_and_html_in_names_are_inert():
    import plotly.graph_objects as go

    from dashboard.components import _escape_values, md, plain_label

    hostile = "![x](http://127.0.0.1:9/b.png) [l](http://x) <img src=x> *bold* `code` $x$ :red[x] | a |"
    escaped = md(hostile)
    assert re.search(r"(?<!\\)[\[\]<>*`$|]", escaped) is None and shown(escaped) == hostile
    assert "<" not in plain_label("<a href='x'>gpu</a>") and "&lt;a href" in plain_label("<a href='x'>gpu</a>")
    fig = go.Figure(go.Bar(x=["<a href='http://x'>m</a>"], y=[1], name="<b>series</b>"))
    assert _escape_values(list(fig.data[0].x)) == ["&lt;a href='http://x'&gt;m&lt;/a&gt;"]


def test_a_log_file_named_with_markdown_stays_plain_text(app):
    name = "![beacon](http://127.0.0.1:9/x.png).csv"
    open_page(app, "training")
    app.file_uploader(key="train_upload").set_value([(name, b"epoch,loss,test_acc\n1,0.9,0.5\n2,0.7,0.6\n", "text/csv")])
    app.run()
    no_exception(app)
    labels = [w.label for w in app.text_input]
    assert labels and all(re.search(r"(?<!\\)[\[\]]", label) is None for label in labels), labels


def test_csv_errors_never_quote_the_files_contents(tmp_path):
    from backbones.data.datasets import read_dataset
    from backbones.errors import DatasetError

    csv = tmp_path / "data.csv"
    csv.write_text("/etc/shadow-secret-cell,cat\n/nowhere/else.jpg,dog\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(csv)
    assert "secret" not in str(info.value) and "shadow" not in str(info.value)


def test_weights_import_is_off_when_the_administrator_says_so(app, monkeypatch):
    """On a shared server a visitor cannot place files in torch's hub cache unless the administrator allows it."""
    monkeypatch.setenv("BACKBONES_ALLOW_WEIGHTS_IMPORT", "0")
    open_page(app, "models")
    no_exception(app)
    assert not [w for w in app.get("file_uploader") if getattr(w, "key", None) == "import_file"]
    assert any("BACKBONES_ALLOW_WEIGHTS_IMPORT=1" in i.value for i in app.info)
