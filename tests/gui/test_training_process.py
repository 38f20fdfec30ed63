"""The training process protocol: JSON-lines parsing, command lines, outcomes, and QProcess plumbing.

The parser tests are pure; the QProcess tests run small real Python children (no TensorFlow) that write
split lines, noise, ignore SIGTERM or crash, so they take a second or two.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from app.workers import training_process
from app.workers.training_protocol import (
    JsonLinesParser,
    TextLineBuffer,
    TrainingConfig,
    TrainingOutcome,
    build_command,
)

EVENTS = [
    {"event": "start", "epochs": 2, "initial_epoch": 0, "steps_per_epoch": 3, "batch_size": 8},
    {"event": "batch", "epoch": 1, "step": 1, "steps": 3, "loss": 1.9, "accuracy": 0.2},
    {"event": "epoch_end", "epoch": 1, "epochs": 2, "seconds": 1.5,
     "metrics": {"loss": 1.8, "accuracy": 0.25, "val_loss": 1.9, "val_accuracy": 0.2}},
    {"event": "checkpoint", "path": "/tmp/x/best.h5", "epoch": 1, "monitor": "val_accuracy", "value": 0.2},
    {"event": "done", "best_model": "/tmp/x/best.h5", "best_epoch": 1, "interrupted": False},
]


def _stream(events=EVENTS) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


# -- JsonLinesParser --------------------------------------------------------------------------------------------

def test_parser_whole_stream_in_one_chunk():
    assert JsonLinesParser().feed(_stream()) == EVENTS


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_parser_lines_split_across_chunks(chunk):
    parser = JsonLinesParser()
    data = _stream()
    out = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i:i + chunk])
    assert out == EVENTS
    assert parser.flush() == []


def test_parser_keeps_partial_line_until_it_is_complete():
    parser = JsonLinesParser()
    line = json.dumps(EVENTS[1]).encode()
    assert parser.feed(line[:10]) == []
    assert parser.feed(line[10:]) == []  # still no newline
    assert parser.feed(b"\n") == [EVENTS[1]]


def test_parser_noise_goes_to_the_log_in_order():
    parser = JsonLinesParser()
    data = (b"Epoch 1/2 plain text\n" + _stream(EVENTS[:1]) + b"\n   \n" + b"{not json at all\n"
            + b'{"no_event_key": 1}\n' + b"[1, 2, 3]\n" + b'{"event": 5}\n' + _stream(EVENTS[1:2]))
    assert parser.feed(data) == [
        "Epoch 1/2 plain text", EVENTS[0], "{not json at all", '{"no_event_key": 1}', "[1, 2, 3]",
        '{"event": 5}', EVENTS[1]]


def test_parser_crlf_nan_and_utf8_split_inside_a_character():
    parser = JsonLinesParser()
    data = '{"event": "error", "message": "caf\u00e9 \u2013 loss NaN", "loss": NaN}\r\n'.encode()
    cut = data.index("\u2013".encode()) + 1  # in the middle of a three-byte character
    out = parser.feed(data[:cut]) + parser.feed(data[cut:])
    assert len(out) == 1 and out[0]["message"] == "caf\u00e9 \u2013 loss NaN"
    assert out[0]["loss"] != out[0]["loss"]  # NaN


def test_parser_flush_returns_unterminated_last_line():
    parser = JsonLinesParser()
    assert parser.feed(_stream(EVENTS[:1]) + json.dumps(EVENTS[-1]).encode()) == [EVENTS[0]]
    assert parser.flush() == [EVENTS[-1]]
    assert parser.flush() == []


def test_parser_gives_up_on_a_line_that_never_ends():
    parser = JsonLinesParser(max_line_bytes=1000)
    out = parser.feed(b"x" * 1500)
    assert out == ["x" * 1500]
    assert parser.feed(_stream(EVENTS[:1])) == [EVENTS[0]]


def test_stderr_lines_split_on_carriage_returns():
    buffer = TextLineBuffer()
    assert buffer.feed(b"loading\r 10%\r 20%") == ["loading", " 10%"]
    assert buffer.feed(b"\r\nWARNING x\n\n") == [" 20%", "WARNING x"]
    assert buffer.feed(b"tail") == [] and buffer.flush() == ["tail"]


# -- command line and outcome -----------------------------------------------------------------------------------

def test_command_line_maps_every_setting(tmp_path):
    config = TrainingConfig(data=str(tmp_path / "d.csv.gz"), out=str(tmp_path / "run"), arch="simple_cnn",
                            epochs=3, batch_size=16, learning_rate=0.0005, optimizer="sgd", augment=False,
                            mixup=True, imbalance="focal_loss", label_smoothing=0.1, max_samples=500, resume="")
    command = build_command(config, python="/py")
    assert command[:5] == ["/py", "-m", "app.cli", "train", str(tmp_path / "d.csv.gz")]
    joined = " ".join(command)
    for part in ("--out " + str(tmp_path / "run"), "--arch simple_cnn", "--epochs 3", "--batch-size 16",
                 "--lr 0.0005", "--optimizer sgd", "--no-augment", "--mixup", "--focal-loss",
                 "--label-smoothing 0.1", "--max-samples 500", "--resume --events jsonl"):
        assert part in joined
    assert command[-2:] == ["--events", "jsonl"]
    default = build_command(TrainingConfig(data="d.csv", out="o"))
    assert "--no-augment" not in default and "--resume" not in default and "--class-weights" not in default
    assert "--class-weights" in build_command(TrainingConfig(data="d", out="o", imbalance="class_weights"))


def test_command_line_parses_with_the_real_cli(tmp_path):
    from app.cli import build_parser

    config = TrainingConfig(data="d.csv", out=str(tmp_path), mixup=True, imbalance="oversample", resume="")
    args = build_parser().parse_args(build_command(config)[3:])
    assert args.command == "train" and args.events == "jsonl" and args.oversample and args.mixup > 0
    assert args.resume == "" and args.lr == pytest.approx(0.001)


def test_recipe_settings_reach_the_real_cli_and_defaults_stay_off(tmp_path):
    from app.cli import build_parser
    from app.commands.train import given_options

    config = TrainingConfig(data="d.csv", out=str(tmp_path), arch="vgg", width=32, crop=44, optimizer="sgd",
                            learning_rate=0.01, weight_decay=0.005, precision="float32")
    args = build_parser().parse_args(build_command(config)[3:])
    given = given_options(args)
    assert (given["width"], given["crop"], given["weight_decay"], given["precision"]) == (32, 44, 0.005, "float32")
    default = build_command(TrainingConfig(data="d.csv", out="o"))
    # Left at their defaults, they are not passed: a resumed run then keeps its own config.json values.
    assert not {"--width", "--crop", "--weight-decay", "--precision"} & set(default)


def test_init_from_is_passed_to_fresh_runs_only(tmp_path):
    from app.cli import build_parser

    model = tmp_path / "bundled.h5"
    fresh = build_command(TrainingConfig(data="d.csv", out=str(tmp_path / "o"), init_from=str(model)))
    assert fresh[fresh.index("--init-from") + 1] == str(model)
    assert build_parser().parse_args(fresh[3:]).init_from == str(model)
    resumed = build_command(TrainingConfig(data="d.csv", out="o", init_from=str(model), resume=""))
    assert "--init-from" not in resumed and "--resume" in resumed


def test_outcome_messages_name_the_signal_and_the_checkpoint():
    killed = TrainingOutcome(exit_code=signal.SIGKILL, crashed=True, stopped=False, killed_after_timeout=False,
                             done=None, error=None, last_checkpoint="/runs/a/best.h5")
    assert not killed.ok and killed.signal_name == "SIGKILL"
    assert "SIGKILL" in killed.describe() and "Last good checkpoint: /runs/a/best.h5" in killed.describe()
    error = TrainingOutcome(exit_code=1, crashed=False, stopped=False, killed_after_timeout=False, done=None,
                            error="data.csv: wrong columns", last_checkpoint=None)
    assert "wrong columns" in error.describe() and "No checkpoint" in error.describe()
    stopped = TrainingOutcome(exit_code=0, crashed=False, stopped=True, killed_after_timeout=False,
                              done={"best_model": "/r/best.h5", "best_epoch": 2, "interrupted": True},
                              error=None, last_checkpoint="/r/best.h5")
    assert stopped.ok and "stopped" in stopped.describe() and "/r/best.h5" in stopped.describe()
    assert "not finished" not in stopped.describe()
    mid_epoch = TrainingOutcome(exit_code=0, crashed=False, stopped=True, killed_after_timeout=False,
                                done={"best_model": "/r/best.h5", "best_epoch": 2, "interrupted": True,
                                      "dropped_epoch": 3}, error=None, last_checkpoint=None)
    assert mid_epoch.ok and "Epoch 3 was not finished and is not saved; Resume repeats it." in mid_epoch.describe()


# -- real child processes ---------------------------------------------------------------------------------------

CHILD = textwrap.dedent('''
    import json, os, signal, sys, time
    mode = sys.argv[1]
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    def out(data):
        sys.stdout.write(data); sys.stdout.flush(); time.sleep(0.05)
    line = json.dumps({"event": "checkpoint", "path": sys.argv[2], "epoch": 1, "monitor": "val_accuracy",
                       "value": 0.5}) + "\\n"
    TF_NOISE = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
        "I0000 00:00:1796225407.864566    8638 port.cc:153] oneDNN custom operations are on. You may see\\n"
        "I0000 00:00:1796225407.865176    8638 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n"
        "E0000 00:00:1796225412.125965    8638 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA\\n")
    out("warming up (noise)\\n")
    out(line[:9]); out(line[9:30]); out(line[30:])
    sys.stderr.write("a log line\\rprogress 50%\\n"); sys.stderr.flush()
    sys.stderr.write(TF_NOISE); sys.stderr.flush()
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode in ("ignore_term", "sleep"):
        out('{"event": "start", "epochs": 5}\\n')
        time.sleep(60)
    out('{"event": "done", "best_model": "%s", "best_epoch": 1, "interrupted": false}' % sys.argv[2])  # no newline
''')


@pytest.fixture
def fake_child(tmp_path, monkeypatch):
    """Make TrainingProcess run CHILD (mode in config.arch, checkpoint path in config.out) instead of the CLI."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    checkpoint = tmp_path / "best.h5"
    checkpoint.write_bytes(b"not really a model")

    def command(config, python=None):
        return [sys.executable, str(script), config.arch, str(checkpoint)]

    monkeypatch.setattr(training_process, "build_command", command)
    return lambda mode: TrainingConfig(data=str(tmp_path), out=str(tmp_path), arch=mode)


