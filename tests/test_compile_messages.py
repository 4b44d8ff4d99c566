"""tinynet.report_compilation: a first run says which kernel Numba compiles while it does; a warm run is silent."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
import numpy as np
import tinynet
tinynet.report_compilation(sys.stderr)
tinynet.nn.ReLU()(np.linspace(-1, 1, 10, dtype=np.float32))
"""


def run(cache: Path) -> str:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.slow
def test_a_cold_cache_names_each_kernel_it_compiles_and_a_warm_one_says_nothing(tmp_path):
    cold = run(tmp_path)
    assert "tinynet: compiling relu_forward_kernel (float32) for this machine" in cold
    assert "tinynet: relu_forward_kernel compiled in" in cold
    assert run(tmp_path) == ""  # the kernel now comes from the cache: nothing is compiled, nothing said
