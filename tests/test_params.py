"""Flow parameters are derived from the library's configs: every field, its default, one sample_rate (no server)."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import Field, ValidationError

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.dataset import plan_dataset
from genreclf.datasets.features import FeatureConfig
from genreclf.flows.params import DatasetParams, TrainParams, derived_model
from genreclf.models.runs import TrainConfig

# Dataset parameters that are no config's field (feature_sample_rate overrides FeatureConfig.sample_rate).
BUILD_ONLY = {"split_seed", "shard_mb", "split_file", "feature_sample_rate"}


def names(*configs: type) -> set[str]:
    return {f.name for c in configs for f in dataclasses.fields(c)}


def test_train_params_are_every_field_of_train_config_with_its_default() -> None:
    assert set(TrainParams.model_fields) == names(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        assert TrainParams.model_fields[f.name].default == f.default, f.name
    assert TrainParams().config() == TrainConfig()


def test_dataset_params_are_every_field_of_both_configs_with_their_defaults() -> None:
    assert set(DatasetParams.model_fields) == names(SegmentConfig, FeatureConfig) | BUILD_ONLY
    for f in [*dataclasses.fields(SegmentConfig), *dataclasses.fields(FeatureConfig)]:
        assert DatasetParams.model_fields[f.name].default == f.default, f.name
    params = DatasetParams()
    assert params.segment_config() == SegmentConfig() and params.feature_config() == FeatureConfig()
    assert params.shard_mb == inspect.signature(plan_dataset).parameters["shard_mb"].default


@pytest.mark.parametrize(
    ("params", "build"),
    [
        (TrainParams(), lambda p: [p.config()]),
        (DatasetParams(), lambda p: [p.segment_config(), p.feature_config()]),
    ],
    ids=["train", "dataset"],
)
def test_every_parameter_reaches_the_configs(params: Any, build: Any) -> None:
    for name in set(type(params).model_fields) - BUILD_ONLY:
        marker = object()  # model_copy does not validate: any value travels
        configs = [c for c in build(params.model_copy(update={name: marker})) if name in names(type(c))]
        assert configs and all(getattr(c, name) is marker for c in configs), name


def test_one_sample_rate_feeds_both_configs() -> None:
    params = DatasetParams(sample_rate=16_000)
    assert params.segment_config().sample_rate == params.feature_config().sample_rate == 16_000
    # Spectrograms at another rate than the decoded audio: a pretrained network's input, from the same audio.
    params = DatasetParams(feature_sample_rate=16_000)
    assert (params.segment_config().sample_rate, params.feature_config().sample_rate) == (22_050, 16_000)


def test_a_pretrained_model_gets_its_networks_features_and_others_keep_theirs() -> None:
    from genreclf.models.musicnn import FEATURES

    small = DatasetParams.small()
    musicnn = small.for_model("musicnn-msd")
    assert musicnn.feature_config() == FEATURES
    assert musicnn.segment_config() == small.segment_config()  # same decoded audio and windows
    assert small.for_model("resnet18") == small


def test_a_field_added_to_a_config_is_a_parameter_and_configs_that_disagree_are_refused() -> None:
    @dataclass(frozen=True)
    class Grown:
        sample_rate: int = 22_050
        new_knob: float | None = 0.25

    model = derived_model("GrownFields", Grown, FeatureConfig, checks={"new_knob": Field(gt=0)})
    assert set(model.model_fields) == names(Grown, FeatureConfig)
    assert model().new_knob == 0.25 and model(new_knob=None).new_knob is None
    with pytest.raises(ValidationError):
        model(new_knob=-1.0)

    @dataclass(frozen=True)
    class Other:
        sample_rate: int = 16_000

    with pytest.raises(TypeError, match=r"Other\.sample_rate and FeatureConfig\.sample_rate differ"):
        derived_model("Bad", Other, FeatureConfig, checks={})
    with pytest.raises(TypeError, match="no config has: gone"):
        derived_model("Stale", TrainConfig, checks={"gone": Field(gt=0)})


def test_presets_checks_and_copies_keep_working() -> None:
    small = TrainParams.small().model_copy(update={"epochs": 6, "device": "cpu"})
    assert small.config() == dataclasses.replace(
        TrainConfig(), epochs=6, batch_size=16, crop_s=2.0, crops_per_segment=1, lr=3e-3, patience=8, device="cpu"
    )
    seg, feat = DatasetParams.small().segment_config(), DatasetParams.small().feature_config()
    assert (seg.window_s, seg.hop_s, feat.n_mels, feat.n_fft, feat.hop_length) == (3.0, 1.5, 64, 1024, 512)
    for bad in ({"epochs": 0}, {"label_smoothing": 1.0}, {"max_steps_per_epoch": 0}, {"crops_per_segment": 0}):
        with pytest.raises(ValidationError):
            TrainParams(**bad)
    for bad in ({"min_fill": 2.0}, {"sample_rate": 0}, {"fmax": -1.0}):
        with pytest.raises(ValidationError):
            DatasetParams(**bad)


def test_flows_take_the_parameters_as_json_and_the_ui_gets_a_form_of_every_field() -> None:
    from genreclf.flows.pipeline import pipeline
    from genreclf.flows.train import train

    given = {"dataset_id": "latest", "params": {"epochs": 5, "dropout": 0.5, "device": "cpu"}}
    params = train.validate_parameters(given)["params"]
    assert isinstance(params, TrainParams)
    assert params.config() == dataclasses.replace(TrainConfig(), epochs=5, dropout=0.5, device="cpu")
    got = pipeline.validate_parameters(
        {"catalog_dir": "x", "dataset": {"sample_rate": 16_000, "split_seed": 3}, "training": {"epochs": 2}}
    )
    assert got["dataset"].feature_config().sample_rate == 16_000 and got["dataset"].split_seed == 3

    forms = pipeline.parameters.model_dump()["definitions"]
    assert set(forms["TrainParams"]["properties"]) == names(TrainConfig)
    assert set(forms["DatasetParams"]["properties"]) == names(SegmentConfig, FeatureConfig) | BUILD_ONLY
    assert forms["TrainParams"]["properties"]["epochs"]["exclusiveMinimum"] == 0
