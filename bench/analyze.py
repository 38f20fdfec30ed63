"""Whole-video analysis speed and memory: ``fer-studio analyze``'s code against a peer-shaped loop.

    python bench/analyze.py [--frames 10000] [--peer-frames 150] [--detector haar] [--json]

On a machine shared with other work, frames/s say little; the CPU time per frame (all threads of this
process) does not depend on what else runs, and 1000 / (CPU ms per frame / free cores) bounds frames/s.

Prints, for each clip, frames/s of the analysis (``app.core.analysis.analyze_video``: a reader thread
decoding ahead, the one recognition pipeline, re-identification, CSV, summary and report) and how many
times real time that is:

- ``../shared/media/video/woman2.mp4`` as it is (596x336, one face) and resized to 640x480 (the target);
- ``tests/data/people_clip.mp4`` (640x480, 1-4 faces, cuts);
- the peer-shaped loop on the 640x480 clip: read a frame, detect with the same detector, then one
  ``model.predict`` per face (as the fer library's ``Video.analyze`` does), no decoding ahead;
- RSS growth over the 640x480 clip looped to ``--frames`` frames (10,000 by default; the first 200
  frames are the warm-up baseline).

It prints numbers and asserts nothing. Temporary videos go to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
WOMAN = REPO.parent / "shared" / "media" / "video" / "woman2.mp4"
PEOPLE = REPO / "tests" / "data" / "people_clip.mp4"
SIZE = (640, 480)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def resized_copy(source: Path, target: Path, frames: int | None = None) -> tuple[Path, float]:
    """``source`` resized to 640x480 (looped until ``frames`` frames when given), mp4v; and its fps."""
    import cv2

    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    pictures = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        pictures.append(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
    cap.release()
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    for i in range(frames or len(pictures)):
        writer.write(pictures[i % len(pictures)])
    writer.release()
    return target, fps


def run_analysis(video: Path, out: Path, pipeline: Any, make_detector: Any, workers: int,
                 samples: list[tuple[int, float]] | None = None) -> dict:
    from app.core.analysis import AnalysisOptions, analyze_video
    from app.core.analysis.video import probe_video

    def on_progress(p: Any) -> None:
        if samples is not None and p.analysed % 100 == 0:
            samples.append((p.analysed, rss_mb()))

    info = probe_video(video)
    cpu = time.process_time()
    result = analyze_video(video, out, pipeline, AnalysisOptions(detect_workers=workers), on_progress=on_progress,
                           make_detector=make_detector)
    seconds = result.seconds
    cpu_ms = (time.process_time() - cpu) * 1000 / max(1, result.frames_analysed)
    return {"cpu_ms_per_frame": round(cpu_ms, 1), "video": video.name, "size": f"{info.width}x{info.height}",
            "workers": workers, "frames": result.frames_analysed,
            "faces": result.faces, "people": result.people, "seconds": round(seconds, 2),
            "fps": round(result.frames_analysed / seconds, 1),
            "x_realtime": round(result.frames_analysed / max(info.fps, 1e-6) / seconds, 2)}


def peer_loop(video: Path, pipeline: Any, max_frames: int) -> dict:
    """Read, detect, then ``model.predict`` once per face: the shape of the fer library's video loop."""
    import cv2

    detector, classifier = pipeline.detector, pipeline.classifier
    model = classifier.loaded.model
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = faces = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while frames < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        for det in detector.detect(frame):
            x, y, w, h = det.box
            batch = classifier.preprocess([frame[y:y + h, x:x + w]])
            model.predict(batch, verbose=0)
            faces += 1
        frames += 1
    cap.release()
    seconds = time.perf_counter() - start
    cpu_ms = (time.process_time() - cpu) * 1000 / max(1, frames)
    return {"cpu_ms_per_frame": round(cpu_ms, 1), "video": video.name + " (peer loop)", "frames": frames,
            "faces": faces, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1),
            "x_realtime": round(frames / fps / seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames of the RSS soak run (0: skip it)")
    parser.add_argument("--peer-frames", type=int, default=150, help="frames of the peer-shaped loop")
    parser.add_argument("--detector", default=None, help="face detector (default: the app's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="detection threads to measure (default: 1 and 2)")
    parser.add_argument("--soak-only", action="store_true", help="only the RSS run (short runs on a busy machine)")
    parser.add_argument("--json", action="store_true", help="one JSON object at the end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from app.core.analysis.runner import build_analysis_pipeline, detector_factory
    from app.core.analysis.video import quiet_ffmpeg

    quiet_ffmpeg()
    pipeline = build_analysis_pipeline(None, args.detector)
    make_detector = detector_factory(args.detector)
    print(f"detector {pipeline.detector!r}, model {pipeline.classifier.loaded.path}, {os.cpu_count()} CPUs")
    results: dict[str, Any] = {"runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_analyze_") as tmp:
        folder = Path(tmp)
        vga, _ = resized_copy(WOMAN, folder / "woman2_640x480.mp4")
        best_vga = 0.0
        for workers in [] if args.soak_only else args.workers:
            for video in (WOMAN, vga, PEOPLE):
                run = run_analysis(video, folder / "out", pipeline, make_detector, workers)
                results["runs"].append(run)
                if video == vga:
                    best_vga = max(best_vga, run["fps"])
                print(f"analyze {run['video']:<22} {run['size']:>8} {workers} detect thread(s): {run['frames']:>5} "
                      f"frames {run['fps']:6.1f} frames/s = {run['x_realtime']:.2f}x real time "
                      f"({run['faces']} faces, {run['people']} people); CPU {run['cpu_ms_per_frame']} ms/frame")
        if not args.soak_only:
            peer = peer_loop(vga, pipeline, args.peer_frames)
            results["peer"] = peer
            ours = best_vga
            print(f"peer loop {peer['video']:<30}: {peer['frames']:>5} frames {peer['fps']:6.1f} frames/s = "
                  f"{peer['x_realtime']:.2f}x real time, CPU {peer['cpu_ms_per_frame']} ms/frame; analyze is "
                  f"{ours / peer['fps']:.1f}x faster")
            results["speedup_vs_peer"] = round(ours / peer["fps"], 2)
        if args.frames:
            long_clip, _ = resized_copy(WOMAN, folder / "soak.mp4", args.frames)
            samples: list[tuple[int, float]] = []
            soak = run_analysis(long_clip, folder / "out", pipeline, make_detector, max(args.workers), samples)
            base = next((mb for n, mb in samples if n >= 200), samples[0][1] if samples else 0.0)
            end, peak = (samples[-1][1], max(mb for _, mb in samples)) if samples else (0.0, 0.0)
            results["soak"] = {**soak, "rss_after_200_mb": round(base, 1), "rss_end_mb": round(end, 1),
                               "rss_peak_mb": round(peak, 1), "growth_mb": round(end - base, 1)}
            print(f"soak: {soak['frames']} frames at {soak['fps']} frames/s; RSS {base:.1f} MB after 200 frames, "
                  f"{end:.1f} MB at the end (peak {peak:.1f}): growth {end - base:+.1f} MB")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
