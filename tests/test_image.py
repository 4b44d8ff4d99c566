"""Nothing unbounded from an image file or a CSV: a pixel limit read from the header before decoding,
truncated photos refused by predict as by training, CSV image names kept inside the data folder, absurd
coordinates refused naming the row."""
from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keypoints.wild import cli as wild_cli
from keypoints.data import DataError, FacialKeypointsDataset, read_image, read_keypoints_csv
from keypoints.image import ImageError, header_pixels, jpeg_size, png_size, read_image_file


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A small, valid PNG header announcing ``width x height`` gray pixels (the rows compress to nothing)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(width)
    body = b"".join(compressor.compress(row) for _ in range(min(height, 64))) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


@given(width=st.integers(1, 200_000), height=st.integers(1, 200_000))
def test_header_size_is_read_without_decoding(width, height):
    assert header_pixels(png_bomb(min(width, 64), min(height, 64)))[0] == min(width, 64) * min(height, 64)


def pillow_size(data: bytes):
    """The size Pillow reads from a header (the reference the reader's own JPEG and PNG parsing must match)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


@given(width=st.integers(1, 300), height=st.integers(1, 300), gray=st.booleans(), progressive=st.booleans(),
       restart=st.sampled_from([0, 1, 7]), exif=st.booleans(), quality=st.integers(5, 100))
def test_a_jpegs_size_is_read_from_its_frame_header_as_pillow_reads_it(width, height, gray, progressive, restart,
                                                                        exif, quality):
    from PIL import Image

    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width) if gray else (height, width, 3),
                                                             dtype=np.uint8)
    if exif:  # an APP1 segment (with a thumbnail-sized payload) before the tables and the frame
        import io

        buffer = io.BytesIO()
        picture = Image.fromarray(pixels)
        tags = Image.Exif()
        tags[0x0112], tags[0x010E] = 6, "x" * 2000  # orientation "turn 90 degrees", a long description
        picture.save(buffer, "JPEG", quality=quality, progressive=progressive, exif=tags)
        data = buffer.getvalue()
    else:
        data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE,
                                             int(progressive), cv2.IMWRITE_JPEG_RST_INTERVAL, restart])[1].tobytes()
    assert jpeg_size(data) == pillow_size(data) == (width, height)  # the stored size, whatever the orientation
    assert header_pixels(data) == (width * height, f"{width}x{height}", width, height)


@given(width=st.integers(1, 300), height=st.integers(1, 300), channels=st.sampled_from([1, 3, 4]),
       depth=st.sampled_from([np.uint8, np.uint16]))
def test_a_pngs_size_is_read_from_its_ihdr_chunk_as_pillow_reads_it(width, height, channels, depth):
    pixels = np.zeros((height, width, channels), depth)
    data = cv2.imencode(".png", pixels)[1].tobytes()
    assert png_size(data) == pillow_size(data) == (width, height)
    assert header_pixels(data)[0] == width * height


def test_a_header_that_does_not_parse_goes_to_pillow_and_is_never_guessed():
    cbook = pytest.importorskip("matplotlib.cbook")
    portrait = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()
    assert jpeg_size(portrait) == pillow_size(portrait) == (512, 600)
    frame = portrait.index(b"\xff\xc0")
    for end in range(0, frame + 9):  # cut anywhere before the frame header's size: no size at all
        assert jpeg_size(portrait[:end]) is None
    for end in range(frame + 9, frame + 40):
        assert jpeg_size(portrait[:end]) == (512, 600)
    # garbage bytes between two segments: libjpeg and Pillow skip them (with a warning); the parser here gives up
    # and Pillow answers, as it did for every format before
    second = 2 + 2 + int.from_bytes(portrait[4:6], "big")
    garbled = portrait[:second] + b"\x00\x17" + portrait[second:]
    assert jpeg_size(garbled) is None
    assert header_pixels(garbled) == (512 * 600, "512x600", 512, 600) == header_pixels(portrait)
    # a scan before any frame, a zero segment length, a PNG whose first chunk is not IHDR
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x08" + bytes(20)) is None
    assert jpeg_size(b"\xff\xd8\xff\xe0\x00\x00" + bytes(20)) is None
    assert png_size(png_bomb(10, 10).replace(b"IHDR", b"IHDX")) is None
    assert header_pixels(b"\xff\xd8\xff\xe0\x00\x00" + bytes(20)) is None


def test_reading_a_jpeg_or_png_does_not_import_pillow(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((5, 7), np.uint8))
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((5, 7), np.uint8))
    png, jpeg = tmp_path / "a.png", tmp_path / "b.jpg"
    code = ("import sys; from keypoints.image import read_image_file;"
            f"shapes = [read_image_file(r'{png}').shape, read_image_file(r'{jpeg}').shape];"
            "print(shapes, 'PIL' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[(5, 7, 3), (5, 7, 3)] False"


@pytest.mark.parametrize("side", [8000, 20000, 60000])
def test_an_image_bomb_is_refused_before_it_is_decoded(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(side, side))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match=rf"bomb\.png: .*{side * side / 1e6:.1f} megapixels, more than the limit"
                                             r" of 50 \(raise it with --max-pixels"):
            read_image_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000
    with pytest.raises(DataError, match="megapixels"):  # the data set's reader is the same one
        read_image(path)


def test_the_pixel_limit_can_be_raised_and_lowered(tmp_path):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.full((30, 40, 3), 100, np.uint8))
    with pytest.raises(ImageError, match=r"40x30 is 0\.0 megapixels, more than the limit of 0\.001"):
        read_image_file(path, max_pixels=1000)
    assert read_image_file(path, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        read_image_file(path, max_pixels=0)


def test_predict_refuses_bombs_and_truncated_photos(tmp_path, capsys):
    cbook = pytest.importorskip("matplotlib.cbook")
    portrait = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(portrait[: int(len(portrait) * 0.2)])  # 80 % cut away
    (tmp_path / "bomb.png").write_bytes(png_bomb(20000, 20000))
    (tmp_path / "fine.jpg").write_bytes(portrait)
    code = wild_cli.main(["predict", str(tmp_path), "--no-progress", "--max-pixels", "1000000"])
    err = capsys.readouterr().err
    assert code == 0  # the good photo still went through
    assert "cut.jpg: truncated JPEG" in err and "is 400.0 megapixels, more than the limit of 1" in err
    assert wild_cli.main(["predict", str(tmp_path / "fine.jpg"), "--max-pixels", "1000"]) == 1
    assert "more than the limit of 0.001" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        wild_cli.main(["predict", str(tmp_path / "fine.jpg"), "--max-pixels", "0"])


# ---------------------------------------------------------------------------------------------- CSV
def write_csv(root: Path, names: list[str], value: str = "10") -> Path:
    (root / "training").mkdir(parents=True, exist_ok=True)
    lines = ["," + ",".join(str(i) for i in range(136))]
    lines += [name + ("," + value) * 136 for name in names]
    path = root / "training_frames_keypoints.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.jpg", "a/../../secret.jpg", "..", "sub/../../x.png"])
def test_csv_image_names_outside_the_data_folder_are_refused(tmp_path, name):
    secret = tmp_path / "secret.jpg"
    cv2.imwrite(str(secret), np.zeros((8, 8), np.uint8))
    root = tmp_path / "data"
    write_csv(root, [name])
    with pytest.raises(DataError, match=r"line 2 .*inside the split's folder"):
        FacialKeypointsDataset(root, "training")
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        assert len(FacialKeypointsDataset(root, "training", on_error="skip")) == 0


@given(value=st.sampled_from(["1e39", "-1e39", "1e28", "3.5e6", "-1000001"]))
def test_absurd_coordinates_are_refused_naming_the_row(tmp_path_factory, value):
    path = write_csv(tmp_path_factory.mktemp("csv"), ["a.jpg"], value)
    with pytest.raises(DataError, match=rf"line 2 \(image 'a\.jpg'\): coordinate x0 \(column 2\) is {value}, beyond"):
        read_keypoints_csv(path)


def test_large_but_plausible_coordinates_are_kept(tmp_path):
    names, points = read_keypoints_csv(write_csv(tmp_path, ["a.jpg", "sub/b.jpg"], "-5000.5"))
    assert names == ["a.jpg", "sub/b.jpg"] and np.all(points == np.float32(-5000.5))


def test_every_command_that_reads_a_photo_takes_max_pixels():
    parser = wild_cli.build_parser()
    argvs = {
        "predict": ["predict", "a.jpg"],
        "filter": ["filter", "a.jpg", "--sunglasses", "-o", "o.png"],
        "video": ["video", "a.mp4", "-o", "o.mp4"],
        "show-maps": ["show-maps", "--image", "a.jpg", "--layer", "2", "-o", "m.png"],
    }
    for name, argv in argvs.items():
        assert parser.parse_args(argv + ["--max-pixels", "1234"]).max_pixels == 1234, name
    with pytest.raises(SystemExit):  # show-filters reads the model only: no photo to limit
        parser.parse_args(["show-filters", "-o", "f.png", "--max-pixels", "1234"])


def test_show_maps_refuses_an_image_over_max_pixels(tmp_path, capsys):
    from keypoints.models import naimishnet
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import RECIPES

    model = tmp_path / "m.npz"
    save_weights(model, RECIPES["reference"], naimishnet(96, seed=0).state_dict(), 1, 0.0)
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((120, 100), 90, np.uint8))
    argv = ["show-maps", "--model", str(model), "--image", str(face), "--layer", "0", "-o", str(tmp_path / "m.png")]
    assert wild_cli.main(argv + ["--max-pixels", "11999"]) == 2
    assert "face.png: 100x120 is 0.0 megapixels, more than the limit of 0.011999" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()
    assert wild_cli.main(argv + ["--max-pixels", "12000"]) == 0
    assert (tmp_path / "m.png").is_file()
