"""tinynet.optim.swa_utils: the averaging rules by hand, update_bn against a plain recomputation, and parity
with torch.optim.swa_utils (AveragedModel with EMA and SWA, update_bn) when PyTorch is installed."""
from __future__ import annotations

import numpy as np
import pytest

from tinynet.nn import BatchNorm1d, Linear, ReLU, Sequential
from tinynet.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn


def small_model(rng: np.random.Generator, dtype=np.float64) -> Sequential:
    return Sequential(Linear(4, 6, rng=rng, dtype=dtype), BatchNorm1d(6, dtype=dtype), ReLU(), Linear(6, 2, rng=rng, dtype=dtype))


def perturb(model: Sequential, rng: np.random.Generator) -> None:
    for p in model.parameters():
        p.data += rng.standard_normal(p.data.shape).astype(p.data.dtype)


def test_ema_and_swa_by_hand(rng):
    model = small_model(rng)
    snapshots = []
    ema, swa = AveragedModel(model, get_ema_multi_avg_fn(0.9)), AveragedModel(model)
    for _ in range(4):
        perturb(model, rng)
        snapshots.append(model[0].weight.data.copy())
        ema.update_parameters(model)
        swa.update_parameters(model)
    expected_ema = snapshots[0]
    for w in snapshots[1:]:
        expected_ema = 0.9 * expected_ema + 0.1 * w  # the first call copies
    np.testing.assert_allclose(ema.module[0].weight.data, expected_ema, rtol=1e-12)
    np.testing.assert_allclose(swa.module[0].weight.data, np.mean(snapshots, axis=0), rtol=1e-12)
    assert int(ema.n_averaged) == 4 and "n_averaged" in ema.state_dict() and "module.0.weight" in ema.state_dict()
    # the model itself is untouched and not shared
    assert not np.shares_memory(ema.module[0].weight.data, model[0].weight.data)
    np.testing.assert_array_equal(model[0].weight.data, snapshots[-1])


def test_use_buffers_averages_running_statistics(rng):
    model = small_model(rng)
    averaged = AveragedModel(model, get_ema_multi_avg_fn(0.5), use_buffers=True)
    model.train()
    means = []
    for _ in range(3):
        model(rng.standard_normal((8, 4)))
        means.append(model[1].running_mean.copy())
        averaged.update_parameters(model)
    np.testing.assert_allclose(averaged.module[1].running_mean, 0.25 * means[0] + 0.25 * means[1] + 0.5 * means[2])
    assert int(averaged.module[1].num_batches_tracked) == 3


def test_update_bn_is_the_statistics_of_the_whole_pass(rng):
    model = small_model(rng)
    batches = [rng.standard_normal((5, 4)) for _ in range(3)]
    model.eval()
    update_bn([(x, None) for x in batches], model)
    assert not model.training and model[1].momentum == 0.1  # mode and momentum restored
    # cumulative average of each batch's mean and unbiased variance of the BatchNorm1d's input
    inputs = [model[0](x) for x in batches]
    np.testing.assert_allclose(model[1].running_mean, np.mean([h.mean(axis=0) for h in inputs], axis=0), rtol=1e-12)
    np.testing.assert_allclose(model[1].running_var, np.mean([h.var(axis=0, ddof=1) for h in inputs], axis=0), rtol=1e-12)


def test_errors(rng):
    with pytest.raises(ValueError, match="decay"):
        get_ema_multi_avg_fn(1.5)
    with pytest.raises(TypeError, match="Module"):
        AveragedModel(object())
    averaged = AveragedModel(small_model(rng))
    with pytest.raises(ValueError, match="do not match"):
        averaged.update_parameters(Sequential(Linear(4, 6, rng=rng)))


@pytest.mark.parametrize("kind", ["ema", "swa"])
def test_torch_parity(kind, rng):
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils as tswa

    ours = small_model(rng)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    if kind == "ema":
        averaged, t_averaged = (
            AveragedModel(ours, get_ema_multi_avg_fn(0.8)),
            tswa.AveragedModel(theirs, multi_avg_fn=tswa.get_ema_multi_avg_fn(0.8)),
        )
    else:
        averaged, t_averaged = AveragedModel(ours), tswa.AveragedModel(theirs, multi_avg_fn=tswa.get_swa_multi_avg_fn())
    for _ in range(5):
        step = {k: rng.standard_normal(v.shape) for k, v in ours.state_dict().items() if k.endswith(("weight", "bias"))}
        for key, delta in step.items():
            ours.state_dict()[key][...] += delta
        with torch.no_grad():
            for key, value in theirs.state_dict().items():
                if key in step:
                    value += torch.tensor(step[key])
        averaged.update_parameters(ours)
        t_averaged.update_parameters(theirs)
    batches = [rng.standard_normal((7, 4)) for _ in range(3)]
    update_bn([(x, 0) for x in batches], averaged)
    tswa.update_bn([(torch.tensor(x), 0) for x in batches], t_averaged)
    t_state = {k: v.detach().numpy() for k, v in t_averaged.state_dict().items()}
    # torch's SWA rule divides by its int64 counter in float32 (relative differences ~1e-7); EMA is exact
    tol = dict(rtol=1e-10, atol=1e-12) if kind == "ema" else dict(rtol=1e-6, atol=1e-9)
    for key, value in averaged.state_dict().items():
        np.testing.assert_allclose(value, t_state[key], err_msg=key, **tol)
    averaged.eval()
    t_averaged.eval()
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(averaged(x), t_averaged(torch.tensor(x)).detach().numpy(), **tol)
