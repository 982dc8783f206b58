"""How this server is being served: its effective settings checked against the app's own safe defaults.

Streamlit reads ``.streamlit/config.toml`` from the folder it was started in, not the app's: started from
anywhere else, it would listen on every interface, show tracebacks and take 200 MB uploads. At start the app
compares each guarded option with the value in its own config file; an option nobody set (still Streamlit's
default) is corrected where Streamlit allows it at run time, and the listening address, which is bound
before any app code runs, makes the app refuse to serve. Options an administrator set on purpose (a flag,
an environment variable, a config file) are kept. Each correction or refusal is one line in the log.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the fallback values below are the config file's
    tomllib = None

APP_CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"

#: Options whose app value must hold, and the value used when the app's config file cannot be read.
GUARDED = {
    "server.address": "127.0.0.1",
    "client.showErrorDetails": "none",
    "server.maxUploadSize": 600,
    "server.enableXsrfProtection": True,
    "browser.gatherUsageStats": False,
}
#: Bound when the server starts: cannot be corrected afterwards.
_BOUND_AT_START = {"server.address"}

LOG = logging.getLogger("backbone_lens.serving")


@dataclass(frozen=True)
class SettingsCheck:
    """What the start-up check did: options corrected (``name: was -> now``) and, if any, why it refuses."""

    corrected: tuple[str, ...] = ()
    refusal: str | None = None


def _app_values(config_file: Path) -> dict:
    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8")) if tomllib else {}
    except (OSError, ValueError):  # TOMLDecodeError is a ValueError
        data = {}
    values = {}
    for key, fallback in GUARDED.items():
        section, name = key.split(".")
        values[key] = data.get(section, {}).get(name, fallback)
    return values


def check_server_settings(config_file: Path = APP_CONFIG) -> SettingsCheck:
    """Correct what can be corrected, and say whether to refuse (see the module docstring)."""
    from streamlit import config

    corrected, refusal = [], None
    for key, wanted in _app_values(config_file).items():
        current = config.get_option(key)
        if current == wanted or config.is_manually_set(key):
            continue
        if key in _BOUND_AT_START:
            refusal = (
                f"This server listens on every network interface ({key} is unset: Streamlit was started outside "
                f"the project folder, so {config_file.parent.name}/{config_file.name} was not read). Restart it "
                "from the project folder, or pass --server.address explicitly to serve a group on purpose."
            )
            LOG.warning("refusing to serve: %s is %r, not %r", key, current, wanted)
            continue
        config.set_option(key, wanted, where_defined=str(config_file))
        corrected.append(f"{key}: {current!r} -> {wanted!r}")
        LOG.warning("corrected %s from %r to %r (the app's %s was not read)", key, current, wanted, config_file.name)
    return SettingsCheck(tuple(corrected), refusal)


@functools.cache
def checked_settings() -> SettingsCheck:
    """:func:`check_server_settings`, once per process."""
    return check_server_settings()


def _is_loopback(address: str) -> bool:
    if address in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_shared_server() -> bool:
    """Whether other machines can reach this server (it listens beyond loopback)."""
    from streamlit import config

    return not _is_loopback(str(config.get_option("server.address") or ""))


def weights_import_allowed() -> bool:
    """Whether visitors may import weights files into the caches other programs read.

    ``BACKBONES_ALLOW_WEIGHTS_IMPORT=1`` turns it on, ``=0`` off; unset, it is on only when the server
    listens on loopback alone (one person's machine), like server paths (``BACKBONES_DATA_ROOTS``).
    """
    raw = os.environ.get("BACKBONES_ALLOW_WEIGHTS_IMPORT", "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    return not is_shared_server()
