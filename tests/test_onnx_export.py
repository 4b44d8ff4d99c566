"""ONNX export: ``tinynet.onnx.to_onnx``, ``python -m keypoints export`` and ``examples/onnx_opencv.py``.

The exported graphs run in two independent engines, OpenCV's DNN module and onnxruntime, and must give
what tinynet's own forward pass gives (to 1e-4, absolute and relative to the output's range). The example
runs the whole photo pipeline without keypoints; it is compared with ``keypoints.predict_faces``.
"""
from __future__ import annotations

import ast
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from keypoint_fixtures import mirror_permutation, real_data_dir, write_checkpoint

import tinynet
from tinynet import nn

onnx = pytest.importorskip("onnx")
from tinynet.onnx import OPSET, UnsupportedModuleError, to_onnx  # noqa: E402

from keypoints.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnx_opencv.py"
TOLERANCE = 1e-4


def run_onnx(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's output on ``x`` in each engine that is installed (OpenCV always, onnxruntime if present)."""
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(x)
    outputs = {"cv2.dnn": net.forward()}
    try:
        import onnxruntime
    except ImportError:
        return outputs
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs["onnxruntime"] = session.run(None, {"input": x})[0]
    return outputs


def tinynet_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with tinynet.no_grad():
        return model(x)


def assert_close(outputs: dict[str, np.ndarray], expected: np.ndarray) -> None:
    """Each engine's output equals ``expected`` to 1e-4 absolute and 1e-4 of the output's range."""
    scale = float(np.abs(expected).max())
    for engine, out in outputs.items():
        assert out.shape == expected.shape, engine
        difference = float(np.abs(out - expected).max())
        assert difference <= TOLERANCE, f"{engine}: max abs difference {difference:.3g}"
        assert difference <= TOLERANCE * scale, f"{engine}: max difference {difference:.3g} of a range {scale:.3g}"


def randomize_batchnorm(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Running statistics and affine parameters away from 0 / 1, so exporting them matters."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean[...] = rng.normal(0.0, 0.3, module.num_features)
            module.running_var[...] = rng.uniform(0.3, 2.0, module.num_features)
            if module.weight is not None:
                module.weight.data[...] = rng.uniform(0.5, 1.5, module.num_features)
                module.bias.data[...] = rng.normal(0.0, 0.2, module.num_features)
    return model


# ---------------------------------------------------------------------------------------------- tinynet.onnx
def every_layer_model(rng: np.random.Generator) -> nn.Sequential:
    """One of each exported layer: (N, 2, 13, 16) -> (N, 4). Padding, strides, overlapping pools, a conv and a
    linear layer without bias, a batch norm without affine parameters, the fused block, a Winograd convolution, every
    activation."""
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, rng=rng),                   # 13 x 16, by Winograd
        nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2, 2),         # fused: 6 x 8
        nn.Conv2d(6, 5, (3, 2), stride=(1, 2), bias=False, rng=rng),  # 4 x 4
        nn.BatchNorm2d(5, affine=False), nn.LeakyReLU(0.2),
        nn.MaxPool2d(3, stride=1, padding=1),                     # overlapping windows, padding: 4 x 4
        nn.ELU(0.7), nn.Flatten(),
        nn.Linear(80, 12, rng=rng), nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(0.5),
        nn.Linear(12, 8, bias=False, rng=rng), nn.Sigmoid(),
        nn.Linear(8, 4, rng=rng), nn.Identity(), nn.LogSoftmax(dim=1),
    )
    return randomize_batchnorm(nn.use_winograd(nn.fuse(model)), rng).eval()


def test_every_layer_matches_tinynet_in_opencv_and_onnxruntime(tmp_path, rng):
    model = every_layer_model(rng)
    assert isinstance(model[1], nn.BatchNormReLUMaxPool2d)  # the fused block is what gets exported
    assert type(model[0]) is nn.WinogradConv2d and type(model[4]) is nn.Conv2d  # both exported as Conv
    path = tmp_path / "model.onnx"
    onnx.save(to_onnx(model, (2, 13, 16)), str(path))
    for batch in (1, 5):  # one graph, any batch size
        x = rng.normal(size=(batch, 2, 13, 16)).astype(np.float32)
        assert_close(run_onnx(path, x), tinynet_forward(model, x))


