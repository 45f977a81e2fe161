"""``teach train``: embed the samples, cross-validate, fit the last layer, export, install.

1. The base network (``base_model``) embeds every sample not cached yet, through
   ``Classifier.embed``: the daemon's own decode, resize and pixel mapping.
   A sample that no longer decodes is skipped, its file named.
2. Stratified k-fold cross-validation (k = 5, fewer when a class is smaller)
   gives the accuracy per class and the confusion matrix: every sample is
   judged by a layer that never saw it.
3. The final layer is fitted on every sample, exported into a standalone
   model with the base's quantization, loaded back in the runtime and run on
   the samples: its top-1 must agree with the NumPy layer's.
4. The model, its labels and report.json are written into a new generation
   folder and switched in (see ``active``); a kill at any moment leaves the
   previous taught model in place, whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..config import Config
from ..errors import ConfigError, EdgeDaemonError, ModelError, TeachError
from ..fileio import replace_file, sync_dir
from . import teach_dir
from .active import GENERATIONS, LABELS, MODEL, REPORT, generation_dir, names_taught
from .active import read_report as _read_report
from .samples import Sample, SampleStore, model_key

log = logging.getLogger(__name__)

# Fewest samples a class may have: the cross-validation needs two to hold one
# out, and a layer fitted on fewer than three frames of a scene learns noise.
MIN_SAMPLES = 3
FOLDS = 5
# The exported model is checked on up to this many samples per class.
VERIFY_PER_CLASS = 10
# Below this top-1 agreement with the NumPy layer the export is not installed.
MIN_AGREEMENT = 0.9
# Generation folders kept: the installed one and the one before it.
KEEP_GENERATIONS = 2
REPORT_VERSION = 1


def _quiet(_: str) -> None:
    pass


@dataclass
class Report:
    """What a training run did and measured (report.json holds ``as_json()``)."""

    classes: list[str]
    counts: dict[str, int]
    accuracy: float  # cross-validated, over every sample
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: the true class, columns: the predicted one
    folds: int
    method: str
    base: dict[str, Any]
    model: dict[str, Any]
    agreement: dict[str, Any]
    date: str
    seconds: dict[str, float]
    embedded: int  # samples embedded in this run (the rest came from the cache)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["version"] = REPORT_VERSION
        out["samples"] = sum(self.counts.values())
        return out


def read_report(root: str) -> Optional[dict[str, Any]]:
    """The installed taught model's report (a dict as ``Report.as_json``), or None."""
    return _read_report(root)


# -- the base network ---------------------------------------------------------
def base_config(cfg: Config) -> Config:
    """The config that loads the base network training embeds with.

    ``teach.base_model`` when set; else model.path, unless model.path is the
    taught model itself: then the base its report.json names.
    """
    if cfg.teach.base_model is not None:
        model = dataclasses.replace(
            cfg.model, path=cfg.teach.base_model, labels=cfg.teach.base_labels, cpu_fallback=None
        )
        return dataclasses.replace(cfg, model=model)
    if not names_taught(cfg):
        return cfg
    report = read_report(teach_dir(cfg)) or {}
    base = report.get("base") or {}
    path = base.get("path")
    if not isinstance(path, str) or not os.path.isfile(path):
        raise TeachError(
            f"model.path ({cfg.model.path}) is the taught model, and the base network it was"
            " built on is not at the place its report.json names"
            f" ({path or 'none recorded'}); set teach.base_model to the base .tflite"
        )
    model = dataclasses.replace(cfg.model, path=path, labels=base.get("labels"), cpu_fallback=None)
    return dataclasses.replace(cfg, model=model)


def _load_base(cfg: Config) -> Any:
    from ..engine.model import load_model

    bcfg = base_config(cfg)
    try:
        model = load_model(bcfg)
    except ModelError as exc:
        raise TeachError(f"the base network cannot be loaded: {exc}") from None
    if getattr(model, "embedding", None) is None:
        reason = getattr(model, "embedding_reason", "") or "no embedding found"
        model.close()
        raise TeachError(
            f"{bcfg.model.path}: offers no embedding to train on ({reason}); teach needs a"
            " MobileNet-style base (see `edge-daemon check`)"
        )
    return model, bcfg


