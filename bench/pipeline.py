"""End-to-end pipeline benchmark on a video: frames/s and p50/p95 ms per stage at 640x480, RSS start/end.

    python bench/pipeline.py --video ../shared/media/video/woman2.mp4 [--detector hog] [--frames N] [--json]
    python bench/pipeline.py --video FILE --detector hog --frames 10000      # the soak run (RSS growth)

Each frame is read from the file (looping), resized to 640x480 and run through the camera worker's own
core path (:class:`app.core.recognition.recognizer.Recognizer`: detect -> filter -> align -> classify ->
track), with no frame pacing and no GUI. Without --model the bundled default model is used, or else an
untrained mini_XCEPTION stand-in with the same cost (stated in the output: timings only, its labels mean
nothing).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger("bench.pipeline")

STAGES = ("capture", "detect", "align", "classify", "track", "total")
SIZE = (640, 480)
#: dlib's CNN takes about a second per frame on two CPU cores: cap it unless --frames is asked for it alone.
CNN_FRAMES_WHEN_ALL = 30


def rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def stand_in_model(folder: Path) -> Path:
    """An untrained mini_XCEPTION (64x64 grey, 7 classes) saved with metadata: the cost of the real thing."""
    from app.core.labels import FER2013_LABELS
    from app.core.model_io import ModelSpec, save_model
    from app.core.training.architectures import build_model

    path = folder / "mini_xception_untrained.keras"
    spec = ModelSpec(labels=FER2013_LABELS, input_size=(64, 64), channels=1, normalization="minus1_1",
                     arch="mini_xception (untrained stand-in for timing)")
    save_model(build_model("mini_xception", (64, 64, 1), 7), path, spec)
    return path


def run_detector(video: Path, model: Path, detector: str, frames: int, warmup: int, align: bool,
                 tta: str, video_size: int) -> dict[str, Any]:
    import cv2

    from app.core.recognition.recognizer import Recognizer
    from app.core.sources import SourceSpec, VideoSource

    # The camera worker's recognition state, as it runs a live source (video_size 0: detector default).
    recognizer = Recognizer(detector, align=align, tta=tta, video_size=video_size)
    recognizer.load(str(model))
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    faces_seen = 0
    with VideoSource(SourceSpec.file(video), loop=True) as source:
        for i in range(warmup + frames):
            if i == warmup:  # after warm-up: compiled model, filled caches
                gc.collect()
                rss_warm = rss_mb()
                wall_start = time.perf_counter()
                cpu_start = time.process_time()
            t0 = time.perf_counter()
            frame = cv2.resize(source.read(), SIZE, interpolation=cv2.INTER_AREA)
            t1 = time.perf_counter()
            result = recognizer.process_frame(frame, i / 30.0)
            if i < warmup:
                continue
            faces_seen += len(result.faces)
            samples["capture"].append((t1 - t0) * 1000)
            for stage in ("detect", "align", "classify", "track"):
                samples[stage].append(float(result.timings[stage]))
            samples["total"].append((t1 - t0) * 1000 + result.timings["total"])
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    gc.collect()
    rss_end = rss_mb()
    return {
        "detector": detector,
        "video_size": video_size or "detector default",
        "frames": frames,
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "fps": round(frames / wall, 2),
        # CPU time of all this process's threads per frame: on a machine shared with other work, wall-clock
        # numbers mostly measure the neighbours; this one does not (1000 / it = frames/s on one free core).
        "cpu_ms_per_frame": round(cpu * 1000 / max(frames, 1), 2),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "faces_per_frame": round(faces_seen / max(frames, 1), 3),
        "ms": {stage: {name: round(float(np.percentile(v, q)), 2) for name, q in (("p50", 50), ("p95", 95))}
               for stage, v in samples.items()},
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_warm, 1),
    }


def format_row(r: dict[str, Any]) -> str:
    stages = "  ".join(f"{s} {r['ms'][s]['p50']:.1f}/{r['ms'][s]['p95']:.1f}" for s in STAGES)
    return (f"{r['detector']:<5} @{r['video_size']} {r['frames']:>6} frames  {r['fps']:7.1f} frames/s  "
            f"CPU {r['cpu_ms_per_frame']:.1f} ms/frame (load {r['load_average']})  faces/frame "
            f"{r['faces_per_frame']:.2f}  ms p50/p95: {stages}  RSS {r['rss_after_warmup_mb']:.0f} -> "
            f"{r['rss_end_mb']:.0f} MB ({r['rss_growth_mb']:+.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True, type=Path, help="video file to read (looped as needed)")
    parser.add_argument("--detector", choices=("hog", "haar", "cnn"), action="append",
                        help="detector to measure (repeatable); default: every one that can run here")
    parser.add_argument("--frames", type=int, default=300, help="frames to time per detector (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames first (default 10)")
    parser.add_argument("--model", type=Path, help="model file (default: bundled model, else a stand-in)")
    from app.core.recognition.detection import DEFAULT_VIDEO_SIZE

    parser.add_argument("--video-size", type=int, default=DEFAULT_VIDEO_SIZE,
                        help=f"long side (px) faces are searched at, as the app's 'Video detection' setting "
                        f"(default {DEFAULT_VIDEO_SIZE}; 0 = the detector's own default, as for photos)")
    parser.add_argument("--align", action="store_true", help="rotate faces so the eyes are level")
    from app.core.recognition.classifier import OWN_TTA, TTA_MODES

    parser.add_argument("--tta", nargs="?", const="flip", default=OWN_TTA, choices=(OWN_TTA, *TTA_MODES),
                        help="test-time augmentation, as the window's option (default own: the model's own; "
                        "bare: flip)")
    parser.add_argument("--json", action="store_true", help="one JSON object per detector per line")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow threads per op (default 1, as the app's camera worker; 0: TF's choice)")
    args = parser.parse_args(argv)
    from app.core.tf_quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    if args.threads:
        from app.core.recognition.classifier import set_inference_threads

        set_inference_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    rss_start = rss_mb()
    from app.core.model_io import default_model_path
    from app.core.recognition.detection import detector_available

    if not args.video.is_file():
        parser.error(f"no such video file: {args.video}")
    detectors = args.detector or [d for d in ("hog", "haar", "cnn") if detector_available(d) is None]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model_path()
        note = ""
        if model is None:
            model = stand_in_model(Path(tmp))
            note = "model: untrained mini_XCEPTION stand-in (timings only)"
        else:
            note = f"model: {model}"
        if not args.json:
            print(f"# {args.video.name} resized to {SIZE[0]}x{SIZE[1]}, {os.cpu_count()} CPUs; {note}; "
                  f"RSS at start {rss_start:.0f} MB")
        for detector in detectors:
            frames = args.frames
            if detector == "cnn" and len(detectors) > 1:
                frames = min(frames, CNN_FRAMES_WHEN_ALL)
            result = run_detector(args.video, Path(model), detector, frames, args.warmup, args.align,
                                  args.tta, args.video_size)
            result["rss_start_mb"] = round(rss_start, 1)
            result["model"] = note
            print(json.dumps(result) if args.json else format_row(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