def test_softmax_along_the_last_dim(tmp_path, rng):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, rng=rng), nn.Softmax(dim=-1)).eval()
    path = tmp_path / "softmax.onnx"
    onnx.save(to_onnx(model, (3, 2, 2)), str(path))
    x = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    outputs = run_onnx(path, x)
    assert_close(outputs, tinynet_forward(model, x))
    np.testing.assert_allclose(outputs["cv2.dnn"].sum(axis=1), 1.0, atol=1e-6)


def test_graph_names_shapes_and_opset(rng):
    model = every_layer_model(rng)
    proto = to_onnx(model, (2, 13, 16), metadata={"note": "hello"})
    graph = proto.graph
    assert [opset.version for opset in proto.opset_import] == [OPSET]
    dims = [[d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in (graph.input[0], graph.output[0])]
    assert dims == [["N", 2, 13, 16], ["N", 4]]
    # the weights are the state dict's, under its keys (num_batches_tracked is training bookkeeping)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    assert set(state) <= set(weights)
    for key, value in state.items():
        np.testing.assert_array_equal(weights[key], value)
    assert weights["5.weight"].tolist() == [1.0] * 5 and weights["5.bias"].tolist() == [0.0] * 5  # affine=False
    # the fused block is its three nodes; Dropout and Identity add none
    ops = [node.op_type for node in graph.node]
    assert ops == ["Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "BatchNormalization", "LeakyRelu",
                   "MaxPool", "Elu", "Flatten", "Gemm", "BatchNormalization", "Tanh", "Gemm", "Sigmoid", "Gemm",
                   "LogSoftmax"]
    assert graph.node[1].name == "1/BatchNormalization" and graph.node[-1].output[0] == "output"
    assert {p.key: p.value for p in proto.metadata_props} == {"note": "hello"}
    fixed = to_onnx(model, (2, 13, 16), batch_size=3).graph.input[0].type.tensor_type.shape.dim[0]
    assert fixed.dim_value == 3


def test_a_model_that_is_the_identity(tmp_path, rng):
    path = tmp_path / "identity.onnx"
    onnx.save(to_onnx(nn.Sequential(nn.Dropout(0.5), nn.Identity()).eval(), (3, 4)), str(path))
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    for engine, out in run_onnx(path, x).items():
        np.testing.assert_array_equal(out, x, err_msg=engine)


def test_refusals(rng):
    model = every_layer_model(rng)
    with pytest.raises(ValueError, match=r"eval mode.*model\.eval\(\)"):
        to_onnx(model.train(), (2, 13, 16))
    model.eval()
    with pytest.raises(ValueError, match="expected input with 80 features"):  # tinynet's own check, named layer
        to_onnx(model, (2, 10, 16))
    with pytest.raises(ValueError, match="input_shape"):
        to_onnx(model, (2, 0, 16))
    with pytest.raises(ValueError, match="batch_size"):
        to_onnx(model, (2, 13, 16), batch_size=0)

    class Doubler(nn.Module):  # a layer of one's own: no converter until one is registered
        def forward(self, x):
            return 2 * x

    class MyReLU(nn.ReLU):  # a subclass may compute something else: not exported as its parent
        pass

    for layer, name in ((Doubler(), "Doubler"), (MyReLU(), "MyReLU")):
        with pytest.raises(UnsupportedModuleError, match=rf"no ONNX converter for {name} \(module '1'\)"):
            to_onnx(nn.Sequential(nn.Flatten(), layer).eval(), (4,))
    with pytest.raises(UnsupportedModuleError, match=r"Flatten\(start_dim=2"):
        to_onnx(nn.Sequential(nn.Flatten(2)).eval(), (2, 3, 3))


@pytest.mark.parametrize("head", ["classic", "dropout-last"])
def test_naimishnet_matches_tinynet(tmp_path, rng, head):
    import keypoints.export  # noqa: F401  (registers NaimishNet's converter)
    from keypoints.models import naimishnet

    model = randomize_batchnorm(naimishnet(96, seed=3, head=head), rng).eval()
    path = tmp_path / "naimishnet.onnx"
    onnx.save(to_onnx(model, (1, 96, 96)), str(path))
    x = rng.random((3, 1, 96, 96), dtype=np.float32)
    assert_close(run_onnx(path, x), tinynet_forward(model, x))


# ---------------------------------------------------------------------------------------------- the command
def test_export_command_writes_the_checkpoint_network_and_its_pipeline(tmp_path, rng, capsys):
    checkpoint = tmp_path / "best.npz"
    state = write_checkpoint(checkpoint, flip_test=True)
    assert main(["export", str(tmp_path / "out" / "net.onnx"), "--model", str(checkpoint)]) == 0
    assert "wrote" in capsys.readouterr().out
    path = tmp_path / "out" / "net.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.onnx"]  # no temporary left
    proto = onnx.load(str(path))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    # the pipeline, against values worked out by hand for S = 96
    assert meta["format"] == {"name": "keypoints-onnx", "version": 1}
    assert (meta["input_size"], meta["rescale"]) == (96, 107)
    assert meta["output_scale"] == pytest.approx(50 * 96 / 224) and meta["output_offset"] == pytest.approx(100 * 96 / 224)
    assert meta["flip_permutation"] == mirror_permutation().tolist()
    assert meta["flip_test"] is True and meta["checkpoint"] == "best.npz"
    assert (meta["face_box_scale"], meta["face_box_offset"]) == (1.98, [0.01, 0.06])
    # the network: the checkpoint's weights, loaded into a fresh NaimishNet here
    from keypoints.models import naimishnet

    model = naimishnet(96, seed=99)
    model.load_state_dict(state)
    x = rng.random((2, 1, 96, 96), dtype=np.float32)
    assert_close(run_onnx(path, x), tinynet_forward(model.eval(), x))


