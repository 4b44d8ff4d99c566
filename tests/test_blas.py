"""tinynet.blas: matrix products in pieces on tinynet's threads, each piece on one BLAS thread."""
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from tinynet import blas
from tinynet._threads import available_cores

SHAPES = {  # name: (a, b), the layers' products: a batch, more rows than columns, more columns, one row
    "batch": ((64, 300), (4, 300, 2000)),
    "rows": ((2000, 96), (96, 400)),
    "columns": ((48, 1000), (1000, 1200)),
    "one row": ((1, 4400), (4400, 1000)),
}


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = blas.get_num_threads()
    yield blas.set_num_threads
    blas.set_num_threads(before)


def blas_threads() -> int:
    """NumPy's BLAS threads, read independently of tinynet.blas: the BLAS library under NumPy's folder."""
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    return [pool for pool in pools if "numpy" in os.path.basename(os.path.dirname(pool["filepath"]))][0]["num_threads"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", SHAPES)
def test_the_product_is_numpys_and_the_same_to_the_bit_for_any_thread_count(name, dtype, threads):
    """The pieces depend on the shapes only, so 1, 2, 3 or 8 threads give the same bits (and NumPy's product
    up to rounding: a block of columns may take BLAS's edge kernel where the whole product did not)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(shape).astype(dtype) for shape in SHAPES[name])
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    macs = np.prod(np.broadcast_shapes(a.shape[:-1], b.shape[:-2] + (1,))) * b.shape[-1] * a.shape[-1]
    assert macs >= blas.MIN_SPLIT_MACS or b.size >= blas.MIN_SPLIT_WEIGHTS  # cut into pieces
    results = []
    for count in (1, 2, 3, 8):
        threads(count)
        results.append(blas.matmul(a, b))
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(results[0], expected, rtol=tolerance, atol=tolerance * 10)
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_views_and_an_out_array_are_written_in_place(threads):
    """A transposed weight and a slice of a workspace, as Linear's backward and the conv's chunks pass them."""
    threads(2)
    rng = np.random.default_rng(1)
    weight, dout = rng.standard_normal((300, 500)).astype(np.float32), rng.standard_normal((64, 300)).astype(np.float32)
    workspace = np.full((80, 500), np.nan, np.float32)
    out = blas.matmul(dout, weight, out=workspace[8:72])
    assert out.base is workspace and not np.isnan(workspace[8:72]).any() and np.isnan(workspace[:8]).all()
    np.testing.assert_allclose(workspace[8:72], dout.astype(np.float64) @ weight, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(blas.matmul(dout.T, dout), dout.T.astype(np.float64) @ dout, rtol=1e-4, atol=1e-4)


def test_the_sum_of_products_is_the_weight_gradient_and_the_same_for_any_thread_count(threads):
    rng = np.random.default_rng(2)
    lefts, rights = rng.standard_normal((19, 12, 150)), rng.standard_normal((19, 40, 150))  # 19: ranges of 8, 8, 3
    start = rng.standard_normal((12, 40))
    expected = start + np.einsum("bmp,bnp->mn", lefts, rights)
    results = []
    for count in (1, 2, 5):
        threads(count)
        results.append(blas.sum_of_products(lefts, rights, start.copy()))
    np.testing.assert_allclose(results[0], expected, rtol=1e-12, atol=1e-12)
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_numpys_blas_is_left_on_one_thread_and_the_pieces_run_on_other_threads(threads, monkeypatch):
    import threading

    threads(2)
    seen = set()
    product = blas._one_product

    def recording(a, b, out):
        seen.add(threading.get_ident())
        assert blas_threads() == 1  # every piece multiplies on one BLAS thread
        product(a, b, out)

    monkeypatch.setattr(blas, "_one_product", recording)
    a, b = (np.ones(shape, np.float32) for shape in SHAPES["batch"])
    with threadpool_limits(2, "blas"):
        blas.matmul(a, b)
        assert blas_threads() == 1
    assert len(seen) == 2


def test_the_thread_count_is_validated(threads):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            threads(bad)
    env = dict(os.environ, TINYNET_NUM_THREADS="two")
    done = subprocess.run([sys.executable, "-c", "import tinynet"], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "TINYNET_NUM_THREADS: expected a positive integer, got 'two'" in done.stderr
    env["TINYNET_NUM_THREADS"] = "3"
    done = subprocess.run([sys.executable, "-c", "import tinynet.blas as b; print(b.get_num_threads())"],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "3"


def _product_in_child(queue):
    a, b = (np.ones(shape, np.float32) for shape in SHAPES["rows"])
    queue.put(float(blas.matmul(a, b)[0, 0]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_runs_products_on_its_own_threads(threads):
    """The pool's threads do not survive a fork: a child that inherited the pool object must not wait for them."""
    threads(2)
    blas.matmul(*(np.ones(shape, np.float32) for shape in SHAPES["rows"]))  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_product_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and queue.get(timeout=5) == SHAPES["rows"][0][1]


def test_inference_keeps_numpys_product_until_training_has_pinned_blas(threads, monkeypatch):
    """Under no_grad a product is NumPy's own (BLAS's threads) in a process that never trained; once a training
    product has put BLAS on one thread, inference is cut into pieces on tinynet's threads as training is (else it
    would run on one core)."""
    import tinynet

    threads(2)
    monkeypatch.setitem(blas._state, "pinned", False)
    runs = []
    run = blas._run
    monkeypatch.setattr(blas, "_run", lambda pieces: runs.append(len(pieces)) or run(pieces))
    a, b = (np.ones(shape, np.float32) for shape in SHAPES["rows"])
    with tinynet.no_grad():
        blas.matmul(a, b)
    assert runs == []  # NumPy's product
    blas.matmul(a, b)  # a training product
    assert runs == [blas.PIECES] and blas._state["pinned"] and blas_threads() == 1
    with tinynet.no_grad():
        inference = blas.matmul(a, b)
    assert runs == [blas.PIECES, blas.PIECES]
    np.testing.assert_array_equal(inference, blas.matmul(a, b))  # the same pieces: the training product's bits


def test_whole_products_give_inference_numpys_product_after_training(threads, monkeypatch):
    """Inside ``whole_products`` an inference product is NumPy's own even after training pinned BLAS (the bits of a
    process that never trained: keypoints.batch's workers and its calling process write the same bytes); a
    training product inside it still runs in pieces, and the context ends as it began."""
    import tinynet

    threads(2)
    monkeypatch.setitem(blas._state, "pinned", True)
    runs = []
    run = blas._run
    monkeypatch.setattr(blas, "_run", lambda pieces: runs.append(len(pieces)) or run(pieces))
    rng = np.random.default_rng(0)
    row, weight = rng.random((1, 6400), dtype=np.float32), rng.random((1000, 6400), dtype=np.float32)
    with blas.whole_products():
        with tinynet.no_grad():
            whole = blas.matmul(row, weight.T)
        assert runs == []
        blas.matmul(row, weight.T)  # gradients recorded: training's pieces
        assert len(runs) == 1
    np.testing.assert_array_equal(whole, np.matmul(row, weight.T))
    with tinynet.no_grad():
        blas.matmul(row, weight.T)
    assert len(runs) == 2 and blas._state["whole"] == 0


SPIN_SCRIPT = """
import sys, time
import numpy as np                      # NumPy first, as most scripts do
if sys.argv[1] == "tinynet":
    import tinynet  # noqa: F401
a = np.ones((512, 512), np.float32)
spent = []
for _ in range(5):
    a @ a                               # a product on BLAS's threads
    start = time.process_time()         # CPU time of every thread of the process
    time.sleep(0.05)                    # nothing to do: only spinning threads use the CPU now
    spent.append(time.process_time() - start)
print(sorted(spent)[2])
"""


@pytest.mark.skipif(available_cores() < 2, reason="one core: OpenBLAS starts no threads of its own")
@pytest.mark.skipif([library.internal_api for library in blas._blas()] != ["openblas"],
                    reason="NumPy's BLAS is not OpenBLAS: tinynet leaves it as it is")
def test_numpy_imported_first_gets_openblas_threads_that_sleep_when_idle():
    """After a product, NumPy's OpenBLAS threads spin for ~0.1 s (its default), on the cores the next OpenCV call or
    Numba kernel needs. ``import tinynet`` after NumPy makes them sleep at once: the CPU time a process uses while
    its main thread sleeps 50 ms after a product, without tinynet (the control: it must show the spinning) and
    with it; a user's own OPENBLAS_THREAD_TIMEOUT is kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
                                                            "OMP_NUM_THREADS")}
    spent = {}
    for case in ("numpy", "tinynet"):
        done = subprocess.run([sys.executable, "-c", SPIN_SCRIPT, case], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        spent[case] = float(done.stdout.split()[-1])
    if spent["numpy"] < 0.02:
        pytest.skip(f"this BLAS did not spin after a product ({spent['numpy'] * 1e3:.1f} ms of CPU in 50): nothing to show")
    assert spent["tinynet"] < 0.01, spent
    check = ("import numpy, ctypes, tinynet; (lib,) = tinynet.blas._blas();"
             " print(ctypes.CDLL(lib.filepath).openblas_thread_timeout())")
    for setting, expected in ((None, "1"), ("7", "7")):
        done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                              env=env if setting is None else {**env, "OPENBLAS_THREAD_TIMEOUT": setting})
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] == expected