# -- samples -> embeddings -----------------------------------------------------
def _refuse_counts(classes: dict[str, list[Sample]]) -> None:
    filled = {c: s for c, s in classes.items() if s}
    if not filled:
        raise TeachError(
            "no samples yet; add some with `edge-daemon teach add CLASS PHOTO...` (or from"
            " events: `teach add CLASS --event ID`)"
        )
    if len(filled) == 1:
        (only,) = filled
        raise TeachError(
            f"only one class ({only}): a model needs at least two to choose between. Add a"
            f" class of frames without {only}, e.g. `edge-daemon teach add nothing PHOTO...`"
        )
    few = {c: len(s) for c, s in filled.items() if len(s) < MIN_SAMPLES}
    if few:
        listed = ", ".join(f"{c} has {n}" for c, n in sorted(few.items()))
        raise TeachError(
            f"too few samples: {listed}; each class needs at least {MIN_SAMPLES}"
            " (10 to 20 is better): add more with `edge-daemon teach add`"
        )


def embed_samples(
    store: SampleStore,
    classes: dict[str, list[Sample]],
    model: Any,
    cfg: Config,
    progress: Callable[[str], None],
) -> tuple[dict[str, list[tuple[Sample, np.ndarray]]], list[dict[str, str]], int]:
    """Each class's samples with their embeddings by ``model``: cached, or embedded now.

    Returns (embedded per class, skipped samples with the reason, how many
    were embedded now). Samples whose JPEG is gone and whose only embeddings
    are another base model's: TeachError (they cannot be re-embedded).
    """
    from ..pipeline import Classifier
    from ..sources.files import decode_image

    sha = model.sha256
    key = model_key(sha)
    clf = Classifier.from_config(model, cfg)
    size = (model.input.width, model.input.height)
    total = sum(len(s) for s in classes.values())
    out: dict[str, list[tuple[Sample, np.ndarray]]] = {}
    skipped: list[dict[str, str]] = []
    stranded: dict[str, list[str]] = {}
    fresh = done = 0
    last_note = time.monotonic()
    for cls, samples in classes.items():
        rows: list[tuple[Sample, np.ndarray]] = []
        for s in samples:
            done += 1
            vec = store.embedding(s, sha)
            if vec is None:
                if not s.has_image:
                    others = store.embedded_by(s) - {key}
                    if others:
                        stranded.setdefault(cls, []).append(s.id)
                    else:
                        skipped.append({"sample": s.id, "file": s.path, "reason": "no image"})
                    continue
                try:
                    pixels = decode_image(store.image_bytes(s), size)
                except (TeachError, ValueError) as exc:
                    reason = (
                        str(exc).split(": ", 1)[-1] if isinstance(exc, TeachError) else str(exc)
                    )
                    progress(f"skipped {s.path}: not a readable image ({reason})")
                    skipped.append({"sample": s.id, "file": s.path, "reason": reason})
                    continue
                vec = np.asarray(clf.embed(pixels), dtype=np.float32).reshape(-1)
                store.put_embedding(s, sha, vec)
                fresh += 1
                now = time.monotonic()
                if now - last_note >= 1.0:
                    last_note = now
                    progress(f"embedding {done}/{total}")
            rows.append((s, vec))
        out[cls] = rows
    if stranded:
        listed = "; ".join(f"{c}: {', '.join(ids[:3])}" + (" ..." if len(ids) > 3 else "")
                           for c, ids in stranded.items())  # fmt: skip
        n = sum(len(v) for v in stranded.values())
        raise TeachError(
            f"{n} sample{'s' if n != 1 else ''} were embedded by another base model than"
            f" {model.path} (sha256 {sha[:12]}) and their photos are gone, so they cannot be"
            f" embedded again ({listed}); set model.path (or teach.base_model) back to that"
            " model, or remove them with `edge-daemon teach remove CLASS ID...`"
        )
    return out, skipped, fresh


