"""`fer-studio train DATA --out DIR ...`: train a model on FER2013 or a folder-per-class data set.

With ``--events jsonl`` stdout carries only JSON lines (start, batch, epoch_end, checkpoint, report, done,
error), for the GUI's training process; logs go to stderr. SIGINT/SIGTERM stop after the current batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from app.core.errors import FerStudioError

logger = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    from app.core.training.engine import OPTIMIZERS, SCHEDULES

    parser.add_argument("data", nargs="?", help="FER2013 .csv/.csv.gz, or a folder with one sub-folder per class")
    parser.add_argument("--out", help="output folder for best.h5, last.keras, log.csv and the report")
    parser.add_argument("--list-archs", action="store_true", help="list the architectures with parameter counts")
    parser.add_argument("--arch", default="mini_xception", help="architecture (see --list-archs)")
    parser.add_argument("--l2", type=float, default=None,
                        help="L2 penalty on the kernels (default: the architecture's own, see --list-archs)")
    parser.add_argument("--input-size", type=int, default=48, help="square input side in pixels (default 48)")
    parser.add_argument("--color", action="store_true", help="3-channel RGB input instead of grey")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64, help="rounded up to an even number")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default per optimizer)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="cosine decay with warm-up, reduce-on-plateau, or constant")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="no flip/rotate/shift/zoom")
    parser.add_argument("--augment-strength", type=float, default=1.0)
    parser.add_argument("--mixup", type=float, nargs="?", const=0.2, default=0.0, help="mixup alpha (0.2 if given bare)")
    parser.add_argument("--random-erasing", type=float, nargs="?", const=0.5, default=0.0,
                        help="probability of erasing a random patch (0.5 if given bare)")
    parser.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    parser.add_argument("--oversample", action="store_true", help="sample every class equally often")
    parser.add_argument("--focal-loss", action="store_true")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--val-split", type=float, default=0.1, help="held-out fraction for sets with no val split")
    parser.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0: off)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--max-samples", type=int, default=None, help="train on a stratified subset of this size")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                        help="continue from last.keras (of --out when no path is given)")
    parser.add_argument("--init-from", metavar="MODEL", default=None,
                        help="start from this model's weights (same --arch): fine-tune the bundled model on your "
                             "classes, or run a second learning-rate cycle")
    parser.add_argument("--distill-from", metavar="TEACHER", default=None,
                        help="distillation: blend this (larger) model's probabilities into the training targets")
    parser.add_argument("--distill-weight", type=float, default=0.5,
                        help="the teacher's share of each target, in (0, 1] (default 0.5)")
    parser.add_argument("--distribute", action="store_true",
                        help="tf.distribute: MirroredStrategy over local devices, MultiWorker with TF_CONFIG")
    parser.add_argument("--events", choices=("jsonl",), default=None, help="machine-readable progress on stdout")


def _list_archs() -> int:
    from app.core.training.architectures import ARCHITECTURES, DEFAULT_L2, build_model

    for name in ARCHITECTURES:
        l2 = f"L2 {DEFAULT_L2[name]:g}" if name in DEFAULT_L2 else "no --l2"
        print(f"{name:20s} {build_model(name).count_params():>12,d} parameters (48x48x1, 7 classes), {l2}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_archs:
        return _list_archs()
    from app.core.training.engine import StopFlag, TrainConfig, train
    from app.core.training.events import ConsoleSink, JsonLinesSink as Sink

    sink = Sink(sys.stdout) if args.events == "jsonl" else ConsoleSink(sys.stdout)
    try:
        if not args.data or not args.out:
            raise FerStudioError("give the data (FER2013 csv or class folders) and --out FOLDER")
        resume = args.resume
        if resume == "":
            resume = args.out
        config = TrainConfig(
            data=args.data, out=args.out, arch=args.arch, l2=args.l2, input_size=(args.input_size, args.input_size),
            channels=3 if args.color else 1, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            optimizer=args.optimizer, schedule=args.schedule, weight_decay=args.weight_decay, augment=args.augment,
            augment_strength=args.augment_strength, mixup=args.mixup, random_erasing=args.random_erasing,
            class_weights=args.class_weights, oversample=args.oversample, focal_loss=args.focal_loss,
            label_smoothing=args.label_smoothing, val_split=args.val_split, patience=args.patience, seed=args.seed,
            max_samples=args.max_samples, resume=resume, init_from=args.init_from,
            distill_from=args.distill_from, distill_weight=args.distill_weight,
            distribute=args.distribute,
            extra={"command": " ".join(["fer-studio", *sys.argv[1:]])})
        from app.core.training.architectures import ARCHITECTURES

        if config.arch not in ARCHITECTURES:
            raise FerStudioError(f"unknown architecture {config.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        result = train(config, sink, StopFlag())
    except (FerStudioError, ValueError) as exc:
        if args.events == "jsonl":
            sink.emit("error", message=str(exc))
            return 1
        raise FerStudioError(str(exc)) from exc
    except Exception as exc:  # report anything else to the GUI too, then fail loudly
        if args.events == "jsonl":
            sink.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    if args.events != "jsonl" and result.report:
        print(json.dumps({k: result.report[k] for k in ("accuracy", "macro_f1")}))
    return 0 if result.best_model is not None else 1
