"""``fer-studio analyze VIDEO...``: every face in every frame of video files -> CSV, summary, report.

Each video gets its own new folder under ``--out`` (faces.csv, summary.json, report.html, optionally
annotated.mp4); nothing existing is overwritten. Several videos, or folders of them, are analysed one
after another; a bad one is reported in one line and the rest go on (exit code 1 when any failed).
Ctrl-C (or SIGTERM) stops the current video cleanly, keeping a valid CSV and writing the summary and
report of what was done (exit code 130). On a terminal a progress bar is drawn on stderr; otherwise
plain progress lines; ``--events jsonl`` prints one JSON object per line on stdout instead (for the GUI).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from app.core.errors import FerStudioError

logger = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    from app.commands.detection_options import (
        add_detection_arguments,
        add_tta_argument,
        add_uncertainty_argument,
    )
    from app.core.model_io import NORMALISATIONS

    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument("--out", default="analysis", metavar="DIR",
                        help="folder for the results, one new sub-folder per video (default: ./analysis)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="analyse every Nth frame (default 1)")
    parser.add_argument("--model", help="model file (.h5, .hdf5 or .keras); default: the bundled model")
    add_detection_arguments(parser)
    parser.add_argument("--detect-size", type=int, default=None, metavar="PX",
                        help="longer side of the copy of each frame searched for faces; smaller is faster but "
                             "misses small faces; 0 = the detector's photo setting (default: as the live view)")
    parser.add_argument("--detect-threads", type=int, default=2, metavar="N",
                        help="threads detecting faces ahead of the classifier (default 2; 1 = in line)")
    add_tta_argument(parser)
    add_uncertainty_argument(parser)
    parser.add_argument("--annotated-video", action="store_true", help="also write annotated.mp4")
    parser.add_argument("--no-reid", action="store_true",
                        help="do not re-identify people by their faces (a face back after a gap gets a new number)")
    parser.add_argument("--events", choices=("jsonl",), help="print progress as JSON lines on stdout (for programs)")
    parser.add_argument("--trust-model", action="store_true",
                        help="load a model that embeds Python code (Lambda layers); only for trusted files")
    parser.add_argument("--labels", help="comma-separated class names in the model's output order")
    parser.add_argument("--normalization", choices=NORMALISATIONS,
                        help="pixel scaling the model expects (default: the file's, else minus1_1)")


class _Output:
    """Progress and results on the terminal, as plain lines, or as JSON lines (``--events jsonl``)."""

    def __init__(self, events: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.events = events
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.tty = not events and self.err.isatty()
        self._last = 0.0
        self._bar_shown = False

    def event(self, kind: str, **fields: Any) -> None:
        if self.events:
            self.out.write(json.dumps({"event": kind, **fields}, ensure_ascii=False) + "\n")
            self.out.flush()

    def progress(self, name: str, p: Any, force: bool = False) -> None:
        now = time.monotonic()
        interval = 0.1 if self.tty else (0.5 if self.events else 5.0)
        if not force and now - self._last < interval:
            return
        self._last = now
        eta = p.eta_s
        if self.events:
            self.event("progress", video=name, frames_read=p.frames_read, total=p.total, analysed=p.analysed,
                       faces=p.faces, people=p.people, fps=round(p.fps, 2),
                       eta_s=None if eta is None else round(eta, 1))
            return
        done = f"{p.frames_read}/{p.total}" if p.total else f"{p.frames_read}"
        people = f"{p.people} {'person' if p.people == 1 else 'people'}"
        tail = f"{done} frames  {p.fps:5.1f} fps  ETA {_clock(eta)}  {people}"
        if self.tty:
            width = 24
            fill = int(width * min(1.0, p.frames_read / p.total)) if p.total else 0
            self.err.write(f"\r{name[-28:]:<28} [{'#' * fill}{'.' * (width - fill)}] {tail}\x1b[K")
            self._bar_shown = True
        else:
            self.err.write(f"{name}: {tail}\n")
        self.err.flush()

    def end_bar(self) -> None:
        if self._bar_shown:
            self.err.write("\n")
            self.err.flush()
            self._bar_shown = False

    def result(self, name: str, result: Any) -> None:
        self.end_bar()
        if self.events:
            self.event("video_done", video=name, status=result.status, folder=str(result.folder),
                       files=result.files, frames=result.frames_analysed, faces=result.faces,
                       people=result.people, seconds=round(result.seconds, 2), notes=result.notes,
                       error=result.error)
            return
        speed = f"{result.speed:.1f} frames/s"
        self.out.write(f"{name}: {result.frames_analysed} frames, {result.faces} faces, {result.people} "
                       f"{'person' if result.people == 1 else 'people'} in {result.seconds:.1f} s ({speed})"
                       f"{'' if result.status == 'done' else f' [{result.status}]'}\n"
                       f"  report: {result.files.get('report', '-')}\n  csv: {result.files['csv']}\n")
        if "annotated_video" in result.files:
            self.out.write(f"  annotated video: {result.files['annotated_video']}\n")
        self.out.flush()
        for note in result.notes:
            self.err.write(f"  note: {note}\n")
        if result.error:
            self.err.write(f"fer-studio analyze: error: {name}: {result.error}\n")
        self.err.flush()

    def failure(self, name: str, message: str) -> None:
        self.end_bar()
        if self.events:
            self.event("video_error", video=name, message=message)
        else:
            self.err.write(f"fer-studio analyze: error: {message}\n")
            self.err.flush()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def _install_stop(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C / SIGTERM set ``stop``; a second Ctrl-C interrupts at once. Returns the old handlers."""
    old: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    return old