# -- cross-validation ----------------------------------------------------------
def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint test index sets; each class spread evenly over them."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[(j + offset) % k].append(int(i))
        offset += len(idx)  # the next class starts where this one ended: folds even out
    return [np.array(sorted(f), dtype=np.intp) for f in folds]


def cross_validate(
    X: np.ndarray, y: np.ndarray, classes: list[str], k: int, seed: int = 0
) -> np.ndarray:
    """The k-fold confusion matrix (rows true, columns predicted)."""
    from .head import fit_head, predict_proba

    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    for test in stratified_folds(y, k, seed):
        if len(test) == 0:
            continue
        train_mask = np.ones(len(y), dtype=bool)
        train_mask[test] = False
        head = fit_head(X[train_mask], y[train_mask], classes, seed=seed)
        pred = np.argmax(predict_proba(head, X[test]), axis=1)
        np.add.at(confusion, (y[test], pred), 1)
    return confusion


# -- export, check, install ----------------------------------------------------
def _verify_set(rows: dict[str, list[tuple[Sample, np.ndarray]]]) -> list[tuple[int, Sample]]:
    out: list[tuple[int, Sample]] = []
    for ci, (_cls, items) in enumerate(rows.items()):
        with_image = [s for s, _ in items if s.has_image]
        step = max(1, len(with_image) // VERIFY_PER_CLASS)
        out.extend((ci, s) for s in with_image[::step][:VERIFY_PER_CLASS])
    return out


def check_export(
    cfg: Config,
    model_path: str,
    labels_path: str,
    head: Any,
    store: SampleStore,
    check: list[tuple[int, Sample]],
) -> dict[str, Any]:
    """Load the exported model as the daemon would and run it on samples: how often its
    top-1 agrees with the NumPy layer's on the embedding from the same invoke."""
    from ..engine.model import load_model
    from ..pipeline import Classifier
    from ..sources.files import decode_image
    from .head import predict_proba

    run = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, path=model_path, labels=labels_path)
    )
    try:
        model = load_model(run)
    except EdgeDaemonError as exc:
        raise TeachError(f"the exported model does not load ({exc}); nothing installed") from None
    try:
        outputs = int(np.prod(model.engine.output.shape[1:]))
        if outputs != len(head.classes):
            raise TeachError(
                f"the exported model has {outputs} outputs for {len(head.classes)} classes;"
                " nothing installed"
            )
        clf = Classifier.from_config(model, run)
        size = (model.input.width, model.input.height)
        agree = total = true_hits = 0
        for ci, s in check:
            try:
                pixels = decode_image(store.image_bytes(s), size)
            except (TeachError, ValueError):
                continue
            result = clf.classify(pixels)
            if not result.predictions:
                continue
            top = result.predictions[0].index
            emb = getattr(result, "embedding", None)
            if emb is None:
                emb = clf.embed(pixels)
            want = int(np.argmax(predict_proba(head, np.asarray(emb, np.float32)[None, :])[0]))
            total += 1
            agree += int(top == want)
            true_hits += int(top == ci)
        return {
            "checked": total,
            "agree": agree,
            "ratio": round(agree / total, 4) if total else None,
            "sample_accuracy": round(true_hits / total, 4) if total else None,
            "runtime": model.engine.runtime,
            "delegate": model.engine.delegate,
        }
    finally:
        model.close()


def _write_generation(folder: str, files: dict[str, bytes]) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, data in files.items():
        replace_file(os.path.join(folder, name), data)
    sync_dir(folder)


