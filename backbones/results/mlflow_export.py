"""Every stored benchmark and evaluation as an MLflow run (``python -m backbones results --to-mlflow``).

Uses ``MlflowClient`` with explicit run ids (the fluent ``mlflow.start_run`` API keeps a global
active run and is not thread-safe). Each run carries our run id in the tag ``backbones.run_id``;
rows whose run id is already in the experiment are not exported again, so re-exporting adds
no duplicates. Per run: params (model, weights, device, batch size, threads, machine, versions),
metrics (latency median/p10/p90 and images/s; top-1/top-5), and for evaluations the confusion
matrix as CSV and PNG. One more run, tagged ``backbones.role=comparison``, holds the latency
comparison chart, redrawn on each export. Needs ``mlflow-skinny`` (imported only here).

The tracking URI is decided once (:func:`resolve_tracking_uri`): nothing is created in a folder the
user did not name, passwords in ``http://user:password@host`` never appear in a message (MLflow's own
error text included), and an unreachable server fails in seconds (:data:`HTTP_SETTINGS`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from backbones.errors import StoreError
from backbones.paths import cache_dir
from backbones.results.backend import redact_url, why
from backbones.results.charts import draw_confusion, draw_latency_comparison
from backbones.results.comparison import comparison_rows
from backbones.results.records import StoredResult

DEFAULT_EXPERIMENT = "backbone-lens"
RUN_ID_TAG = "backbones.run_id"
ROLE_TAG = "backbones.role"
_VERSIONS = ("torch", "torchvision", "timm", "python")


@dataclass(frozen=True)
class MlflowExport:
    """What one export did."""

    tracking_uri: str  # without a password
    experiment: str
    experiment_id: str
    created: int  # new runs
    existing: int  # rows already exported before

    def to_dict(self) -> dict:
        return asdict(self)


# A scheme: two or more characters (one letter is a Windows drive), then ':'.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$", re.DOTALL)
# ``host:port`` (or ``[v6]:port``) with an optional path: a server named without its scheme.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})(/.*)?$")
#: MLflow's HTTP settings during an export, unless the user set them: an unreachable server fails
#: in seconds (MLflow's defaults, 120 s per request and 7 retries with back-off, took 254 s).
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}


def default_tracking_folder() -> Path:
    """Where runs go when no URI is named: ``cache_dir()/mlruns`` (never a folder the user did not name here)."""
    return cache_dir() / "mlruns"


def resolve_tracking_uri(uri: str | None) -> str:
    """The MLflow tracking URI to use, decided once; :class:`StoreError` for what cannot be meant.

    ``uri``, else ``$MLFLOW_TRACKING_URI``, else :func:`default_tracking_folder`. A URI with a
    scheme goes to MLflow as it is (``http://``, ``https://``, ``databricks``, ...), except that a
    ``file:`` URI is written in its one canonical form (``file:/abs`` and ``file:///abs`` are the
    same folder) and ``file:relative`` is refused (it names no folder honestly). ``host:port``
    without a scheme is refused with "did you mean http://host:port"; ``http:/host`` (one slash)
    is refused. Anything else is a plain folder the user named.
    """
    uri = (uri or os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if not uri:
        return default_tracking_folder().resolve().as_uri()
    if _HOST_PORT.match(uri):
        raise StoreError(f"--to-mlflow {redact_url(uri)!s} names a server without a scheme: "
                         f"did you mean http://{redact_url(uri)}?")
    match = _SCHEME.match(uri)
    if match is None and uri.startswith("databricks"):
        return uri  # MLflow's names for a Databricks workspace ("databricks", "databricks-uc")
    if match is None:
        return Path(uri).expanduser().resolve().as_uri()  # a plain folder the user named
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StoreError(f"the MLflow URI {redact_url(uri)} is not an absolute file URI: use file:///ABSOLUTE/FOLDER "
                             "or a plain folder path")
        return Path(unquote(parts.path)).as_uri()
    if scheme in ("http", "https") and not (rest.startswith("//") and urlsplit(uri).hostname):
        raise StoreError(f"the MLflow URI {redact_url(uri)} has no host: use {scheme}://HOST:PORT")
    return uri


def _scrub(text: str, uri: str) -> str:
    """``text`` (MLflow's or the HTTP library's words) without the URI's password in any spelling."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    body = uri.partition("://")[2].rpartition("@")[0]
    for secret in {password, unquote(password or ""), body.partition(":")[2]} - {None, ""}:
        text = text.replace(secret, "***")
    return text


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


@contextlib.contextmanager
def _bounded_http():
    """MLflow's :data:`HTTP_SETTINGS` for the export (a user's own values win), then as they were."""
    saved = {name: os.environ.get(name) for name in HTTP_SETTINGS}
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_params(row: StoredResult) -> dict[str, str]:
    """The MLflow params of a stored row (strings; missing values left out)."""
    p, env = row.payload, row.env
    params = {
        "kind": row.kind,
        "model": row.model,
        "weights": p.get("checkpoint") or p.get("weights") or ("none (random)" if row.kind == "latency" else None),
        "device": p.get("device") or env.get("device"),
        "batch_size": p.get("batch_size") or env.get("batch_size"),
        "threads": p.get("threads") if p.get("threads") is not None else env.get("threads"),
        "machine": env.get("machine") or env.get("hostname") or row.source,
        "source": row.source,
        "dataset": p.get("dataset"),
        "input_size": "x".join(str(x) for x in p.get("input_size") or []) or None,
        **{f"{name}_version": env.get(name) for name in _VERSIONS},
    }
    return {k: str(v)[:500] for k, v in params.items() if v is not None}


def run_metrics(row: StoredResult) -> dict[str, float]:
    """The MLflow metrics of a stored row (numbers only; missing values left out)."""
    p = row.payload
    names = {
        "latency": {"latency_median_ms": "median_ms", "latency_p10_ms": "p10_ms", "latency_p90_ms": "p90_ms",
                    "images_per_s": "throughput_ips"},
        "evaluation": {"top1": "top1", "top5": "top5", "images_per_s": "images_per_second"},
        "transfer": {"linear_probe_top1": "top1", "knn_top1": "knn_top1", "logme": "logme",
                     "images_per_s": "extract_images_per_s"},
    }[row.kind]
    return {metric: float(p[key]) for metric, key in names.items()
            if isinstance(p.get(key), (int, float)) and not isinstance(p.get(key), bool)}


def confusion_csv(payload: dict) -> str:
    """The confusion matrix as CSV: a header of predicted columns, one row per dataset class."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true class \\ predicted", *(payload.get("confusion_columns") or [])])
    for label, counts in zip(payload.get("labels") or [], payload.get("confusion") or []):
        writer.writerow([label, *counts])
    return out.getvalue()


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _tagged_runs(client, experiment_id: str, tag: str) -> dict[str, str]:
    """``{tag value: MLflow run id}`` of the runs of the experiment that carry ``tag`` (every page)."""
    found, token = {}, None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` != ''", max_results=1000,
                                  page_token=token)
        for run in page:
            found[run.data.tags[tag]] = run.info.run_id
        token = page.token
        if not token:
            return found


def _export_row(client, experiment_id: str, row: StoredResult) -> None:
    from mlflow.entities import Metric, Param, RunTag

    start = _millis(row.created)
    run = client.create_run(experiment_id, start_time=start, run_name=f"{row.kind} {row.model}",
                            tags={RUN_ID_TAG: row.uid, "backbones.kind": row.kind, "backbones.source": row.source})
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, start, 0) for k, v in run_metrics(row).items()],
        params=[Param(k, v) for k, v in run_params(row).items()],
        tags=[RunTag("backbones.created", row.created)],
    )
    if row.kind == "evaluation" and row.payload.get("confusion"):
        client.log_text(run_id, confusion_csv(row.payload), "confusion_matrix.csv")
        client.log_figure(run_id, draw_confusion(row.payload), "confusion_matrix.png")
    client.set_terminated(run_id, "FINISHED", end_time=start)


def _export_comparison(client, experiment_id: str, store) -> None:
    """(Re)draw the latency comparison chart into the experiment's one comparison run."""
    models = sorted({r.model for r in store.query(kind="latency")})
    rows = comparison_rows(models, store=store, device=None, batch_size=None, threads=None) if models else []
    run_id = _tagged_runs(client, experiment_id, ROLE_TAG).get("comparison")
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name="latency comparison",
                                   tags={ROLE_TAG: "comparison"}).info.run_id
    client.log_figure(run_id, draw_latency_comparison(rows), "latency_comparison.png")
    client.set_terminated(run_id, "FINISHED")


