"""Which model the daemon runs: the taught one (teach.use) or model.path, and its checks.

The taught model is installed as a generation folder ``models/<when>-<sha8>/``
holding ``model.tflite``, ``labels.txt`` and ``report.json`` together, and the
names ``teach.dir/model.tflite``, ``labels.txt`` and ``report.json`` are
symbolic links into the newest one. ``model.tflite``'s link is switched last,
in one rename: it is the commit point. A reader resolves it and takes the
labels and the report from the same folder, so a kill between the switches
can never pair a model with another model's labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, Optional

from ..config import Config
from ..errors import ConfigError, ModelError, TeachError
from . import teach_dir

log = logging.getLogger(__name__)

MODEL = "model.tflite"
LABELS = "labels.txt"
REPORT = "report.json"
GENERATIONS = "models"


def generation_dir(root: str) -> Optional[str]:
    """The folder of the installed taught model (``model.tflite``'s), or None."""
    link = os.path.join(root, MODEL)
    if not os.path.lexists(link):
        return None
    real = os.path.realpath(link)
    if not os.path.isfile(real):
        return None
    return os.path.dirname(real)


def installed(root: str) -> Optional[tuple[str, str]]:
    """(model, labels) of the taught model installed under ``root``, or None."""
    folder = generation_dir(root)
    if folder is None:
        return None
    model, labels = os.path.join(folder, MODEL), os.path.join(folder, LABELS)
    return (model, labels) if os.path.isfile(labels) else None


def read_report(root: str) -> Optional[dict[str, Any]]:
    """The installed taught model's report.json, or None when there is none (or it is damaged)."""
    folder = generation_dir(root)
    path = os.path.join(folder, REPORT) if folder else os.path.join(root, REPORT)
    try:
        with open(path, "rb") as f:
            report = json.loads(f.read(10_000_000))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def base_of(root: str, model_sha256: str) -> str:
    """The sha256 of the base network a taught model under ``root`` was built on, when
    ``model_sha256`` is one (its embeddings are that base's: the layers before the
    last are the same); else ``model_sha256`` itself."""
    folder = os.path.join(root, GENERATIONS)
    try:
        names = os.listdir(folder)
    except OSError:
        return model_sha256
    for name in names:
        if not name.endswith(model_sha256[:8]):
            continue
        try:
            with open(os.path.join(folder, name, REPORT), "rb") as f:
                report = json.loads(f.read(10_000_000))
            if report["model"]["sha256"] == model_sha256:
                return str(report["base"]["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return model_sha256


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def names_taught(cfg: Config) -> bool:
    """Whether model.path is the taught model itself (``model.path: .../teach/model.tflite``)."""
    root = teach_dir(cfg)
    path = cfg.model.path
    return _same_file(path, os.path.join(root, MODEL)) or (
        os.path.realpath(os.path.dirname(os.path.dirname(os.path.realpath(path))))
        == os.path.realpath(os.path.join(root, GENERATIONS))
    )


def running_config(cfg: Config) -> tuple[Config, bool]:
    """The config the daemon loads its model with, and whether that is the taught model.

    With ``teach.use`` and a taught model installed: model.path and
    model.labels name its generation folder's files (and cpu_fallback is off,
    it is a plain model). With model.path naming the taught model: its labels
    come from the same folder. Otherwise ``cfg`` as it is.
    """
    root = teach_dir(cfg)
    found = installed(root)
    if names_taught(cfg):
        if found is None:
            return cfg, True  # load_model names the missing file
        return _pointed(cfg, found), True
    if cfg.teach.use and found is not None:
        return _pointed(cfg, found), True
    return cfg, False


def _pointed(cfg: Config, files: tuple[str, str]) -> Config:
    model = dataclasses.replace(cfg.model, path=files[0], labels=files[1], cpu_fallback=None)
    return dataclasses.replace(cfg, model=model)


def check_taught(cfg: Config, outputs: int, labels: list[str]) -> None:
    """Refuse a taught model whose labels or report do not belong to it (TeachError).

    ``outputs``: the model's output count; ``labels``: its labels file's lines.
    """
    path = cfg.model.path
    folder = os.path.dirname(path)
    if len(labels) != outputs:
        raise TeachError(
            f"{os.path.join(folder, LABELS)}: {len(labels)} labels for the {outputs} outputs of"
            f" {path}; this labels file is not the taught model's. Train again"
            " (edge-daemon teach train) or set teach.use: false"
        )
    try:
        with open(os.path.join(folder, REPORT), "rb") as f:
            report = json.loads(f.read(10_000_000))
    except (OSError, ValueError):
        return  # a model copied by hand without its report: the labels check above holds
    classes = report.get("classes") if isinstance(report, dict) else None
    if isinstance(classes, list) and [str(c) for c in classes] != list(labels):
        raise TeachError(
            f"{os.path.join(folder, LABELS)}: the labels ({', '.join(labels[:5])}) are not the"
            f" classes the model was trained on ({', '.join(map(str, classes[:5]))});"
            " train again (edge-daemon teach train)"
        )
    want = (report.get("model") or {}).get("sha256") if isinstance(report, dict) else None
    if isinstance(want, str):
        with open(path, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != want:
            raise TeachError(
                f"{path}: not the model its report.json describes (sha256 {got[:12]}, expected"
                f" {want[:12]}); train again (edge-daemon teach train)"
            )


def load_running_model(cfg: Config, runtime: Any, *, fallback: bool) -> tuple[Any, str]:
    """Load the model the daemon runs (see ``running_config``), checked; with why the
    taught model was not used ("" when it was, or when there is none).

    The taught model must also suit the config's event rules (a rule on
    ``@birds`` or a label it does not have). ``fallback``: when the taught
    model cannot be used, log why and load model.path instead (at start: a
    broken taught model, or a rule edited in after it, must not keep the
    service down). Without it the error propagates (a reload then keeps the
    model that runs).
    """
    from ..engine.model import load_model
    from ..events.engine import rules_for

    run_cfg, taught = running_config(cfg)
    if not taught:
        return load_model(run_cfg, runtime), ""
    try:
        model = load_model(run_cfg, runtime)
        try:
            check_taught(
                run_cfg, len(model.labels.labels) + model.labels.offset, list(model.labels.labels)
            )
            if model.labels.offset:
                raise TeachError(
                    f"{run_cfg.model.labels}: {len(model.labels.labels)} labels for the"
                    f" {len(model.labels.labels) + 1} outputs of {run_cfg.model.path}; this"
                    " labels file is not the taught model's. Train again"
                )
            rules_for(run_cfg, model.labels)
        except BaseException:
            model.close()
            raise
    except (TeachError, ModelError, ConfigError) as exc:
        if not fallback or names_taught(cfg):
            raise
        note = f"taught model not used: {exc}; running {cfg.model.path}"
        log.error("%s", note)
        return load_model(cfg, runtime), note
    return model, ""