def _switch(root: str, name: str, target: str) -> None:
    """Point ``root/name`` at ``target`` (relative) in one rename; a copy where
    the file system has no symbolic links."""
    link = os.path.join(root, name)
    tmp = f"{link}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.symlink(target, tmp)
    except OSError:
        with open(os.path.join(root, target), "rb") as f:
            replace_file(link, f.read())
        return
    os.replace(tmp, link)


def install(root: str, folder: str) -> None:
    """Switch ``root/{labels.txt,report.json,model.tflite}`` to ``folder`` (model last)."""
    rel = os.path.relpath(folder, root)
    for name in (LABELS, REPORT, MODEL):  # model.tflite last: the commit point
        _switch(root, name, os.path.join(rel, name))
    sync_dir(root)


def prune(root: str, keep: int = KEEP_GENERATIONS) -> None:
    """Remove generation folders beyond the newest ``keep`` (never the installed one)
    and the unfinished ones a kill left behind."""
    base = os.path.join(root, GENERATIONS)
    try:
        names = sorted(os.listdir(base), reverse=True)
    except OSError:
        return
    current = generation_dir(root)
    kept = 0
    for name in names:
        path = os.path.join(base, name)
        complete = all(os.path.isfile(os.path.join(path, f)) for f in (MODEL, LABELS, REPORT))
        if current is not None and os.path.realpath(path) == os.path.realpath(current):
            kept += 1
            continue
        if complete and kept < keep:
            kept += 1
            continue
        shutil.rmtree(path, ignore_errors=True)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@contextlib.contextmanager