def test_a_checkpoint_with_closeup_stages_exports_their_networks_beside_it(tmp_path, rng, capsys):
    """NAME.eyes.onnx and NAME.mouth.onnx hold the checkpoint's close-up networks (OpenCV and onnxruntime give
    tinynet's outputs) and the face file's metadata names them with each stage's size, side, passes and crops;
    the example refuses a missing close-up file."""
    from keypoints.checkpoint import read_checkpoint, update_meta
    from keypoints.closeup.stage import EYES, MOUTH, CloseupStage, build_closeup_model

    checkpoint = tmp_path / "best.npz"
    write_checkpoint(checkpoint, flip_test=True)
    stages = {"eyes": CloseupStage(size=32, side=0.8, width=4, passes=2), "mouth": CloseupStage(size=24, side=1.4, width=4, passes=1)}
    nets = {name: randomize_batchnorm(build_closeup_model(region, stages[name], rng), rng)
            for name, region in (("eyes", EYES), ("mouth", MOUTH))}
    update_meta(checkpoint, entries={"closeup": {name: net.state_dict() for name, net in nets.items()}},
                closeup={name: stage.to_dict() for name, stage in stages.items()})
    path = tmp_path / "out" / "net.onnx"
    assert main(["export", str(path), "--model", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "net.eyes.onnx: a close-up stage's network" in out and "net.mouth.onnx" in out
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.eyes.onnx", "net.mouth.onnx", "net.onnx"]
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert list(meta["closeup"]) == ["eyes", "mouth"]  # the order prediction reads them in
    assert meta["closeup"]["eyes"] == {"file": "net.eyes.onnx", "size": 32, "side": 0.8, "width": 4, "passes": 2,
                                       "crops": [[[36, 37, 38, 39, 40, 41], False], [[45, 44, 43, 42, 47, 46], True]]}
    perm = mirror_permutation()
    assert meta["closeup"]["mouth"]["crops"] == [[list(range(48, 68)), False], [perm[48:68].tolist(), True]]
    loaded = read_checkpoint(checkpoint)[0]["closeup_models"]
    for name, size in (("eyes", 32), ("mouth", 24)):
        x = rng.random((5, 1, size, size), dtype=np.float32)
        assert_close(run_onnx(path.parent / f"net.{name}.onnx", x), tinynet_forward(loaded[name], x))
    (path.parent / "net.mouth.onnx").unlink()
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 128, np.uint8))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(EXAMPLE), str(path), str(photo)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {path}") and done.stderr.count("\n") == 1, done.stderr


def test_a_checkpoint_without_closeup_stages_says_so_in_its_metadata(tmp_path):
    checkpoint = tmp_path / "best.npz"
    write_checkpoint(checkpoint)
    path = tmp_path / "net.onnx"
    assert main(["export", str(path), "--model", str(checkpoint)]) == 0
    assert {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}["closeup"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "net.onnx"]