def run(args: argparse.Namespace) -> int:
    from app.core.analysis import AnalysisOptions, analyze_video
    from app.core.analysis.outputs import prepare_parent
    from app.core.analysis.video import list_videos, quiet_ffmpeg

    if args.every < 1:
        raise FerStudioError(f"--every must be 1 or more, got {args.every}.")
    if args.detect_threads < 1:
        raise FerStudioError(f"--detect-threads must be 1 or more, got {args.detect_threads}.")
    quiet_ffmpeg()
    output = _Output(args.events == "jsonl")
    jobs = list_videos(args.videos)
    output.event("start", videos=[name for name, _, _ in jobs], out=str(args.out))
    prepare_parent(args.out)  # an unwritable --out is reported once, before the model is loaded
    pipeline, model_name, make_detector = _build_pipeline(args)
    output.event("ready", model=model_name, detector=args.detector)
    options = AnalysisOptions(every=args.every, annotated_video=args.annotated_video, model_name=model_name,
                              detector=args.detector, tta=pipeline.classifier.tta, reid=not args.no_reid,
                              detect_workers=args.detect_threads)
    stop = threading.Event()
    old_handlers = _install_stop(stop)
    failures = interrupted = 0
    try:
        for index, (name, path, problem) in enumerate(jobs):
            if stop.is_set():
                break
            if problem is not None or path is None:
                failures += 1
                output.failure(name, problem or f"{name}: not found.")
                continue
            output.event("video_start", video=name, index=index, count=len(jobs))
            try:
                result = analyze_video(path, args.out, pipeline, options, stop=stop, make_detector=make_detector,
                                       on_progress=lambda p, n=name: output.progress(n, p))
            except FerStudioError as exc:
                failures += 1
                output.failure(name, str(exc))
                continue
            except Exception as exc:  # one broken video must not end the batch
                logger.debug("unexpected error on %s", path, exc_info=True)
                failures += 1
                output.failure(name, f"{name}: unexpected {type(exc).__name__}: {exc}")
                continue
            output.result(name, result)
            interrupted += result.status == "interrupted"
            failures += result.status == "partial"
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    output.event("done", videos=len(jobs), failed=failures, interrupted=bool(interrupted or stop.is_set()))
    if interrupted or stop.is_set():
        if not output.events:
            output.err.write("fer-studio analyze: interrupted; the results so far are kept.\n")
        return 130
    return 1 if failures else 0


def _build_pipeline(args: argparse.Namespace) -> tuple[Any, str, Any]:
    from app.commands.detection_options import detection_kwargs
    from app.core.analysis.runner import build_analysis_pipeline, detector_factory
    from app.core.labels import parse_labels
    from app.core.model_io import default_model_path

    model = args.model or default_model_path()
    if model is None:
        raise FerStudioError("no model given and no default model is bundled; pass --model FILE.")
    if args.detect_size is not None and 0 < args.detect_size < 32:
        raise FerStudioError(f"--detect-size must be 0 or at least 32 pixels, got {args.detect_size}.")
    options = detection_kwargs(args)
    detector = options.pop("detector")
    pipeline = build_analysis_pipeline(model, detector, args.detect_size, args.tta,
                                       trust=args.trust_model, labels=parse_labels(args.labels),
                                       normalization=args.normalization, uncertain_below=args.uncertain_below,
                                       **options)
    # dlib's CNN is one shared model that takes seconds a frame: no second thread for it.
    make_detector = detector_factory(detector, args.detect_size) if detector != "cnn" else None
    return pipeline, Path(str(model)).name, make_detector
