"""Pydantic records passed between stages (and stored in shards, catalog and manifests)."""

from ephys.schemas.config import IngestConfig, Montage
from ephys.schemas.epoch import EpochAnnotation, EpochMeta, EpochQC, EpochStage
from ephys.schemas.failure import Failure, RecordingStatus
from ephys.schemas.manifest import Manifest, ManifestShard
from ephys.schemas.recording import Annotation, ChannelInfo, RecordingHeader, Segment
from ephys.schemas.result import EpochRecord, RecordingResult
from ephys.schemas.shard import ShardInfo

__all__ = [
    "Annotation",
    "ChannelInfo",
    "EpochAnnotation",
    "EpochStage",
    "EpochMeta",
    "EpochQC",
    "EpochRecord",
    "Failure",
    "IngestConfig",
    "Manifest",
    "ManifestShard",
    "Montage",
    "RecordingHeader",
    "RecordingResult",
    "RecordingStatus",
    "Segment",
    "ShardInfo",
]
