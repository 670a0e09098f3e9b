"""Baselines on per-segment summary features: kNN (k=55) and a two-layer MLP, with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from genreclf.errors import ModelError

BASELINES = ("knn", "mlp")


def summary_features(mel: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Mean and std of each mel band: (n, n_mels, frames) -> (n, 2 * n_mels) float32."""
    out = []
    for i in range(0, len(mel), chunk):
        part = mel[i : i + chunk].astype(np.float32)
        out.append(np.concatenate([part.mean(axis=2), part.std(axis=2)], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2 * mel.shape[1]), np.float32)


def knn_k(n_train: int, num_classes: int, k: int = 55) -> int:
    """k=55 as in the seed report, capped at the mean training examples per class: with fewer, the vote of 55
    neighbours is mostly other classes (a tiny dataset would score chance)."""
    return max(1, min(k, n_train // max(1, num_classes)))


def create_baseline(name: str, *, n_train: int, num_classes: int, seed: int = 0, hidden: int = 256) -> Pipeline:
    """An unfitted scikit-learn pipeline (standardise -> classifier)."""
    if name == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=knn_k(n_train, num_classes)))
    if name == "mlp":
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", max_iter=300, random_state=seed)
        return make_pipeline(StandardScaler(), mlp)
    raise ModelError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")


def class_probabilities(model: Pipeline, x: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba spread over all `num_classes` columns (a class absent from training gets 0)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), num_classes), np.float64)
    out[:, model.classes_.astype(int)] = proba
    return out
