"""Per-architecture defaults that need no Keras: what the training dialog and the command line ask about an
architecture before anything is built (``app.core.training.architectures`` builds the nets)."""

from __future__ import annotations

#: Every architecture ``fer-studio train --arch`` builds (``architectures.ARCHITECTURES``, without Keras).
ARCHITECTURE_NAMES: tuple[str, ...] = ("mini_xception", "mini_xception_wide", "simple_cnn", "vgg", "resnet50")
#: The L2 penalty each architecture uses unless told otherwise; resnet50 (keras.applications) takes none.
DEFAULT_L2: dict[str, float] = {"mini_xception": 0.01, "mini_xception_wide": 0.001, "simple_cnn": 0.0, "vgg": 0.0}
#: Architectures that take a width (``fer-studio train --width``), with the one they use by default.
DEFAULT_WIDTH: dict[str, int] = {"vgg": 64}


#: Architectures with dropout layers, which ``fer-studio train --dropout-scale`` scales (1.0: their own rates).
TAKES_DROPOUT_SCALE: tuple[str, ...] = ("simple_cnn", "vgg")
#: The highest --dropout-scale: the largest rate scaled (vgg's 0.5 before its classifier) stays under 1.
MAX_DROPOUT_SCALE = 1.8


def takes_width(arch: str) -> bool:
    """True when ``arch`` accepts ``--width``."""
    return arch in DEFAULT_WIDTH