@pytest.mark.parametrize("permutation", [None, [1, 0, 2, 4, 3]])
def test_a_model_of_your_own_points_exports_its_count_and_mirror(tmp_path, rng, permutation):
    """A 5-point model (trained on .pts files): the graph gives 10 numbers per face, the metadata says K = 5 and
    carries the model's own mirror permutation, or null when it has none."""
    from keypoints.checkpoint import save_weights
    from keypoints.models import naimishnet
    from keypoints.recipes import Recipe

    model = naimishnet(96, seed=3, num_points=5)
    state = {name: value.copy() for name, value in model.state_dict().items()}
    checkpoint = tmp_path / "five.npz"
    save_weights(checkpoint, Recipe(size=96, flip_test=permutation is not None), state, epoch=1, loss=0.5,
                 num_points=5, flip_permutation=permutation)
    path = tmp_path / "five.onnx"
    assert main(["export", str(path), "--model", str(checkpoint)]) == 0
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["num_points"] == 5 and meta["flip_permutation"] == permutation
    assert meta["flip_test"] is (permutation is not None) and meta["output"].startswith("(N, 10): 5 points")
    x = rng.random((3, 1, 96, 96), dtype=np.float32)
    outputs = run_onnx(path, x)
    assert all(out.shape == (3, 10) for out in outputs.values())
    assert_close(outputs, tinynet_forward(model.eval(), x))


