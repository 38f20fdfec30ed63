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
    """Options default to None here; TrainConfig holds the defaults, and a --resume keeps the run's own
    config.json for every option not given again."""
    from app.core.training.engine import OPTIMIZERS, SCHEDULES
    from app.core.training.fast_layers import PRECISIONS

    flag = {"action": "store_const", "const": True, "default": None}
    parser.add_argument("data", nargs="?", help="FER2013 .csv/.csv.gz, or a folder with one sub-folder per class")
    parser.add_argument("--out", help="output folder for best.h5, last.keras, log.csv and the report")
    parser.add_argument("--list-archs", action="store_true", help="list the architectures with parameter counts")
    parser.add_argument("--arch", help="architecture (default mini_xception; see --list-archs)")
    parser.add_argument("--l2", type=float,
                        help="L2 penalty on the kernels (default: the architecture's own, see --list-archs)")
    parser.add_argument("--width", type=int, help="filters of the first block, for architectures that take one "
                                                   "(vgg: default 64; 32 trains ~4x faster)")
    parser.add_argument("--dropout-scale", type=float,
                        help="multiply the architecture's dropout rates by this (vgg, simple_cnn; default 1; 0 "
                             "leaves dropout out, for short schedules that under-fit)")
    parser.add_argument("--input-size", type=int, help="square side faces are read at, in pixels (default 48)")
    parser.add_argument("--crop", type=int, help="train on random CROP x CROP windows of the face (e.g. 44 of 48), "
                                                  "evaluate on the centre one; --tta crops uses ten")
    parser.add_argument("--color", **flag, help="3-channel RGB input instead of grey")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="float32, bfloat16 (mixed), or auto (default): bfloat16 where the hardware has it and "
                             "the architecture gains")
    parser.add_argument("--epochs", type=int, help="default 30")
    parser.add_argument("--batch-size", type=int, help="default 64; rounded up to an even number")
    parser.add_argument("--lr", type=float, help="peak learning rate (default per optimizer)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam; sgd is Nesterov momentum 0.9")
    parser.add_argument("--schedule", choices=SCHEDULES,
                        help="cosine decay with warm-up (default), reduce-on-plateau, or constant")
    parser.add_argument("--weight-decay", type=float,
                        help="decoupled weight decay (default 0: off): each step shrinks the weights by lr x "
                             "this. With --optimizer sgd, 0.005 about matches the 5e-4 of PyTorch-style SGD "
                             "recipes, whose decay goes through the momentum (x10 at momentum 0.9)")
    parser.add_argument("--no-augment", dest="augment", action="store_const", const=False, default=None,
                        help="no flip/rotate/shift/zoom")
    parser.add_argument("--augment-strength", type=float, help="default 1.0")
    parser.add_argument("--mixup", type=float, nargs="?", const=0.2, help="mixup alpha (0.2 if given bare)")
    parser.add_argument("--random-erasing", type=float, nargs="?", const=0.5,
                        help="probability of erasing a random patch (0.5 if given bare)")
    parser.add_argument("--class-weights", **flag, help="weight the loss by inverse class frequency")
    parser.add_argument("--oversample", **flag, help="sample every class equally often")
    parser.add_argument("--focal-loss", **flag)
    parser.add_argument("--label-smoothing", type=float)
    parser.add_argument("--val-split", type=float, help="held-out fraction for sets with no val split (default 0.1)")
    parser.add_argument("--patience", type=int, help="early stopping patience in epochs (default 0: off)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-samples", type=int, help="train on a stratified subset of this size")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                        help="continue from last.keras (of --out when no path is given) with the run's own settings; "
                             "options given again (e.g. more --epochs) override them")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="start from this model's weights (its own --arch, width and crop unless given): "
                             "fine-tune the bundled model on your classes, or run a second learning-rate cycle")
    parser.add_argument("--distill-from", metavar="TEACHER",
                        help="distillation: blend this (larger) model's probabilities into the training targets")
    parser.add_argument("--distill-weight", type=float,
                        help="the teacher's share of each target, in (0, 1] (default 0.5)")
    parser.add_argument("--distribute", **flag,
                        help="tf.distribute: MirroredStrategy over local devices, MultiWorker with TF_CONFIG")
    parser.add_argument("--batch-shards", metavar="auto|N",
                        help="split each batch into N shards computed side by side, one core each (TensorFlow): "
                             "auto (default) uses one shard per core for mini_XCEPTION-style nets when each gets at "
                             "least 32 images, else whole batches; 1 turns it off. Batch norm then normalises each "
                             "shard by its own statistics")
    parser.add_argument("--events", choices=("jsonl",), default=None, help="machine-readable progress on stdout")


