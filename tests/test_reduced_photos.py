"""A JPEG photo over the pixel limit is decoded at 1/2, 1/4 or 1/8 size (libjpeg scales while decoding)
and its faces are reported in the photo's own pixels; other formats over the limit stay refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from keypoints.wild import cli as wild_cli
from keypoints.wild.faces import FaceKeypoints
from keypoints.image import ImageError, decode_image_file, read_image_file
from keypoints.wild.photos import in_photo_pixels

ROOT = Path(__file__).resolve().parents[1]  # the child process imports this checkout's keypoints


def write_jpeg(path, image: np.ndarray, quality: int = 95):
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def photo_with_a_square(width: int = 803, height: int = 601, x0: int = 500, y0: int = 200, side: int = 16):
    """Dark gray with a white ``side x side`` square at ``(x0, y0)``: its centre is ``x0 + (side - 1) / 2``."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[y0 : y0 + side, x0 : x0 + side] = 255
    return image


# 803 x 601 = 482 603 pixels; libjpeg's reduced sizes round up: 402x301, 201x151, 101x76
@pytest.mark.parametrize("max_pixels, factor, shape", [
    (482_603, 1, (601, 803)),
    (482_602, 2, (301, 402)),
    (121_002, 2, (301, 402)),
    (121_001, 4, (151, 201)),
    (30_351, 4, (151, 201)),
    (30_350, 8, (76, 101)),
    (7_676, 8, (76, 101)),
])
def test_the_smallest_reduction_that_fits_is_chosen(tmp_path, max_pixels, factor, shape):
    path = write_jpeg(tmp_path / "photo.jpg", photo_with_a_square())
    image, got, photo_shape = decode_image_file(path, cv2.IMREAD_COLOR, max_pixels)
    assert (got, image.shape, photo_shape) == (factor, shape + (3,), (601, 803))
    gray, got, _ = decode_image_file(path, cv2.IMREAD_GRAYSCALE, max_pixels)
    assert (got, gray.shape) == (factor, shape)


def test_a_jpeg_too_large_even_at_one_eighth_is_refused_naming_the_limit(tmp_path):
    path = write_jpeg(tmp_path / "photo.jpg", photo_with_a_square())
    with pytest.raises(ImageError, match=r"photo\.jpg: 803x601 is 0\.5 megapixels, more than the limit of 0\.007675"
                                         r" \(raise it with --max-pixels"):
        decode_image_file(path, cv2.IMREAD_COLOR, 7_675)


def test_formats_and_readers_that_cannot_reduce_stay_refused(tmp_path):
    photo = photo_with_a_square()
    png = tmp_path / "photo.png"
    cv2.imwrite(str(png), photo)
    with pytest.raises(ImageError, match=r"803x601 is 0\.5 megapixels, more than the limit of 0\.3 \(raise it with --max-pixels"):
        decode_image_file(png, cv2.IMREAD_COLOR, 300_000)  # OpenCV would decode a PNG whole, then shrink it
    jpeg = write_jpeg(tmp_path / "photo.jpg", photo)
    with pytest.raises(ImageError, match="more than the limit of 0.3"):
        decode_image_file(jpeg, cv2.IMREAD_UNCHANGED, 300_000)  # no reduced variant of IMREAD_UNCHANGED
    with pytest.raises(ImageError, match="more than the limit of 0.3"):
        read_image_file(jpeg, cv2.IMREAD_COLOR, 300_000)  # training data and overlays are never reduced


@pytest.mark.parametrize("max_pixels, factor", [(200_000, 2), (50_000, 4), (10_000, 8)])
def test_a_point_found_in_the_reduced_image_maps_back_to_the_photo(tmp_path, max_pixels, factor):
    x0, y0, side = 500, 200, 16
    path = write_jpeg(tmp_path / "photo.jpg", photo_with_a_square(x0=x0, y0=y0, side=side))
    image, got, _ = decode_image_file(path, cv2.IMREAD_GRAYSCALE, max_pixels)
    assert got == factor
    ys, xs = np.nonzero(image > 150)
    found = np.array([[xs.mean(), ys.mean()]])  # the square's centre in the reduced image
    face = in_photo_pixels(FaceKeypoints(np.array([xs.min(), ys.min(), 4, 4]), found), factor)
    centre = x0 + (side - 1) / 2, y0 + (side - 1) / 2  # 507.5, 207.5 in the photo
    np.testing.assert_allclose(face.points[0], centre, atol=0.75)
    np.testing.assert_array_equal(face.box, [xs.min() * factor, ys.min() * factor, 4 * factor, 4 * factor])


