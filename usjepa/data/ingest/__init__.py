"""Raw ultrasound datasets to corpus frames and manifests (``usjepa data build``)."""

from usjepa.data.ingest.builder import BuildReport, build_dataset, merge_parts
from usjepa.data.ingest.readers import FramePolicy, SourceError, iter_frames, source_kind

__all__ = [
    "BuildReport",
    "FramePolicy",
    "SourceError",
    "build_dataset",
    "iter_frames",
    "merge_parts",
    "source_kind",
]
