"""Tests for keypoints.data.download.ensure_data against a local HTTP server (no network access).

The server runs on 127.0.0.1, port 0, in a thread, and serves a small zip of the upstream layout built
here (or a broken response). After a failure nothing may be left next to the destination.
"""
from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from keypoints.data import DataError, DownloadError, FacialKeypointsDataset, ensure_data, holds_data

HEADER = "," + ",".join(str(i) for i in range(136))


def upstream_zip(prefix: str = "", with_test_csv: bool = True, macos_litter: bool = False) -> bytes:
    """A zip with upstream's members: ``training/*.jpg``, ``test/*.jpg`` and the two CSVs at the top level
    (``train-test-data.zip`` unpacks to exactly these), optionally under ``prefix``."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for split, count in (("training", 3), ("test", 2)):
            archive.writestr(f"{prefix}{split}/", "")
            rows = [HEADER]
            for i in range(count):
                ok, encoded = cv2.imencode(".jpg", rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8))
                assert ok
                archive.writestr(f"{prefix}{split}/{split}_{i}.jpg", encoded.tobytes())
                rows.append(f"{split}_{i}.jpg," + ",".join(["20"] * 136))
            if split == "training" or with_test_csv:
                archive.writestr(f"{prefix}{split}_frames_keypoints.csv", "\n".join(rows) + "\n")
        if macos_litter:
            archive.writestr("__MACOSX/._training_frames_keypoints.csv", b"\x00\x05\x16\x07")
    return buffer.getvalue()


class Server:
    """A one-file HTTP server: ``mode`` is "ok", "truncated" (promises more bytes than it sends, then
    closes) or "status500"."""

    def __init__(self, body: bytes, mode: str = "ok"):
        self.body, self.mode, self.requests = body, mode, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                outer.requests += 1
                if outer.mode == "status500":
                    self.send_error(500, "broken")
                    return
                declared = len(outer.body) + (5000 if outer.mode == "truncated" else 0)
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(outer.body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/train-test-data.zip"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, mode: str = "ok") -> Server:
        servers.append(Server(body, mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("KEYPOINTS_DATA", raising=False)


def test_download_unpacks_into_the_given_folder(tmp_path, serve, capsys):
    server = serve(upstream_zip(macos_litter=True))
    destination = tmp_path / "data"
    root = ensure_data(destination, url=server.url, quiet=False)
    assert root == destination.resolve()
    assert holds_data(destination)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary file or folder left
    assert sorted(p.name for p in destination.iterdir()) == [
        "test", "test_frames_keypoints.csv", "training", "training_frames_keypoints.csv",
    ]
    assert len(FacialKeypointsDataset(root, "training")) == 3 and len(FacialKeypointsDataset(root, "test")) == 2
    assert str(destination) in capsys.readouterr().out
    # already there: no second download
    assert ensure_data(destination, url=server.url, quiet=True) == root
    assert server.requests == 1


def test_download_goes_to_env_then_dot_data(tmp_path, serve, monkeypatch):
    server = serve(upstream_zip())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYPOINTS_DATA", str(tmp_path / "from_env"))
    assert ensure_data(url=server.url, quiet=True) == (tmp_path / "from_env").resolve()
    monkeypatch.delenv("KEYPOINTS_DATA")
    assert ensure_data(url=server.url, quiet=True) == (tmp_path / "data").resolve()
    assert holds_data(tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "from_env"]


def test_archive_with_a_top_folder_and_an_empty_destination(tmp_path, serve):
    server = serve(upstream_zip(prefix="train-test-data/"))
    (tmp_path / "data").mkdir()  # an existing, empty folder is fine
    root = ensure_data(tmp_path / "data", url=server.url, quiet=True)
    assert root == (tmp_path / "data").resolve() and holds_data(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _assert_nothing_left(parent: Path, before: list[str]) -> None:
    assert sorted(p.name for p in parent.iterdir()) == before


@pytest.mark.parametrize(
    "body, mode, message",
    [
        (upstream_zip(), "truncated", r"incomplete download|failed after"),
        (b"<html>Access denied</html>", "ok", r"did not send a zip archive"),
        (upstream_zip(with_test_csv=False), "ok", r"does not contain the expected members"),
        (b"", "status500", r"HTTP Error 500"),
        (upstream_zip()[:-30], "ok", r"not .*zip|corrupt"),  # the zip's central directory is cut
    ],
)
def test_failed_download_leaves_nothing_behind(tmp_path, serve, body, mode, message):
    server = serve(body, mode)
    (tmp_path / "unrelated.txt").write_text("keep me")
    with pytest.raises(DownloadError, match=message):
        ensure_data(tmp_path / "data", url=server.url, quiet=True)
    _assert_nothing_left(tmp_path, ["unrelated.txt"])


def test_connection_refused(tmp_path, serve):
    server = serve(b"")
    url = server.url
    server.close()  # nobody listens on that port any more
    with pytest.raises(DownloadError, match="failed"):
        ensure_data(tmp_path / "data", url=url, quiet=True)
    _assert_nothing_left(tmp_path, [])


def test_interrupted_download_leaves_nothing_behind(tmp_path, serve, monkeypatch):
    import keypoints.data.download as data_module

    server = serve(upstream_zip())

    def interrupted(url, out, quiet):
        out.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(data_module, "_download", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_data(tmp_path / "data", url=server.url, quiet=True)
    _assert_nothing_left(tmp_path, [])


def test_non_empty_destination_is_not_touched(tmp_path, serve):
    server = serve(upstream_zip())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="exists but does not hold the data"):
        ensure_data(tmp_path / "data", url=server.url, quiet=True)
    assert server.requests == 0
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("command", ["examples", "python -m keypoints train"])
def test_training_without_data_and_without_network_says_so_in_one_line(tmp_path, monkeypatch, capsys, command):
    """No --data, no $KEYPOINTS_DATA, no ./data, and the download fails: one line and exit code 1, as
    `python -m keypoints evaluate` (training used to end in a traceback)."""
    import keypoints.train
    from keypoints.cli import main, run, train_main

    def unreachable(data=None, url=None, quiet=False):
        raise DownloadError("downloading https://example.invalid/data.zip failed after 0 bytes: no network")

    monkeypatch.setattr(keypoints.train, "ensure_data", unreachable)
    monkeypatch.delenv("KEYPOINTS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    argv = ["--limit", "128", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-progress"]
    code = run(train_main, argv) if command == "examples" else main(["train", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: downloading") and "\n" not in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
