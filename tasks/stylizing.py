"""Stylizing with a loaded stylization module (TF Hub's arbitrary-image-stylization signature,
or one `tasks.adain.export_stylizer` wrote): uint8 images in, uint8 images out. Shared by the
stylize job (`tasks.style_transfer`) and the style-transfer training plan's preview
(`tasks.adain_training`), which must not import each other."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# The TF Hub module was trained with 256x256 style images and works best with them.
HUB_STYLE_SIZE = 256


def stylize(module: Callable, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """One uint8 RGB content image (H, W, 3) in the style of a uint8 RGB image: uint8 (H, W, 3).

    The style image is resized to 256x256 (area interpolation), as the hub module expects.
    """
    content = np.asarray(content)
    if content.ndim != 3:
        raise ValueError(f"content must be one (H, W, 3) image, got shape {content.shape}")
    return stylize_batch(module, content[np.newaxis], style)[0]


def stylize_batch(module: Callable, contents: np.ndarray, style: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """uint8 RGB content images of one size (N, H, W, 3) in one style: uint8 (N, H, W, 3).

    Calls the module on at most `batch_size` images at a time, to bound memory.
    """
    import cv2
    import tensorflow as tf

    contents, style01 = checked_contents(contents), module_style(style)
    height, width = contents.shape[1:3]
    result = np.empty_like(contents)
    for start in range(0, len(contents), batch_size):
        chunk = contents[start:start + batch_size]
        # One style row per content row: the hub module is documented for equal batch sizes.
        styles = tf.constant(np.repeat(style01, len(chunk), axis=0))
        stylized = np.asarray(module(tf.constant(chunk.astype(np.float32) / 255.0), styles)[0])
        for offset, image in enumerate(stylized):
            if image.shape[:2] != (height, width):  # a module may round odd sizes in strided convs
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            result[start + offset] = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return result


def checked_contents(images: np.ndarray, name: str = "contents") -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


def module_style(style: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) style image as the module takes it: float32 (1, 256, 256, 3) in [0, 1]."""
    import cv2

    style = np.asarray(style)
    if style.ndim != 3 or style.shape[-1] != 3 or style.dtype != np.uint8:
        raise ValueError(f"style must be uint8 (H, W, 3), got {style.dtype} {style.shape}")
    shrinking = style.shape[0] > HUB_STYLE_SIZE or style.shape[1] > HUB_STYLE_SIZE
    style = cv2.resize(style, (HUB_STYLE_SIZE, HUB_STYLE_SIZE),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return style[np.newaxis].astype(np.float32) / 255.0