def test_in_photo_pixels_maps_box_and_points_and_keeps_the_confidence():
    face = FaceKeypoints(np.array([10, 20, 40, 40]), np.array([[0.0, 0.0], [10.0, 5.0]]), 0.75)
    mapped = in_photo_pixels(face, 4)
    assert mapped.box.tolist() == [40, 80, 160, 160]
    assert mapped.points.tolist() == [[1.5, 1.5], [41.5, 21.5]]  # 4 x + 3 / 2
    assert mapped.confidence == 0.75
    assert in_photo_pixels(face, 1) is face


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory):
    """A 9000 x 7000 (63 megapixel) JPEG of a gradient (0 to 144) with a white square centred at (6007.5, 1007.5)."""
    gray = np.add.outer(np.arange(7000, dtype=np.uint16) // 100, np.arange(9000, dtype=np.uint16) // 120).astype(np.uint8)
    gray[1000:1016, 6000:6016] = 255
    path = write_jpeg(tmp_path_factory.mktemp("huge") / "huge.jpg", gray, quality=80)
    del gray
    return path


def test_a_63_megapixel_jpeg_is_decoded_at_half_size_in_bounded_memory(huge_jpeg):
    # in a fresh process, so the peak resident memory is this decoding's alone
    script = (
        "import resource, sys, cv2\n"
        "from keypoints.image import decode_image_file\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image, factor, shape = decode_image_file(sys.argv[1], cv2.IMREAD_COLOR)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)\n"
        "ys, xs = (gray > 200).nonzero()\n"
        "print(factor, image.shape[0], image.shape[1], shape[0], shape[1], (after - before) * 1024,"
        " xs.mean(), ys.mean())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script, str(huge_jpeg)], capture_output=True, text=True, check=True,
                            env=env)
    factor, height, width, photo_height, photo_width, grown, x, y = (float(v) for v in result.stdout.split())
    assert (factor, height, width, photo_height, photo_width) == (2, 3500, 4500, 7000, 9000)
    # measured: about 95 MB decoded at half size (a 47 MB image and libjpeg's buffers), 360 MB decoded whole
    assert grown < 200_000_000
    np.testing.assert_allclose([2 * x + 0.5, 2 * y + 0.5], [6007.5, 1007.5], atol=1.0)


def test_predict_reports_a_reduced_photo_in_its_own_pixels(tmp_path, capsys):
    cbook = pytest.importorskip("matplotlib.cbook")
    from keypoints.predictor import PRETRAINED

    model = PRETRAINED  # a trained model, so the head pose is fitted (an untrained one's points have none)
    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))  # 600 x 512
    big = write_jpeg(tmp_path / "big.jpg", cv2.resize(portrait, (2048, 2400), interpolation=cv2.INTER_CUBIC))

    def faces(max_pixels: int):
        js = tmp_path / f"{max_pixels}.json"
        assert wild_cli.main(["predict", str(big), "--model", str(model), "--json", str(js),
                              "--max-pixels", str(max_pixels)]) == 0
        (record,) = json.loads(js.read_text())["images"]
        return record

    full, reduced = faces(10_000_000), faces(400_000)  # 4.9 megapixels: whole, then at 1/4 (512 x 600)
    assert "(decoded at 1/4 size)" in capsys.readouterr().out
    assert (full["reduced"], reduced["reduced"]) == (1, 4)
    assert (reduced["width"], reduced["height"]) == (full["width"], full["height"]) == (2048, 2400)
    (face_full,), (face_reduced,) = full["faces"], reduced["faces"]
    width = face_full["box"][2]
    assert width > 600  # the face fills much of the 2048-pixel photo, so a missed factor of 4 would show
    np.testing.assert_allclose(face_reduced["box"], face_full["box"], atol=0.05 * width)
    np.testing.assert_allclose(face_reduced["points"], face_full["points"], atol=0.05 * width)
    np.testing.assert_allclose(face_reduced["crop"], face_full["crop"], atol=0.05 * face_full["crop"][2])  # 1.98 x the box
    # the head pose's camera is the photo's, so the angles agree too
    for angle in ("yaw", "pitch", "roll"):
        assert abs(face_reduced["pose"][angle] - face_full["pose"][angle]) < 5.0, angle