def _run(qtbot, process, config, timeout=20_000):
    events, logs = [], []
    process.eventReceived.connect(events.append)
    process.logLine.connect(logs.append)
    with qtbot.waitSignal(process.finished, timeout=timeout) as blocker:
        process.start(config)
    return blocker.args[0], events, logs


def test_process_reassembles_split_lines_and_logs_noise(qtbot, fake_child):
    process = training_process.TrainingProcess()
    outcome, events, logs = _run(qtbot, process, fake_child("normal"))
    assert [e["event"] for e in events] == ["checkpoint", "done"]
    assert "warming up (noise)" in logs and "a log line" in logs and "progress 50%" in logs
    # TensorFlow's start-up notices never reach the dialog's log pane.
    assert not [line for line in logs if "oneDNN" in line or "cuInit" in line or "cuda drivers" in line
                or "absl::InitializeLog" in line]
    assert outcome.ok and outcome.exit_code == 0 and outcome.last_checkpoint.endswith("best.h5")


def test_process_crash_is_reported_with_signal_and_checkpoint(qtbot, fake_child):
    outcome, _, _ = _run(qtbot, training_process.TrainingProcess(), fake_child("crash"))
    assert outcome.crashed and outcome.signal_name == "SIGSEGV" and not outcome.ok
    assert "crashed (SIGSEGV)" in outcome.describe() and "best.h5" in outcome.describe()