def export_to_mlflow(store, tracking_uri: str | None = None, *, experiment: str = DEFAULT_EXPERIMENT) -> MlflowExport:
    """Export every row of ``store`` (a :class:`~backbones.results.store.ResultsStore`) to MLflow.

    Rows already exported to this experiment (same run id) are skipped. Errors from MLflow
    (a server that is down, a URI it cannot use) are a one-line :class:`StoreError`.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("file:"):
        # mlflow-skinny has no database backend: a local folder is its only serverless store, which
        # MLflow 3 refuses unless allowed (a user who set the variable to false keeps that choice).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError as exc:
        raise StoreError("--to-mlflow needs MLflow: pip install mlflow-skinny") from exc
    rows = store.query()
    shown = redact_url(uri)
    try:
        with _bounded_http():
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
            done = _tagged_runs(client, experiment_id, RUN_ID_TAG)
            new = [r for r in rows if r.uid not in done]
            for row in new:
                _export_row(client, experiment_id, row)
            _export_comparison(client, experiment_id, store)
    except MlflowException as exc:
        raise StoreError(f"MLflow at {shown} refused the export: {_scrub(why(exc), uri)}") from None
    except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a URL it cannot use, ValueError
        raise StoreError(f"cannot export to MLflow at {shown}: {_scrub(why(exc), uri)}") from None
    return MlflowExport(shown, experiment, experiment_id, created=len(new), existing=len(rows) - len(new))
