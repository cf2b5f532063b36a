"""The server's metrics as experiment-tracking records: TensorBoard event files, and MLflow.

Fed by ``server/metrics_log.py`` with exactly what it writes to metrics.json (per round and
site: losses, examples, bytes, seconds, update norms, failures, update-DP epsilon; the
pool's counts), so a tracker never sees anything metrics.json does not already hold, and
nothing a site did not already send through its guard. A tracker that fails mid-run
(MLflow server gone) is switched off with a warning: metrics.json stays the record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.atomic_files import read_json_object, write_atomic
from shared.config import ConfigError, RunConfig, TrackingConfig, format_validation_error

log = logging.getLogger(__name__)

#: Sub-folder of the run folder holding the TensorBoard event files.
TENSORBOARD_DIR = "tensorboard"
#: The MLflow run a resumed server run keeps logging to.
TRACKING_FILE = "tracking.json"


class TrackingError(RuntimeError):
    """A tracker asked for cannot be started; the message names the fix."""


_NO_TENSORBOARD = ("TensorBoard event files need the tensorboard package, which is not installed. Fix: "
                   "install fedmm's server extra (pip install -e '.[server]'), or set [tracking] "
                   "tensorboard = false.")
_NO_MLFLOW = ("--mlflow {uri} needs MLflow's client, which is not installed. Fix: install fedmm's "
              "mlflow extra (pip install -e '.[mlflow]'), or drop --mlflow.")


def _allow_file_store(uri: str) -> None:
    """MLflow 3 keeps its file store behind a switch; a ``file:`` URI asks for that store."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def scalars(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The finite numbers of a metrics.json entry as ``("train/sites/<node>/loss", v)`` pairs.

    Booleans become 0/1, a list (failures) its length, and a ``sites`` table also gives its
    size as ``.../sites/count``; strings (reasons) and nulls are left out, and so is a section
    with nothing in it yet (a round's ``evaluate`` before its evaluation).
    """
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping) and all(v is None or v in ({}, [], ()) for v in value.values()):
            continue
        if isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, int | float):
            if math.isfinite(value):
                yield name, float(value)
        elif isinstance(value, list | tuple):
            yield name, float(len(value))
        elif isinstance(value, Mapping):
            if key == "sites":
                yield f"{name}/count", float(len(value))
            yield from scalars(value, name)


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"federation.num_rounds": "5"}`` (MLflow parameters)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flat_params(value, name))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


class _TensorBoardSink:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise TrackingError(_NO_TENSORBOARD) from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def text(self, name: str, text: str) -> None:
        self.writer.add_text(name, text, global_step=0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MlflowSink:
    def __init__(self, *, uri: str, experiment: str, run_name: str, state_file: Path) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError as err:
            raise TrackingError(_NO_MLFLOW.format(uri=uri)) from err
        _allow_file_store(uri)
        # A tracking server that goes away mid-run costs one short stall, not MLflow's default
        # of 7 retries with back-off per call, before this sink is switched off.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            self.client = MlflowClient(tracking_uri=uri)
            saved = read_json_object(state_file).get("mlflow", {})
            if saved.get("uri") == uri and saved.get("run_id"):
                self.run_id = str(saved["run_id"])
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                found = self.client.get_experiment_by_name(experiment)
                experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
                self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        except Exception as err:  # MLflow raises many types (network, store, permissions)
            raise TrackingError(
                f"Could not start an MLflow run at {uri} (experiment {experiment!r}): "
                f"{type(err).__name__}: {err}. Fix: check the URI and that the tracking server is "
                "reachable from the server, or drop --mlflow.") from err
        state = {"mlflow": {"uri": uri, "run_id": self.run_id}}
        write_atomic(state_file, json.dumps(state, indent=2).encode())

    def log(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key=k, value=v, timestamp=now, step=step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow's parameter batch limit
            self.client.log_batch(self.run_id, params=batch[i:i + 100])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def check_tracking(config: TrackingConfig) -> None:
    """Before a run starts: the packages the trackers need are installed and the MLflow
    tracking server answers (a CLI edge calls this, so a typo fails before any round).

    Raises:
        TrackingError: what is missing or unreachable, and the fix.
    """
    if config.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError as err:
            raise TrackingError(_NO_TENSORBOARD) from err
    if config.mlflow_uri:
        try:
            from mlflow import MlflowClient
        except ImportError as err:
            raise TrackingError(_NO_MLFLOW.format(uri=config.mlflow_uri)) from err
        _allow_file_store(config.mlflow_uri)
        # One quick try: MLflow's defaults (7 retries with back-off, 120 s timeout) would keep a
        # mistyped URI waiting for minutes.
        quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
        saved = {k: os.environ.get(k) for k in quick}
        os.environ.update(quick)
        try:
            MlflowClient(tracking_uri=config.mlflow_uri).search_experiments(max_results=1)
        except Exception as err:  # MLflow raises many types (network, store, permissions)
            raise TrackingError(
                f"expected an MLflow tracking server at {config.mlflow_uri}, got "
                f"{type(err).__name__}: {str(err)[:300]}. Fix: check the URI and that the server is "
                "reachable, or drop --mlflow.") from err
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class RunTracker:
    """Sends metrics.json's rounds and summary to TensorBoard and (optionally) MLflow.

    Args:
        out_dir: the run folder (event files go to ``out_dir/tensorboard``).
        config: the run's ``[tracking]`` section. A tracker that cannot start is logged as a
            warning (``check_tracking`` is the loud check, before the run).
    """

    def __init__(self, out_dir: Path, *, config: TrackingConfig) -> None:
        self.out_dir = out_dir
        self._sent: dict[tuple[int, str], float] = {}
        self._params_sent = False
        self._tensorboard: _TensorBoardSink | None = None
        self._mlflow: _MlflowSink | None = None
        try:  # a tracker that cannot start is a warning here; the CLIs check it before a run
            if config.tensorboard:
                self._tensorboard = _TensorBoardSink(out_dir / TENSORBOARD_DIR)
            if config.mlflow_uri:
                self._mlflow = _MlflowSink(uri=config.mlflow_uri, experiment=config.mlflow_experiment,
                                           run_name=out_dir.name, state_file=out_dir / TRACKING_FILE)
        except TrackingError as err:
            log.warning("%s metrics.json in %s keeps every round.", err, out_dir)

    def log_round(self, entry: Mapping[str, Any]) -> None:
        """Log one metrics.json round entry (values already logged for that round are skipped:
        the protocol records a round after training and again after evaluation)."""
        step = int(entry["round"])
        self._log(step, {k: v for k, v in scalars(entry) if k != "round"})

    def log_meta(self, meta: Mapping[str, Any]) -> None:
        """Log metrics.json's ``meta``: the pool's counts and failures at step 0, the config
        once (MLflow parameters, a TensorBoard text)."""
        self._log(0, {f"meta/{k}": v for k, v in scalars({k: v for k, v in meta.items()
                                                          if k != "config"})})
        config = meta.get("config")
        if isinstance(config, Mapping) and not self._params_sent:
            self._params_sent = True
            if self._tensorboard is not None:
                self._tensorboard.text("config", "```json\n" + json.dumps(config, indent=2) + "\n```")
            if self._mlflow is not None:
                self._guarded("mlflow", lambda sink: sink.params(flat_params(config)))

    def close(self) -> None:
        """Flush and close the event files; mark the MLflow run finished."""
        for name in ("tensorboard", "mlflow"):
            self._guarded(name, lambda sink: sink.close())

    def _log(self, step: int, values: Mapping[str, float]) -> None:
        new = {k: v for k, v in values.items() if self._sent.get((step, k)) != v}
        if not new:
            return
        self._sent.update({(step, k): v for k, v in new.items()})
        self._guarded("tensorboard", lambda sink: sink.log(step, new))
        self._guarded("mlflow", lambda sink: sink.log(step, new))

    def _guarded(self, name: str, call: Any) -> None:
        sink = getattr(self, f"_{name}")
        if sink is None:
            return
        try:
            call(sink)
        except Exception as err:  # a tracker must never fail the federation
            log.warning("Stopped logging to %s after an error (%s: %s); metrics.json in %s "
                        "keeps every round.", name, type(err).__name__, err, self.out_dir)
            setattr(self, f"_{name}", None)


def where_to_look(out_dir: Path, config: TrackingConfig) -> list[str]:
    """Lines telling the user where the run's metrics can be watched (the CLIs print them)."""
    lines = [f"metrics: {out_dir / 'metrics.json'}"]
    if config.tensorboard:
        lines.append(f"TensorBoard: tensorboard --logdir {out_dir}")
    if config.mlflow_uri:
        run_id = read_json_object(out_dir / TRACKING_FILE).get("mlflow", {}).get("run_id")
        lines.append(f"MLflow: experiment {config.mlflow_experiment!r} at {config.mlflow_uri}"
                     + (f", run {run_id}" if run_id else "")
                     + f" (mlflow ui --backend-store-uri {config.mlflow_uri})"
                     * (not config.mlflow_uri.startswith("http")))
    return lines


def with_mlflow(cfg: RunConfig, uri: str | None) -> RunConfig:
    """``cfg`` logging to the MLflow tracking server ``uri`` (``--mlflow``); ``cfg`` for None.

    Raises:
        ConfigError: ``uri`` is not a tracking URI.
    """
    if uri is None:
        return cfg
    try:
        tracking = TrackingConfig(**{**cfg.tracking.model_dump(), "mlflow_uri": uri})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source="--mlflow", model=TrackingConfig)) from err
    return cfg.model_copy(update={"tracking": tracking})
