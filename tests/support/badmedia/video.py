"""The corpus's video kinds: broken, truncated, disguised and unusual videos."""

from __future__ import annotations

from pathlib import Path

import cv2

from support import media_video as mv
from support.badmedia.kinds import ERROR, ODD_NAMES, PARTIAL, SCORED, kind


def _gray_video(path: Path, seconds: float = 1.0, fps: float = 10) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48), isColor=False)
    for frame in mv.video_frames("blue-box", round(seconds * fps), (64, 48)):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    writer.release()


@kind("video", SCORED)
def video_plain(seed: int) -> dict[str, bytes]:
    return {"plain.mp4": mv.video_bytes(lambda p: mv.write_video(p, "red-ball", 1.5, seed=seed))}


@kind("video", ERROR, "empty")
def video_zero_byte(seed: int) -> dict[str, bytes]:
    return {"zero-byte.mp4": b""}


@kind("video", ERROR, "truncated")
def video_truncated_mp4(seed: int) -> dict[str, bytes]:
    return {"truncated.mp4": mv.video_bytes(lambda p: mv.write_truncated_mp4(p, seconds=2, seed=seed))}


@kind("video", PARTIAL, "stopped at frame")
def video_truncated_faststart_mp4(seed: int) -> dict[str, bytes]:
    return {"truncated-faststart.mp4": mv.video_bytes(
        lambda p: mv.write_truncated_faststart_mp4(p, seconds=3, keep=0.5, seed=seed))}


@kind("video", ERROR, "frame")
def video_index_only_mp4(seed: int) -> dict[str, bytes]:
    return {"index-only.mp4": mv.video_bytes(lambda p: mv.write_index_only_mp4(p, seconds=2, seed=seed))}


@kind("video", ERROR, "zero frames")
def video_zero_frames(seed: int) -> dict[str, bytes]:
    return {"zero-frames.mp4": mv.video_bytes(mv.write_zero_frame_mp4)}


@kind("video", ERROR, "no video stream")
def video_audio_only_mp4(seed: int) -> dict[str, bytes]:
    return {"audio-only.mp4": mv.video_bytes(lambda p: mv.write_audio_only_mp4(p, seconds=1))}


@kind("video", ERROR, "text")
def video_text_named_mp4(seed: int) -> dict[str, bytes]:
    return {"notes.mp4": mv.video_bytes(mv.write_text_as_video)}


@kind("video", ERROR, "PNG")
def video_png_named_mp4(seed: int) -> dict[str, bytes]:
    return {"still.mp4": mv.video_bytes(mv.write_png_as_video)}


@kind("video", ERROR, "WAV")
def video_wav_named_mov(seed: int) -> dict[str, bytes]:
    return {"sound.mov": mv.video_bytes(mv.write_wav_as_video, "v.wav")}


@kind("video", SCORED)
def video_mjpeg_avi(seed: int) -> dict[str, bytes]:
    return {"mjpeg.avi": mv.video_bytes(lambda p: mv.write_video(p, "green-stripes", 1.0, seed=seed), "v.avi")}


@kind("video", PARTIAL, "stopped at frame")
def video_truncated_avi(seed: int) -> dict[str, bytes]:
    return {"truncated.avi": mv.video_bytes(lambda p: mv.write_truncated_avi(p, seconds=3, keep=0.5, seed=seed),
                                          "v.avi")}


@kind("video", SCORED)
def video_single_frame(seed: int) -> dict[str, bytes]:
    return {"one-frame.mp4": mv.video_bytes(lambda p: mv.write_video(p, "blue-box", 0.1, seed=seed))}


@kind("video", SCORED)
def video_odd_size(seed: int) -> dict[str, bytes]:
    return {"odd-size-35x17.mp4": mv.video_bytes(
        lambda p: mv.write_video(p, "red-ball", 1.0, size=(35, 17), seed=seed))}


@kind("video", SCORED)
def video_grayscale(seed: int) -> dict[str, bytes]:
    return {"grayscale.mp4": mv.video_bytes(_gray_video)}


@kind("video", SCORED)
def video_mp4_named_mov(seed: int) -> dict[str, bytes]:
    return {"really-an-mp4.mov": mv.video_bytes(lambda p: mv.write_video(p, "blue-box", 1.0, seed=seed))}


@kind("video", SCORED)
def video_odd_key_names(seed: int) -> dict[str, bytes]:
    clip = mv.video_bytes(lambda p: mv.write_video(p, "green-stripes", 0.5, seed=seed))
    names = ("space", "unicode", "percent", "hash", "dots")
    return {f"names/{ODD_NAMES[n].format(n=seed)}.mp4": clip for n in names} | {
        f"names/clip%03d {seed}.mp4": clip}  # an image-sequence pattern to FFmpeg's image2 reader
