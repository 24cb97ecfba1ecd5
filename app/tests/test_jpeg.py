from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from snapshot_stream import jpeg


@pytest.fixture(scope="module")
def picture() -> bytes:
    rng = np.random.default_rng(1)
    return jpeg.encode(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), 75)


def test_encode_produces_a_decodable_jpeg_of_the_right_size(picture: bytes) -> None:
    assert picture.startswith(jpeg.SOI) and picture.endswith(jpeg.EOI)
    decoded = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (120, 160, 3)


def test_encode_quality_changes_size() -> None:
    frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert len(jpeg.encode(frame, 10)) < len(jpeg.encode(frame, 90))


def test_encode_rejects_unencodable_input() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        jpeg.encode(np.zeros((0, 0, 3), np.uint8), 50)


def test_trim_accepts_a_complete_jpeg_without_copying(picture: bytes) -> None:
    assert jpeg.trim(picture) is picture


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_trim_accepts_buffers(picture: bytes, kind: type) -> None:
    result = jpeg.trim(kind(picture))
    assert type(result) is bytes and result == picture


def test_trim_accepts_a_multidimensional_view(picture: bytes) -> None:
    row = np.frombuffer(picture, np.uint8).reshape(1, -1)
    assert jpeg.trim(memoryview(row)) == picture


def test_trim_strips_zero_padding(picture: bytes) -> None:
    assert jpeg.trim(picture + b"\0" * 5000) == picture


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[: len(p) // 2],  # truncated: no EOI
        lambda p: p[2:],  # no SOI
        lambda p: b"\0" * len(p),
        lambda p: b"",
        lambda p: p + b"junk",
    ],
    ids=["truncated", "no-soi", "zeros", "empty", "trailing-junk"],
)
def test_trim_rejects_broken_data(picture: bytes, mangle) -> None:
    assert jpeg.trim(mangle(picture)) is None


def test_trim_rejects_tiny_frames() -> None:
    tiny = jpeg.SOI + b"\x01" * 100 + jpeg.EOI
    assert jpeg.trim(tiny) is None
    assert jpeg.trim(tiny, min_bytes=10) == tiny


def test_dimensions_of_a_real_jpeg(picture: bytes) -> None:
    assert jpeg.dimensions(picture) == (160, 120)


def test_dimensions_progressive() -> None:
    frame = np.full((33, 77, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    data = buf.tobytes()
    assert b"\xff\xc2" in data  # SOF2
    assert jpeg.dimensions(data) == (77, 33)


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def test_dimensions_skips_dht_and_dac_and_app_segments() -> None:
    # DHT/JPG/DAC (C4/C8/CC) sit in the SOF range but are not frame headers; their payload
    # is crafted to look like one, so a naive parser would report 0x1111 x 0x2222.
    fake_sof = b"\x08\x22\x22\x11\x11\x03"
    data = (
        jpeg.SOI
        + segment(0xE0, b"JFIF\0" + b"\xff\xc0" * 4)
        + segment(0xC4, fake_sof)
        + segment(0xC8, fake_sof)
        + segment(0xCC, fake_sof)
        + b"\xff\xff"  # fill bytes before a marker are legal
        + segment(0xC1, b"\x08\x01\xe0\x02\x80\x03")
        + segment(0xDA, b"\x00")
        + jpeg.EOI
    )
    assert jpeg.dimensions(data) == (640, 480)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n",
        jpeg.SOI + segment(0xE0, b"JFIF"),  # ends before any frame header
        jpeg.SOI + segment(0xDA, b"\x00") + segment(0xC0, b"\x08\x00\x10\x00\x10\x03"),
        jpeg.SOI + b"\xff\xc0\x00",  # truncated length
        jpeg.SOI + b"\xff\xc0\x00\x11\x08\x00",  # truncated SOF
        jpeg.SOI + segment(0xC0, b"\x08\x00\x00\x00\x10\x03"),  # height 0 (DNL)
        jpeg.SOI + b"\x12\x34",  # lost marker sync
    ],
)
def test_dimensions_none_for_invalid_input(data: bytes) -> None:
    assert jpeg.dimensions(data) is None