#: TrainConfig fields set by an option of the same name.
_SAME_NAME = ("data", "out", "arch", "l2", "width", "dropout_scale", "crop", "precision", "epochs", "batch_size",
              "lr", "optimizer", "schedule", "weight_decay", "augment", "augment_strength", "mixup", "random_erasing",
              "class_weights", "oversample", "focal_loss", "label_smoothing", "val_split", "patience", "seed",
              "max_samples", "init_from", "distill_from", "distill_weight", "distribute", "batch_shards")


def given_options(args: argparse.Namespace) -> dict[str, object]:
    """The TrainConfig fields the command line sets (options left out are None and not included)."""
    given: dict[str, object] = {name: getattr(args, name) for name in _SAME_NAME if getattr(args, name) is not None}
    if args.input_size is not None:
        given["input_size"] = (args.input_size, args.input_size)
    if args.color:
        given["channels"] = 3
    return given


def build_config(args: argparse.Namespace) -> TrainConfig:  # noqa: F821 - imported lazily below
    """A fresh run's config, or for --resume the run's saved config.json with the given options on top.

    A fresh run with --init-from and no --arch takes the architecture (and its width, crop and input size)
    the model was trained with; options given on the command line win."""
    from app.core.training.engine import TrainConfig
    from app.core.training.runs import load_run_config
    from app.core.training.weight_transfer import architecture_of

    given = given_options(args)
    extra = {"command": " ".join(["fer-studio", *sys.argv[1:]])}
    if args.resume is None:
        if "init_from" in given and "arch" not in given:
            taken = {k: v for k, v in architecture_of(str(given["init_from"])).items() if k not in given}
            if taken:
                logger.info("--init-from %s: training its architecture (%s)", given["init_from"],
                            ", ".join(f"{k} {v}" for k, v in taken.items()))
                given = {**taken, **given}
        return TrainConfig(**given, extra=extra)
    resume = args.resume or args.out
    if not resume:
        raise FerStudioError("--resume needs the run's folder: --resume FOLDER or --out FOLDER")
    saved = load_run_config(resume)
    changed = {k: v for k, v in given.items() if k not in ("data", "out") and saved.get(k) != v}
    if changed:
        logger.warning("resuming with changed settings: %s", ", ".join(f"{k}={v}" for k, v in changed.items()))
    merged = {**saved, **given, "resume": resume}
    merged.setdefault("batch_shards", "1")  # a run saved before --batch-shards existed goes on as it started
    merged["extra"] = {**(saved.get("extra") or {}), "resumed_with": extra["command"]}
    if saved.get("init_from") and "init_from" not in given:
        # The run started from that model's weights; its checkpoint holds them now.
        merged["init_from"] = None
        merged["extra"]["started_from"] = saved["init_from"]
    return TrainConfig.from_dict(merged)


def _list_archs() -> int:
    from app.core.training.architectures import ARCHITECTURES, DEFAULT_L2, build_model

    for name in ARCHITECTURES:
        l2 = f"L2 {DEFAULT_L2[name]:g}" if name in DEFAULT_L2 else "no --l2"
        print(f"{name:20s} {build_model(name).count_params():>12,d} parameters (48x48x1, 7 classes), {l2}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_archs:
        return _list_archs()
    from app.core.training.engine import StopFlag, train
    from app.core.training.events import ConsoleSink
    from app.core.training.events import JsonLinesSink as Sink

    sink = Sink(sys.stdout) if args.events == "jsonl" else ConsoleSink(sys.stdout)
    try:
        if args.resume is None and (not args.data or not args.out):
            raise FerStudioError("give the data (FER2013 csv or class folders) and --out FOLDER")
        config = build_config(args)
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
