"""Why a file is not a usable video: container probing and sniffing, for clear error reasons."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from typing import BinaryIO


def explain_unopenable(path: str) -> str:
    """Why OpenCV could not open the file, as far as its first bytes (or MP4 boxes) tell."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
            return _explain_mp4(f) or "not a decodable video (MP4/MOV container with an unsupported video stream)"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        kinds = {m[0:1] for m in re.findall(rb"\x86[\x81-\xbf]([VAS])_", head)}  # CodecID "V_VP9", "A_OPUS"...
        if kinds and b"V" not in kinds:
            return "no video stream (a Matroska/WebM file with only audio or subtitle tracks)"
        return "not a decodable video (Matroska/WebM container, no decodable video stream)"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        if re.search(rb"strh.{4}auds", head, re.S) and not re.search(rb"strh.{4}vids", head, re.S):
            return "no video stream (an AVI file with audio only)"
        return "not a decodable video (AVI container, no decodable video stream)"
    return f"not a decodable video (unknown format, first bytes {head[:8].hex()})"


_TRACK_KINDS = {b"vide": "video", b"soun": "audio", b"text": "text", b"sbtl": "subtitle", b"subt": "subtitle"}


def _explain_mp4(f: BinaryIO) -> str | None:
    end = os.fstat(f.fileno()).st_size
    top = {kind: (start, stop) for kind, start, stop in _iso_boxes(f, 0, end)}
    if b"moov" not in top:
        return ("truncated or unfinished MP4: no 'moov' index box (cut short, or still being written), "
                "so no frame can be located")
    handlers = []
    for kind, start, stop in _iso_boxes(f, *top[b"moov"]):
        if kind != b"trak":
            continue
        for mdia in (box for box in _iso_boxes(f, start, stop) if box[0] == b"mdia"):
            for _, hdlr_start, _ in (box for box in _iso_boxes(f, mdia[1], mdia[2]) if box[0] == b"hdlr"):
                f.seek(hdlr_start + 8)  # version+flags, pre_defined, then the handler type
                handlers.append(f.read(4))
    if not handlers:
        return "video has zero frames (an MP4 with no tracks)"
    if b"vide" not in handlers:
        kinds = sorted({_TRACK_KINDS.get(h, h.decode("latin-1")) for h in handlers})
        return f"no video stream (an MP4 with only {', '.join(kinds)} tracks)"
    return None


def _iso_boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO-BMFF boxes between two offsets."""
    position = start
    while position + 8 <= end:
        f.seek(position)
        header = f.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        payload = position + 8
        if size == 1 and len(header) == 16:
            size, payload = struct.unpack(">Q", header[8:16])[0], position + 16
        elif size == 0:
            size = end - position
        if size < payload - position:
            return  # corrupt header: stop rather than loop
        yield kind, payload, min(position + size, end)
        position += size


def sniff_non_video(head: bytes) -> str | None:
    """What the first bytes say the file is, when that is something other than a video."""
    if head.startswith(b"\xff\xd8"):
        return "looks like a JPEG image"
    if head.startswith(b"\x89PNG"):
        return "looks like a PNG image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "looks like a GIF image"
    if head.startswith(b"RIFF") and head[8:12] in (b"WAVE", b"WEBP"):
        return "looks like a WAV audio file" if head[8:12] == b"WAVE" else "looks like a WebP image"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return "looks like an MP3 audio file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        return "looks like text"
    return None