def test_export_command_errors(tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "best.npz"
    write_checkpoint(checkpoint)
    before = checkpoint.read_bytes()
    assert main(["export", str(checkpoint), "--model", str(checkpoint)]) == 2  # never over its input
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: output") and "this is the input" in error and "\n" not in error
    assert checkpoint.read_bytes() == before

    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(broken)]) == 2  # what every other command says about this file ...
    expected = capsys.readouterr().err
    assert main(["export", str(tmp_path / "x.onnx"), "--model", str(broken)]) == 2  # ... export says too
    assert capsys.readouterr().err == expected and expected.startswith("error: ")
    assert main(["export", str(tmp_path / "x.onnx"), "--model", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz: no such checkpoint file" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the package were not installed
    assert main(["export", str(tmp_path / "x.onnx"), "--model", str(checkpoint)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and 'pip install -e ".[onnx]"' in error and "\n" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "broken.npz"]


# ---------------------------------------------------------------------------------------------- the example
def test_example_imports_only_opencv_and_numpy():
    tree = ast.parse(EXAMPLE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "argparse", "json", "os", "sys", "cv2", "numpy"}


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "naimishnet96.onnx"
    assert main(["export", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    """scikit-image's astronaut (a face the network never saw) as a PNG file, BGR."""
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def run_example(model: Path, photo: Path, *options: str) -> list[dict]:
    """The example's faces on ``photo``; it also draws them (the picture has the photo's shape)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # it needs nothing of this project
    out = photo.parent / "out"
    out.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, str(EXAMPLE), str(model), str(photo), "--json", str(out / "faces.json"),
                           "-o", str(out / "drawn.png"), *options], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["drawn.png", "faces.json"]  # no temporary left
    assert cv2.imread(str(out / "drawn.png")).shape == cv2.imread(str(photo)).shape
    return json.loads((out / "faces.json").read_text())["faces"]


def test_example_errors(shipped_onnx, tmp_path, rng):
    plain = tmp_path / "plain.onnx"  # a graph without the keypoints metadata
    onnx.save(to_onnx(nn.Sequential(nn.Flatten()).eval(), (1, 4, 4)), str(plain))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 100, 3), 128, np.uint8))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for model, photo, code, message in ((plain, blank, 2, "not a model written by 'python -m keypoints export'"),
                                        (shipped_onnx, tmp_path / "none.png", 2, "none.png: cannot read it"),
                                        (shipped_onnx, plain, 2, "plain.onnx: not an image OpenCV can read"),
                                        (shipped_onnx, blank, 1, "no face found")):
        done = subprocess.run([sys.executable, str(EXAMPLE), str(model), str(photo)], capture_output=True, text=True,
                              timeout=120, env=env)
        assert done.returncode == code and message in done.stderr, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    before = blank.read_bytes()
    done = subprocess.run([sys.executable, str(EXAMPLE), str(shipped_onnx), str(blank), "-o", str(blank)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "this is an input" in done.stderr and blank.read_bytes() == before


def test_example_pipeline_is_keypoints_pipeline(shipped_onnx, astronaut):
    """The example's own steps (detection, framing, rescale and crop, flip averaging, two refinement passes,
    four test frames, the way back to the photo, the close-up stages' passes), fed by tinynet's networks, give
    keypoints' points: within 0.05 pixel, as the test below. The example reads the faces and their mirror images
    in two calls, the predictor in one batch; tinynet's outputs then differ in their last bits, and
    ``cv2.warpAffine``'s 1/32-pixel grid can turn that into a hundredth of a pixel in a refinement frame
    (0.012 px measured on this photo with the close-up stages off; one plain read agrees to 1e-5)."""
    import keypoints
    from keypoints.wild.faces import predict_faces

    example = runpy.run_path(str(EXAMPLE))
    meta = example["read_metadata"](str(shipped_onnx))
    predictor = keypoints.load_predictor()
    assert (predictor.refine_passes, predictor.flip, len(predictor.test_frames)) == (2, True, 4)  # all of it runs
    assert predictor.closeup_reads() == {"eyes": 2, "mouth": 2}

    class TinynetNetwork:  # cv2.dnn's two calls, answered by one of the predictor's own networks
        def __init__(self, model):
            self.model = model

        def setInput(self, x):
            self.x = x

        def forward(self):
            return tinynet_forward(self.model, self.x)

    photo = cv2.imread(str(astronaut), cv2.IMREAD_COLOR)
    boxes = example["detect"](cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    gray = cv2.cvtColor(photo.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2GRAY)
    points = example["face_points"](TinynetNetwork(predictor.model), gray, boxes, meta, 2, True, meta["test_frames"])
    for name, stage in meta["closeup"].items():
        points = example["read_closeup"](TinynetNetwork(predictor.closeup_models[name]), gray, points, stage, 2)
    faces = predict_faces(predictor, photo, detector="haar")
    assert len(faces) == len(boxes) == 1
    np.testing.assert_array_equal(boxes[0], faces[0].box)
    np.testing.assert_allclose(points[0], faces[0].points, atol=0.05)


def test_example_on_a_photo_gives_keypoints_points(shipped_onnx, astronaut):
    """With OpenCV running the ONNX file: one plain read equals keypoints' to a thousandth of a pixel; the
    whole pipeline to a twentieth. (Each refinement frame is built from the previous points, and
    ``cv2.warpAffine`` samples on a 1/32-pixel grid: network outputs that differ by 1e-5 can move a sample
    to the next grid position. The test above shows the pipeline itself is keypoints'.)"""
    import keypoints
    from keypoints.wild.faces import predict_faces

    photo = cv2.imread(str(astronaut), cv2.IMREAD_COLOR)
    for options, overrides, tolerance in (
        (("--refine-passes", "0", "--no-flip", "--closeup-passes", "0"), {"flip": False, "refine_passes": 0, "closeup_passes": 0},
         1e-3),
        ((), {}, 0.05),
    ):
        faces = run_example(shipped_onnx, astronaut, *options)
        expected = predict_faces(keypoints.load_predictor(**overrides), photo, detector="haar")
        assert [face["box"] for face in faces] == [face.box.tolist() for face in expected]
        for face, reference in zip(faces, expected):
            np.testing.assert_allclose(face["points"], reference.points, atol=tolerance)


# ---------------------------------------------------------------------------------------------- real faces
@pytest.mark.integration
@pytest.mark.slow
def test_shipped_model_on_the_test_faces(shipped_onnx):
    """The shipped network on the centre crops ``python -m keypoints evaluate`` reads (``Predictor.preprocess``)
    of all 770 test faces: OpenCV and onnxruntime give tinynet's outputs to 1e-4."""
    import keypoints
    from keypoints.evaluate import load_split

    images, _, _ = load_split(real_data_dir(), "test")
    predictor = keypoints.load_predictor()
    crops = np.stack([predictor.preprocess(image)[0] for image in images])[:, None]  # (770, 1, 96, 96)
    expected = np.concatenate([tinynet_forward(predictor.model, crops[i : i + 128]) for i in range(0, len(crops), 128)])
    assert_close(run_onnx(shipped_onnx, crops), expected)