def _one_at_a_time(root: str) -> Iterator[None]:
    """Hold ``root/.train.lock``: a second training at once (the page and the
    command line) is refused rather than left to race the first one's files."""
    import fcntl

    try:
        os.makedirs(root, exist_ok=True)
        fd = os.open(
            os.path.join(root, ".train.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
    except OSError as exc:
        raise TeachError(f"{root}: cannot write there ({exc.strerror}); fix teach.dir") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TeachError(
                f"another training is running on {root}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)  # the lock goes with the descriptor, also when the process is killed


def _refuse_rules(cfg: Config, names: list[str]) -> None:
    """TeachError when an event rule would not resolve on the taught classes.

    With ``teach.use`` the installed model is what the daemon runs next; a rule
    on an ImageNet group or label would make the reload fail, so training
    stops first and says which rule to change.
    """
    if not (cfg.teach.use or names_taught(cfg)):
        return
    from ..events.engine import rules_for
    from ..labels import LabelMap

    try:
        rules_for(cfg, LabelMap(tuple(names), 0, "the taught classes"))
    except ConfigError as exc:
        what = str(exc).split("; ")[0]  # the rule and its label; the advice differs here
        raise TeachError(
            f"{what}; the taught model's labels are only {', '.join(names)}: remove that rule"
            " or make it @any, reload, and train again (rules on the taught classes go in"
            " once the model runs them)"
        ) from None


def train(cfg: Config, *, progress: Callable[[str], None] = _quiet) -> Report:
    """Train the taught model from the samples in ``teach_dir(cfg)`` and install it.

    TeachError (one line, what to do) for: no or too few samples, one class,
    samples stranded on another base model, a base without embeddings, an
    export that does not load or disagrees with the trained layer, another
    training running.
    """
    with _one_at_a_time(teach_dir(cfg)):
        return _train(cfg, progress)


def _train(cfg: Config, progress: Callable[[str], None]) -> Report:
    t_start = time.monotonic()
    root = teach_dir(cfg)
    store = SampleStore(root)
    store.sweep()
    classes = {c: s for c, s in store.classes().items() if s}
    _refuse_counts(classes)
    _refuse_rules(cfg, list(classes))
    from .export import export_model, labels_text
    from .head import fit_head

    model, bcfg = _load_base(cfg)
    try:
        progress(f"base network {model.path} ({model.embedding.dims}-d embeddings)")
        rows, skipped, fresh = embed_samples(store, classes, model, bcfg, progress)
        base_sha = model.sha256
        spec = model.embedding
        base_path = model.path
        delegate = model.engine.delegate
    finally:
        model.close()
    t_embed = time.monotonic()
    _refuse_counts({c: [s for s, _ in rows.get(c, [])] for c in classes})
    rows = {c: r for c, r in rows.items() if r}
    names = list(rows)
    X = np.stack([v for r in rows.values() for _, v in r]).astype(np.float32)
    y = np.concatenate([np.full(len(r), i, dtype=np.intp) for i, r in enumerate(rows.values())])
    counts = {c: len(r) for c, r in rows.items()}
    k = min(FOLDS, min(counts.values()))
    progress(f"cross-validating ({k} folds over {len(y)} samples)")
    confusion = cross_validate(X, y, names, k)
    t_cv = time.monotonic()
    head = fit_head(X, y, names, seed=0)
    t_fit = time.monotonic()
    progress("exporting the model")
    with open(base_path, "rb") as f:
        base_bytes = f.read()
    data = export_model(base_bytes, head, X)
    labels = labels_text(head)
    sha = hashlib.sha256(data).hexdigest()
    now = time.time()
    gen = os.path.join(
        root, GENERATIONS, time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{sha[:8]}"
    )
    t_export = time.monotonic()
    try:
        _write_generation(gen, {MODEL: data, LABELS: labels.encode()})
        t_write = time.monotonic()
        progress("checking the exported model on the samples")
        # The base's delegate: the same network, no need to measure them all again.
        same = [delegate, "cpu"] if delegate in ("xnnpack", "gpu") else ["cpu"]
        check_cfg = dataclasses.replace(
            bcfg, engine=dataclasses.replace(bcfg.engine, delegates=same)
        )
        agreement = check_export(
            check_cfg, os.path.join(gen, MODEL), os.path.join(gen, LABELS), head, store,
            _verify_set(rows),
        )  # fmt: skip
        ratio = agreement["ratio"]
        if ratio is not None and ratio < MIN_AGREEMENT:
            raise TeachError(
                f"the exported model agrees with the trained layer on only"
                f" {agreement['agree']} of {agreement['checked']} samples; not installed"
                " (the previous taught model stays)"
            )
        t_verify = time.monotonic()
        diag = np.diag(confusion)
        per_class = {
            c: round(float(diag[i]) / max(1, int(confusion[i].sum())), 4)
            for i, c in enumerate(names)
        }
        report = Report(
            classes=names,
            counts=counts,
            accuracy=round(float(diag.sum()) / max(1, int(confusion.sum())), 4),
            per_class=per_class,
            confusion=confusion.tolist(),
            folds=k,
            method=str(head.method),
            base={
                "path": base_path,
                "sha256": base_sha,
                "labels": bcfg.model.labels,
                "embedding": {
                    "tensor": spec.tensor,
                    "name": spec.name,
                    "dims": spec.dims,
                    "features_sha256": getattr(spec, "features_sha256", ""),
                },
            },
            model={
                "path": os.path.join(root, MODEL),
                "labels": os.path.join(root, LABELS),
                "sha256": sha,
                "bytes": len(data),
                "generation": os.path.relpath(gen, root),
                "dtype": spec.dtype,
            },
            agreement=agreement,
            date=_iso(now),
            seconds={
                "embed": round(t_embed - t_start, 3),
                "cross_validation": round(t_cv - t_embed, 3),
                "fit": round(t_fit - t_cv, 3),
                "export": round(t_export - t_fit, 3),
                "write": round(t_write - t_export, 3),
                "check": round(t_verify - t_write, 3),
                "total": round(time.monotonic() - t_start, 3),
            },
            embedded=fresh,
            skipped=skipped,
        )
        _write_generation(gen, {REPORT: json.dumps(report.as_json(), indent=1).encode()})
        install(root, gen)
    except BaseException:
        if generation_dir(root) != os.path.realpath(gen):
            shutil.rmtree(gen, ignore_errors=True)
        raise
    prune(root)
    return report
