"""Out-of-fold judgement of every track: probabilities from models that never saw its artist or a copy of it, then
cleanlab's confident learning for labels the audio disputes and its outlier scores."""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from genreclf.datasets.splits import UnionFind
from genreclf.errors import DataError

if TYPE_CHECKING:
    from genreclf.labels.audit import AuditConfig


def groups_of(n: int, artists: list[str | None], pairs: list[tuple[int, int]]) -> np.ndarray:
    """(n,) group of each track: tracks of one artist, and copies of one recording, share a group, so that no
    model scores a track after training on its artist or on another copy of it."""
    uf: UnionFind[int] = UnionFind()
    first: dict[str, int] = {}
    for i, artist in enumerate(artists):
        if artist is not None:
            uf.union(i, first.setdefault(artist, i))
    for a, b in pairs:
        uf.union(a, b)
    return np.array([uf.find(i) for i in range(n)])


def out_of_fold_probabilities(
    crop_features: np.ndarray, crop_track: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
    num_classes: int, cfg: AuditConfig,
) -> np.ndarray:  # fmt: skip
    """(tracks, num_classes) probabilities of each track from models that never saw its group.

    Group k-fold, stratified by genre, `cfg.repeats` times with different assignments, averaged; a track's
    probabilities are the mean over its crops. A genre missing from a fold's training tracks gets probability 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(labels)
    folds = min(cfg.folds, len(np.unique(groups)))
    if folds < 2:
        raise DataError(f"{n} tracks in {folds} artist group: an audit needs tracks of at least 2 artists")
    crop_labels = labels[crop_track]
    total = np.zeros((n, num_classes))
    for r in range(cfg.repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=cfg.seed + r)
        with warnings.catch_warnings():  # a genre with fewer tracks than folds: sklearn warns, and copes
            warnings.simplefilter("ignore", UserWarning)
            assignments = list(splitter.split(np.zeros(n), labels, groups))
        for train, test in assignments:
            fit_rows = np.isin(crop_track, train)
            test_rows = np.isin(crop_track, test)
            model = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.regularization, max_iter=2000))
            model.fit(crop_features[fit_rows], crop_labels[fit_rows])
            p = np.zeros((int(test_rows.sum()), num_classes))
            p[:, model.classes_] = model.predict_proba(crop_features[test_rows])
            sums = np.zeros((n, num_classes))
            np.add.at(sums, crop_track[test_rows], p)
            counts = np.bincount(crop_track[test_rows], minlength=n)
            total[test] += sums[test] / counts[test, None]
    return total / cfg.repeats


# --- the verdicts --------------------------------------------------------------------------------------------


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a cleanlab function without its progress prints and warnings on stdout."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning on out-of-fold probabilities -> ((tracks,) flagged, (tracks,) self-confidence)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = _quiet(get_label_quality_scores, labels, probs, method="self_confidence")
    present = np.unique(labels)
    if len(present) < 2:
        return np.zeros(len(labels), bool), quality
    # cleanlab wants every class it is given to hold a track: judge among the genres that have some.
    local = np.searchsorted(present, labels)
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    # n_jobs=1: cleanlab otherwise forks a multiprocessing pool, which can deadlock in a process that runs threads
    # (a Prefect worker's flow run hung for minutes on it in CI); the work is per genre and small.
    flagged = _quiet(find_label_issues, local, sub, filter_by="prune_by_noise_rate", n_jobs=1)
    return np.asarray(flagged, bool), np.asarray(quality, float)


def outlier_scores(crop_features: np.ndarray, crop_track: np.ndarray, n: int) -> np.ndarray:
    """(tracks,) cleanlab's out-of-distribution score of each track's mean features: low = unlike the others."""
    from cleanlab.outlier import OutOfDistribution
    from sklearn.preprocessing import StandardScaler

    sums = np.zeros((n, crop_features.shape[1]))
    np.add.at(sums, crop_track, crop_features)
    x = StandardScaler().fit_transform(sums / np.bincount(crop_track, minlength=n)[:, None])
    if n < 3:
        return np.ones(n)
    ood = OutOfDistribution(params={"k": min(10, n - 1)})
    return np.asarray(_quiet(ood.fit_score, features=x), float)
