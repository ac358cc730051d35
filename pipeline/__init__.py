"""image-versions: an analytics-ready copy of SageMaker image-version metadata (the core,
without Dagster)."""

from importlib import metadata

__all__ = ["DISTRIBUTION", "__version__"]

DISTRIBUTION = "sagemaker-image-versions"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "unknown (not installed)"