def test_stop_kills_a_child_that_ignores_sigterm(qtbot, fake_child):
    process = training_process.TrainingProcess(stop_timeout_ms=500)
    with qtbot.waitSignal(process.runStarted, timeout=20_000):
        process.start(fake_child("ignore_term"))
    with qtbot.waitSignal(process.finished, timeout=20_000) as blocker:
        process.stop()
        assert process.is_stopping()
    outcome = blocker.args[0]
    assert outcome.stopped and outcome.killed_after_timeout and outcome.crashed
    assert "did not stop in time" in outcome.describe()


def test_stop_ends_a_child_that_honours_sigterm(qtbot, fake_child):
    process = training_process.TrainingProcess()
    with qtbot.waitSignal(process.runStarted, timeout=20_000):
        process.start(fake_child("sleep"))
    with qtbot.waitSignal(process.finished, timeout=5_000) as blocker:
        process.stop()
    outcome = blocker.args[0]
    assert outcome.stopped and not outcome.killed_after_timeout and outcome.signal_name == "SIGTERM"


def test_program_that_cannot_start_is_reported(qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr(training_process, "build_command",
                        lambda config, python=None: [str(tmp_path / "no-such-python"), "-m", "app.cli"])
    outcome, _, _ = _run(qtbot, training_process.TrainingProcess(), TrainingConfig(data="d", out=str(tmp_path)))
    assert not outcome.ok and "could not start" in (outcome.error or "")
    assert Path(training_process.PROJECT_ROOT, "app", "cli.py").is_file()
