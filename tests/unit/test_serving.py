"""The app's safe defaults hold wherever Streamlit was started from; paths shown to visitors name caches only;
weights imports are off on a shared server unless turned on (issue 21, findings 1, 6 and 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard import serving


@pytest.fixture
def fresh_config(monkeypatch, tmp_path):
    """Streamlit's options as read in a folder without .streamlit/: its defaults, restored afterwards."""
    from streamlit import config

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    config.get_config_options(force_reparse=True)
    yield config
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)


def test_started_elsewhere_the_options_are_corrected_and_the_address_refused(fresh_config, caplog):
    assert fresh_config.get_option("client.showErrorDetails") != "none"  # Streamlit's default: full tracebacks
    with caplog.at_level("WARNING", logger="backbone_lens.serving"):
        check = serving.check_server_settings()
    assert fresh_config.get_option("client.showErrorDetails") == "none"
    assert fresh_config.get_option("server.maxUploadSize") == 600
    assert fresh_config.get_option("browser.gatherUsageStats") is False
    assert any(c.startswith("client.showErrorDetails") for c in check.corrected)
    assert check.refusal and "every network interface" in check.refusal and "\n" not in check.refusal
    assert any("refusing to serve" in r.message for r in caplog.records)
    assert serving.is_shared_server()


def test_an_address_the_administrator_chose_is_kept(fresh_config):
    fresh_config.set_option("server.address", "0.0.0.0", where_defined="command-line")
    fresh_config.set_option("client.showErrorDetails", "full", where_defined="command-line")
    check = serving.check_server_settings()
    assert check.refusal is None
    assert fresh_config.get_option("client.showErrorDetails") == "full"  # on purpose: kept
    assert serving.is_shared_server()


def test_started_in_the_project_folder_nothing_changes(monkeypatch):
    from streamlit import config

    monkeypatch.chdir(Path(serving.APP_CONFIG).parents[1])
    config.get_config_options(force_reparse=True)
    check = serving.check_server_settings()
    assert check == serving.SettingsCheck()
    assert not serving.is_shared_server()


@pytest.mark.parametrize(
    ("env", "address", "allowed"),
    [("", "127.0.0.1", True), ("", "0.0.0.0", False), ("1", "0.0.0.0", True), ("0", "127.0.0.1", False),
     ("", "::1", True), ("", "192.168.1.5", False)],
)
def test_weights_import_is_off_on_a_shared_server(monkeypatch, fresh_config, env, address, allowed):
    monkeypatch.setenv("BACKBONES_ALLOW_WEIGHTS_IMPORT", env)
    fresh_config.set_option("server.address", address, where_defined="test")
    assert serving.weights_import_allowed() is allowed


def test_paths_are_shown_relative_to_the_caches(monkeypatch, tmp_path):
    import torch

    from backbones.redaction import display_path, redact_paths

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = Path(torch.hub.get_dir())
    cached = hub / "checkpoints" / "resnet50-0676ba61.pth"
    assert display_path(cached) == "torch hub cache/checkpoints/resnet50-0676ba61.pth"
    assert display_path("/home/alice/secret/weights.pth") == "weights.pth"
    message = f"cached file {cached} does not load; see /home/alice/notes.txt, or C:\\Users\\bob\\x.pth"
    shown = redact_paths(message)
    assert str(tmp_path) not in shown and "/home/alice" not in shown and "Users" not in shown
    assert "torch hub cache/checkpoints/resnet50-0676ba61.pth" in shown and "notes.txt" in shown
    assert redact_paths("from https://download.pytorch.org/models/x.pth") == "from https://download.pytorch.org/models/x.pth"
