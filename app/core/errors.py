"""Exceptions for problems a user can cause: each message says what was wrong and what to do."""

from __future__ import annotations


class FerStudioError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class ModelLoadError(FerStudioError):
    """A model file is missing, corrupt, or not an image classifier this program can use."""


class UnsafeModelError(ModelLoadError):
    """A model file embeds Python code (a Lambda layer, say) and --trust-model was not given."""


class ImageReadError(FerStudioError):
    """An image file is missing, empty, truncated or not an image."""


class DatasetError(FerStudioError):
    """A data set (CSV or folder) is malformed, empty or unusable for training."""


class SourceError(FerStudioError):
    """A camera, video file or stream cannot be opened or stopped delivering frames."""


class OutputError(FerStudioError):
    """An output file or folder cannot be written."""


class DetectorError(FerStudioError):
    """A face detector is unknown or cannot run here (dlib / face_recognition not installed, say)."""
