"""Training augmentation as one affine warp per image: flip, rotation, shift, zoom and the random crop.

Flip, rotation, shift and zoom (and the random crop of the crop-trained nets) compose into one 2x3
matrix per image, so a batch costs one resampling pass instead of one per transform: a single
``ImageProjectiveTransformV3`` op over the batch inside the tf.data pipeline (TensorFlow backend, off the
model's training step), or one ``cv2.warpAffine`` per image for the numpy batches of the other backends.
The matrix maths is written once (``_inverse_rows``) and shared by both.

A crop-trained model (``crop`` set) sees a random ``crop`` x ``crop`` window of the face in training and
the centre window in evaluation and in the app (``center_crop``; ``classifier`` also offers ten-crop
test-time augmentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Random geometry of training images; ``strength`` 1.0 is the default magnitude."""

    flip: bool = True
    rotation_deg: float = 14.4  # up to +-14.4 degrees (Keras RandomRotation(0.04) in earlier versions)
    shift: float = 0.1  # up to +-10% of the side
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    crop: tuple[int, int] | None = None  # output (height, width): a random window of the input

    @classmethod
    def from_strength(cls, strength: float, crop: tuple[int, int] | None = None) -> Augmentation:
        return cls(True, 14.4 * strength, 0.1 * strength, 0.1 * strength, crop)

    def output_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        return self.crop or input_size


def _inverse_rows(cos: Any, sin: Any, flip: Any, scale: Any, tx: Any, ty: Any,
                  in_size: tuple[int, int], out_size: tuple[int, int]) -> list[Any]:
    """The 6 coefficients mapping an output pixel (x, y) to its input position, for arrays of any kind.

    input = R(angle) . (flip * u, v) / scale + input centre + (tx, ty), with (u, v) the output pixel
    relative to the output centre. Only * + - /, so numpy arrays and TensorFlow tensors both work.
    """
    in_h, in_w = in_size
    out_h, out_w = out_size
    ocx, ocy = (out_w - 1) / 2.0, (out_h - 1) / 2.0
    a0, a1 = cos * flip / scale, -sin / scale
    b0, b1 = sin * flip / scale, cos / scale
    a2 = (in_w - 1) / 2.0 + tx - a0 * ocx - a1 * ocy
    b2 = (in_h - 1) / 2.0 + ty - b0 * ocx - b1 * ocy
    return [a0, a1, a2, b0, b1, b2]


def _slack(in_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[float, float]:
    """How far (pixels) a random crop may move the window from the centre, (y, x)."""
    return (in_size[0] - out_size[0]) / 2.0, (in_size[1] - out_size[1]) / 2.0


def augment_batch_tf(images: Any, aug: Augmentation, seed: Any) -> Any:
    """(N, H, W, C) float tensor -> augmented (N, h, w, C), one projective-transform op for the batch.

    The draws are a function of ``seed`` (a shape-[2] integer tensor) alone: TensorFlow's stateless random ops,
    so a training stream can be regenerated from any position.
    """
    import tensorflow as tf

    n = tf.shape(images)[0]
    in_size = (int(images.shape[1]), int(images.shape[2]))
    out_size = aug.output_size(in_size)
    slack_y, slack_x = _slack(in_size, out_size)
    # one uniform [0, 1) row per random quantity: angle, flip, scale, x shift, y shift
    u = tf.random.stateless_uniform([5, n], seed)
    signed = 2.0 * u - 1.0
    angle = signed[0] * math.radians(aug.rotation_deg)
    flip = tf.where(u[1] < 0.5, -1.0, 1.0) if aug.flip else tf.ones([n])
    scale = 1.0 + signed[2] * aug.zoom
    tx = signed[3] * (aug.shift * in_size[1] + slack_x)
    ty = signed[4] * (aug.shift * in_size[0] + slack_y)
    rows = _inverse_rows(tf.cos(angle), tf.sin(angle), flip, scale, tx, ty, in_size, out_size)
    transforms = tf.stack([*rows, tf.zeros([n]), tf.zeros([n])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant(out_size, tf.int32),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def augment_batch_np(images: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W, C) float32 -> augmented (N, h, w, C), one ``cv2.warpAffine`` per image."""
    n, in_h, in_w, channels = images.shape
    out_h, out_w = aug.output_size((in_h, in_w))
    slack_y, slack_x = _slack((in_h, in_w), (out_h, out_w))
    angle = rng.uniform(-1, 1, n) * math.radians(aug.rotation_deg)
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0) if aug.flip else np.ones(n)
    scale = 1.0 + rng.uniform(-1, 1, n) * aug.zoom
    tx = rng.uniform(-1, 1, n) * (aug.shift * in_w + slack_x)
    ty = rng.uniform(-1, 1, n) * (aug.shift * in_h + slack_y)
    rows = np.stack(_inverse_rows(np.cos(angle), np.sin(angle), flip, scale, tx, ty, (in_h, in_w), (out_h, out_w)),
                    axis=1)
    out = np.empty((n, out_h, out_w, channels), np.float32)
    for i in range(n):
        warped = cv2.warpAffine(images[i], rows[i].reshape(2, 3), (out_w, out_h),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
        out[i] = warped.reshape(out_h, out_w, channels)
    return out


def center_crop(images: np.ndarray, crop: tuple[int, int] | None) -> np.ndarray:
    """The centre ``crop`` window of (N, H, W, C) or (H, W[, C]) images (unchanged when ``crop`` is None)."""
    if crop is None:
        return images
    batched = images.ndim == 4
    h, w = images.shape[1:3] if batched else images.shape[:2]
    top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop {crop} out of {h}x{w} images")
    if batched:
        return images[:, top:top + crop[0], left:left + crop[1]]
    return images[top:top + crop[0], left:left + crop[1]]
