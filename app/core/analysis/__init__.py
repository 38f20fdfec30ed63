"""A whole video file -> a timestamped CSV of every face, a summary and a report a person reads.

``video`` reads the file (checks, a reader thread, timestamps, rotation), ``outputs`` writes the CSV and
the annotated video into a new folder, ``summary`` gathers per-person statistics in bounded memory,
``report`` renders the HTML page and ``runner`` ties them to the recognition pipeline.
"""

from app.core.analysis.runner import (
    AnalysisOptions,
    AnalysisResult,
    Progress,
    analyze_video,
)

__all__ = ["AnalysisOptions", "AnalysisResult", "Progress", "analyze_video"]
