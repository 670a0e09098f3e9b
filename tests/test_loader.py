"""The normalisation statistics training streams over its split (genreclf.datasets.loader.Normalizer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genreclf.datasets.loader import Normalizer
from genreclf.errors import DataError


def test_normalizer_fit_stream_matches_numpy(rng: np.random.Generator) -> None:
    mel = rng.normal(-5, 3, (7, 5, 11)).astype(np.float32) + np.arange(5, dtype=np.float32)[:, None]

    norm = Normalizer.fit_stream([mel[:3], torch.from_numpy(mel[3:6]), mel[6:]])  # arrays or tensors, in parts

    np.testing.assert_allclose(norm.mean, mel.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(norm.std, mel.std(axis=(0, 2)), rtol=1e-4)
    assert norm.mean.dtype == norm.std.dtype == np.float32


def test_normalizer_fit_on_float16_does_not_overflow(rng: np.random.Generator) -> None:
    mel = rng.uniform(-60_000, 60_000, (4, 3, 50)).astype(np.float16)  # squares overflow float16

    norm = Normalizer.fit_stream([mel[:2], mel[2:]])

    expected = mel.astype(np.float64)
    np.testing.assert_allclose(norm.mean, expected.mean(axis=(0, 2)), rtol=1e-4)
    np.testing.assert_allclose(norm.std, expected.std(axis=(0, 2)), rtol=1e-4)


def test_normalizer_of_a_constant_band_has_a_floor() -> None:
    norm = Normalizer.fit_stream([np.full((2, 3, 4), 7.0, np.float32)])

    assert (norm.std > 0).all()
    assert torch.isfinite(norm.apply(torch.full((3, 4), 7.0))).all()


def test_normalizer_apply_gives_zero_mean_unit_std(rng: np.random.Generator) -> None:
    mel = rng.normal(-5, 3, (20, 4, 30)).astype(np.float32)
    norm = Normalizer.fit_stream([mel])

    out = norm.apply(torch.from_numpy(mel).half())  # (20, 4, 30)

    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.mean(dim=(0, 2)).numpy(), 0, atol=0.01)
    np.testing.assert_allclose(out.std(dim=(0, 2), correction=0).numpy(), 1, atol=0.01)


def test_normalizer_dict_round_trip(rng: np.random.Generator) -> None:
    norm = Normalizer.fit_stream([rng.normal(size=(3, 4, 5)).astype(np.float32)])

    back = Normalizer.from_dict(norm.to_dict())

    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)


def test_normalizer_of_an_empty_split_is_refused() -> None:
    with pytest.raises(DataError, match="empty"):
        Normalizer.fit_stream([np.zeros((0, 4, 5), np.float32)])
