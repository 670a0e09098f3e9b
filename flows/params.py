"""Flow parameters as pydantic models derived from the library's config dataclasses, so the Prefect UI renders forms.

Every field's name, type and default is the dataclass's (`TrainConfig`, `SegmentConfig`, `FeatureConfig`): a field
added there is a flow parameter at once. What is declared here is only what a dataclass cannot say: the checks and
help text of the form, by field name, and the parameters of the build that are no config's.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.dataset import plan_dataset
from genreclf.datasets.features import FeatureConfig
from genreclf.labels.audit import AuditConfig
from genreclf.models.runs import TrainConfig

C = TypeVar("C")


def config_fields(*configs: type, checks: Mapping[str, FieldInfo]) -> dict[str, Any]:
    """`create_model` field definitions of every field of the dataclasses `configs`: the dataclass's type and default,
    annotated with the check of the same name. A name in two configs (`sample_rate`) is one field feeding both, so it
    must have the same type and default in each; a check naming no field is an error too."""
    out: dict[str, Any] = {}
    first: dict[str, type] = {}
    for config in configs:
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = Field(default_factory=f.default_factory)
            else:
                default = ...  # required
            if f.name in first:
                other = next(g for g in dataclasses.fields(first[f.name]) if g.name == f.name)
                if (other.type, other.default, other.default_factory) != (f.type, f.default, f.default_factory):
                    raise TypeError(
                        f"{first[f.name].__name__}.{f.name} and {config.__name__}.{f.name} differ in type or "
                        "default: one flow parameter cannot feed both"
                    )
                continue
            first[f.name] = config
            check = checks.get(f.name)
            out[f.name] = (Annotated[hints[f.name], check] if check else hints[f.name], default)
    if unknown := sorted(set(checks) - set(out)):
        raise TypeError(f"checks of fields that no config has: {', '.join(unknown)}")
    return out


def build(config: type[C], params: BaseModel) -> C:
    """The dataclass `config` with the values of its fields in `params`."""
    return config(**{f.name: getattr(params, f.name) for f in dataclasses.fields(config)})  # type: ignore[arg-type]


def default_of(fn: Any, name: str) -> Any:
    """The default of a library function's keyword, so that it stays declared once, there."""
    default = inspect.signature(fn).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{fn.__qualname__}() has no default for {name}")
    return default


DATASET_CHECKS: dict[str, FieldInfo] = {
    "sample_rate": Field(gt=0, description="Hz, of the decoded audio and of the spectrograms"),
    "window_s": Field(gt=0, description="window length in seconds"),
    "hop_s": Field(gt=0, description="seconds between window starts"),
    "min_fill": Field(ge=0, le=1, description="keep a padded tail holding this much of a window"),
    "silence_db": Field(description="drop windows quieter than this (RMS, dBFS)"),
    "max_seconds": Field(gt=0, description="decode at most this much of a track"),
    "n_fft": Field(gt=0),
    "hop_length": Field(gt=0),
    "n_mels": Field(gt=0),
    "fmin": Field(ge=0, description="lowest mel frequency, Hz"),
    "fmax": Field(gt=0, description="highest mel frequency, Hz; empty: sample_rate / 2"),
    "log_offset": Field(gt=0, description="log(mel + log_offset)"),
    "compression": Field(description="log: log(mel + log_offset); log10: log10(1 + 10000 mel), musicnn's input"),
}

TRAIN_CHECKS: dict[str, FieldInfo] = {
    "model": Field(description="resnet18, small_cnn, or a head on a pretrained network: musicnn-msd, musicnn-mtt"),
    "finetune": Field(description="pretrained models: fine-tune the whole network (else a head on frozen embeddings)"),
    "head_refit": Field(description="frozen heads: refit the head chosen on val on train + val"),
    "backbone_lr_scale": Field(gt=0, description="fine-tuning: the pretrained network's lr as a fraction of lr"),
    "epochs": Field(gt=0),
    "batch_size": Field(gt=0),
    "lr": Field(gt=0),
    "weight_decay": Field(ge=0),
    "schedule": Field(description="onecycle or cosine"),
    "crop_s": Field(gt=0, description="seconds per random training crop"),
    "crops_per_segment": Field(ge=1, description="random crops of each training segment an epoch sees"),
    "eval_crops": Field(description="score segments as the mean of crop-long windows (else whole)"),
    "gain_db": Field(ge=0, description="random gain of each training crop, +-dB; 0 turns it off"),
    "init_from": Field(description="a finished run whose model starts this one (fine-tuning); empty: random"),
    "label_smoothing": Field(ge=0, lt=1),
    "dropout": Field(ge=0, lt=1),
    "freq_mask": Field(ge=0, description="widest SpecAugment frequency mask, in mel bands"),
    "time_mask": Field(ge=0, description="widest SpecAugment time mask, in frames"),
    "mixup_alpha": Field(ge=0, description="0 turns mixup off"),
    "patience": Field(gt=0, description="epochs without a better validation accuracy before stopping; empty: none"),
    "num_workers": Field(ge=0),
    "device": Field(description="cpu, cuda, cuda:1; empty: GENRECLF_DEVICE, else CUDA when there is one"),
    "max_steps_per_epoch": Field(gt=0, description="cap for smoke runs; empty: no cap"),
    "amp": Field(description="bf16 autocast on CUDA"),
    "channels_last": Field(description="NHWC memory format on CUDA"),
    "shuffle_buffer": Field(gt=0, description="segments each loader worker holds to shuffle across row groups"),
}


