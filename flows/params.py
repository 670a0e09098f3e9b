"""Flow parameters as pydantic models, so the Prefect UI renders them as forms."""

from __future__ import annotations

from pydantic import BaseModel, Field

from genreclf.audio import SegmentConfig
from genreclf.features import FeatureConfig
from genreclf.training import TrainConfig


class DatasetParams(BaseModel):
    """How tracks become log-mel segments and splits."""

    window_s: float = Field(30.0, gt=0, description="window length in seconds")
    hop_s: float = Field(30.0, gt=0, description="seconds between window starts")
    min_fill: float = Field(0.5, ge=0, le=1, description="keep a padded tail holding this much of a window")
    silence_db: float = Field(-60.0, description="drop windows quieter than this (RMS, dBFS)")
    sample_rate: int = Field(22_050, gt=0)
    n_fft: int = Field(2048, gt=0)
    hop_length: int = Field(512, gt=0)
    n_mels: int = Field(128, gt=0)
    split_seed: int = 0
    shard_mb: float = Field(128.0, gt=0, description="target shard size in MB (64-256 reads well from S3)")
    split_file: str | None = Field(
        None,
        description="predefined split: a CSV/TSV of track_id-or-path,split (local path, file:// or s3://); "
        "tracks it does not list are left out",
    )

    def segment_config(self) -> SegmentConfig:
        return SegmentConfig(
            sample_rate=self.sample_rate, window_s=self.window_s, hop_s=self.hop_s, min_fill=self.min_fill,
            silence_db=self.silence_db,
        )  # fmt: skip

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(
            sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels
        )

    @classmethod
    def small(cls) -> DatasetParams:
        """Short windows and fewer mels: a CPU-sized dataset for demos and smoke runs."""
        return cls(window_s=3.0, hop_s=1.5, n_mels=64, n_fft=1024, hop_length=512)


class TrainParams(BaseModel):
    """How the model is trained (see genreclf.training.TrainConfig)."""

    model: str = "resnet18"
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    crop_s: float = Field(3.0, gt=0, description="seconds per random training crop")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    specaugment: bool = True
    mixup_alpha: float = Field(0.0, ge=0, description="0 turns mixup off")
    patience: int = Field(5, gt=0)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    device: str | None = Field(None, description="cpu, cuda, cuda:1; empty picks CUDA when there is one")

    def config(self) -> TrainConfig:
        return TrainConfig(**self.model_dump())

    @classmethod
    def small(cls) -> TrainParams:
        """A few epochs on 2-second crops: minutes on a laptop CPU."""
        return cls(epochs=8, batch_size=16, crop_s=2.0, lr=3e-3, patience=8)