def derived_model(name: str, *configs: type, checks: Mapping[str, FieldInfo]) -> Any:
    """A pydantic model of the fields of `configs` (see `config_fields`), to subclass with presets and builders.
    Typed Any: its fields are made at import, and mypy takes them for whatever pydantic makes them."""
    return create_model(name, __module__=__name__, **config_fields(*configs, checks=checks))


_DatasetFields: Any = derived_model("DatasetFields", SegmentConfig, FeatureConfig, checks=DATASET_CHECKS)


class DatasetParams(_DatasetFields):
    """How tracks become log-mel segments and splits: the fields of SegmentConfig and FeatureConfig, and the build's."""

    split_seed: int = 0
    shard_mb: float = Field(
        default_of(plan_dataset, "shard_mb"), gt=0, description="target shard size in MB (64-256 reads well from S3)"
    )
    split_file: str | None = Field(
        None,
        description="predefined split: a CSV/TSV of track_id-or-path,split (local path, file:// or s3://); "
        "tracks it does not list are left out",
    )
    feature_sample_rate: int | None = Field(
        None, gt=0, description="Hz of the spectrograms when not sample_rate: the decoded audio is resampled"
    )

    def segment_config(self) -> SegmentConfig:
        return build(SegmentConfig, self)

    def feature_config(self) -> FeatureConfig:
        cfg = build(FeatureConfig, self)
        return dataclasses.replace(cfg, sample_rate=self.feature_sample_rate or cfg.sample_rate)

    def for_model(self, model: str) -> DatasetParams:
        """These params with the features `model` needs: a pretrained network's input (musicnn's 16 kHz, 96-mel
        log10 spectrogram) from the same decoded audio; other models keep these."""
        from genreclf.models import input_features

        feat = input_features(model)
        if feat is None:
            return self
        fields = {f.name: getattr(feat, f.name) for f in dataclasses.fields(feat) if f.name != "sample_rate"}
        return self.model_copy(update={**fields, "feature_sample_rate": feat.sample_rate})

    @classmethod
    def small(cls) -> DatasetParams:
        """Short windows and fewer mels: a CPU-sized dataset for demos and smoke runs."""
        return cls(window_s=3.0, hop_s=1.5, n_mels=64, n_fft=1024, hop_length=512)


_TrainFields: Any = derived_model("TrainFields", TrainConfig, checks=TRAIN_CHECKS)


class TrainParams(_TrainFields):
    """How the model is trained: the fields of genreclf.models.runs.TrainConfig."""

    def config(self) -> TrainConfig:
        return build(TrainConfig, self)

    @classmethod
    def small(cls) -> TrainParams:
        """A few epochs on 2-second crops: minutes on a laptop CPU."""
        return cls(epochs=8, batch_size=16, crop_s=2.0, crops_per_segment=1, lr=3e-3, patience=8)


AUDIT_CHECKS: dict[str, FieldInfo] = {
    "folds": Field(ge=2, description="k of the out-of-fold predictions (no track is scored by a model that saw it)"),
    "repeats": Field(ge=1, description="k-fold runs with different fold assignments, averaged"),
    "seed": Field(description="seed of the fold assignments"),
    "crop_s": Field(gt=0, description="seconds per crop the summary features are taken over"),
    "regularization": Field(gt=0, description="inverse L2 strength of the logistic regression"),
    "min_similarity": Field(ge=0, le=1, description="near-duplicates: how alike two recordings must be"),
    "min_overlap_s": Field(gt=0, description="near-duplicates: seconds of audio they must share"),
    "outlier_fraction": Field(ge=0, lt=1, description="fraction of tracks flagged as outliers"),
}

_AuditFields: Any = derived_model("AuditFields", AuditConfig, checks=AUDIT_CHECKS)


class AuditParams(_AuditFields):
    """How the label audit judges tracks: the fields of genreclf.labels.audit.AuditConfig."""

    def config(self) -> AuditConfig:
        return build(AuditConfig, self)
