"""Optimizers and schedulers against update rules written out by hand (and PyTorch when installed).

The references below are deliberately naive: float64, one expression per line of the paper's
algorithm, new arrays everywhere. The first steps of each optimizer are also checked against
numbers worked out on paper.
"""
from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.nn.linear import Linear
from tinynet.nn import Parameter
from tinynet.optim.adam import Adam, AdamW
from tinynet.optim.lr_scheduler import CosineAnnealingLR, StepLR
from tinynet.optim.sgd import SGD


# ---------------------------------------------------------------------------------------------- references
def reference_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """PyTorch's SGD, written out in float64; returns the parameter after every step."""
    p = np.array(p, dtype=np.float64)
    buf = None
    trajectory = []
    for g in grads:
        g = np.asarray(g, dtype=np.float64) + weight_decay * p
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            direction = g + momentum * buf if nesterov else buf
        else:
            direction = g
        p = p - lr * direction
        trajectory.append(p)
    return trajectory


def reference_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    """Kingma and Ba's Adam (with PyTorch's eps placement), AMSGrad and AdamW, in float64."""
    beta1, beta2 = betas
    p = np.array(p, dtype=np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    v_max = np.zeros_like(p)
    trajectory = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, dtype=np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = np.maximum(v_max, v)
        m_hat = m / (1 - beta1**t)
        v_hat = (v_max if amsgrad else v) / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        trajectory.append(p)
    return trajectory


def run(optimizer_cls, p0, grads, dtype=np.float64, **kwargs):
    """Step a fresh optimizer over one parameter starting at ``p0``; returns the trajectory."""
    param = Parameter(np.asarray(p0, dtype=dtype))
    opt = optimizer_cls([param], **kwargs)
    trajectory = []
    for g in grads:
        param.grad = np.asarray(g, dtype=dtype).copy()
        opt.step()
        trajectory.append(param.data.copy())
    return trajectory


P0 = np.array([1.0, -2.0, 0.5])
GRADS = [np.array([0.5, -3.0, 0.0]), np.array([1.5, 1.0, -0.25]), np.array([-0.5, 2.0, 4.0])]


def assert_trajectories(actual, expected, rtol=1e-12, atol=1e-14):
    assert len(actual) == len(expected)
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"step {step}")


# ---------------------------------------------------------------------------------------------- SGD
def test_sgd_plain_by_hand():
    # p <- p - lr g, with lr = 0.1
    got = run(SGD, P0, GRADS[:2], lr=0.1)
    np.testing.assert_allclose(got[0], [1.0 - 0.05, -2.0 + 0.3, 0.5], rtol=1e-15)
    np.testing.assert_allclose(got[1], [0.95 - 0.15, -1.7 - 0.1, 0.5 + 0.025], rtol=1e-15)


def test_sgd_momentum_by_hand():
    # b1 = g1 (no dampening on the first step); b2 = 0.9 b1 + g2; p <- p - lr b
    lr, mu = 0.1, 0.9
    got = run(SGD, [1.0, 2.0], [[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]], lr=lr, momentum=mu)
    b1 = np.array([1.0, -1.0])
    p1 = np.array([1.0, 2.0]) - lr * b1  # [0.9, 2.1]
    b2 = mu * b1 + np.array([2.0, 0.5])  # [2.9, -0.4]
    p2 = p1 - lr * b2  # [0.61, 2.14]
    b3 = mu * b2 + np.array([0.0, 1.0])  # [2.61, 0.64]
    p3 = p2 - lr * b3  # [0.349, 2.076]
    np.testing.assert_allclose(got, [p1, p2, p3], rtol=1e-14)
    np.testing.assert_allclose(got[2], [0.349, 2.076], rtol=1e-12)


def test_sgd_dampening_skips_first_step():
    # b1 = g1 exactly (PyTorch), then b2 = mu b1 + (1 - tau) g2
    got = run(SGD, [0.0], [[1.0], [1.0]], lr=1.0, momentum=0.5, dampening=0.75)
    np.testing.assert_allclose(got[0], [-1.0])  # b1 = 1
    np.testing.assert_allclose(got[1], [-1.0 - (0.5 * 1.0 + 0.25 * 1.0)])  # b2 = 0.75


def test_sgd_nesterov_by_hand():
    # d = g + mu b
    lr, mu = 0.1, 0.9
    got = run(SGD, [1.0], [[1.0], [2.0]], lr=lr, momentum=mu, nesterov=True)
    # step 1: b = 1, d = 1 + 0.9 = 1.9, p = 1 - 0.19 = 0.81
    # step 2: b = 0.9 + 2 = 2.9, d = 2 + 2.61 = 4.61, p = 0.81 - 0.461 = 0.349
    np.testing.assert_allclose(got, [[0.81], [0.349]], rtol=1e-14)


def test_sgd_weight_decay_by_hand():
    # g <- g + wd p: with g = 0 the parameter shrinks by (1 - lr wd) per step
    got = run(SGD, [2.0, -4.0], [[0.0, 0.0], [0.0, 0.0]], lr=0.5, weight_decay=0.1)
    np.testing.assert_allclose(got, [[1.9, -3.8], [1.805, -3.61]], rtol=1e-14)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.05, momentum=0.8, dampening=0.3),
        dict(lr=0.1, momentum=0.9, nesterov=True),
        dict(lr=0.1, momentum=0.9, weight_decay=0.05),
        dict(lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True),
        dict(lr=0.1, momentum=0.7, dampening=0.2, weight_decay=0.05),
    ],
)
def test_sgd_matches_reference(kwargs):
    assert_trajectories(run(SGD, P0, GRADS, **kwargs), reference_sgd(P0, GRADS, **kwargs))


# ---------------------------------------------------------------------------------------------- Adam / AdamW
def test_adam_first_step_moves_by_lr():
    # m_hat = g and v_hat = g^2 at t = 1, so p <- p - lr g / (|g| + eps): a step of lr against sign(g)
    got = run(Adam, [1.0, -2.0], [[0.5, -3.0]], lr=0.1)
    np.testing.assert_allclose(got[0], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 3.0 / (3.0 + 1e-8)], rtol=1e-15)
    np.testing.assert_allclose(got[0], [0.9, -1.9], rtol=1e-7)


def test_adam_two_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    g1, g2 = 2.0, -1.0
    got = run(Adam, [0.0], [[g1], [g2]], lr=lr)
    m1, v1 = 0.1 * g1, 0.001 * g1**2  # 0.2, 0.004
    p1 = 0.0 - lr * (m1 / 0.1) / (math.sqrt(v1 / 0.001) + eps)  # -0.01
    m2 = 0.9 * m1 + 0.1 * g2  # 0.08
    v2 = 0.999 * v1 + 0.001 * g2**2  # 0.004996
    bc1, bc2 = 1 - b1**2, 1 - b2**2  # 0.19, 0.001999
    p2 = p1 - lr * (m2 / bc1) / (math.sqrt(v2 / bc2) + eps)
    np.testing.assert_allclose(got[0], [p1], rtol=1e-14)
    np.testing.assert_allclose(got[1], [p2], rtol=1e-14)
    np.testing.assert_allclose(got[1], [-0.01 - 0.01 * (0.08 / 0.19) / math.sqrt(0.004996 / 0.001999)], rtol=1e-7)


def test_adam_l2_weight_decay_enters_the_gradient():
    # g = 0: the only gradient is wd p, so the first step is again lr against sign(p)
    got = run(Adam, [3.0, -0.5], [[0.0, 0.0]], lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(got[0], [2.9, -0.4], rtol=1e-7)


def test_adamw_decouples_weight_decay():
    # g = 0: m = v = 0, so only p <- p (1 - lr wd) acts
    got = run(AdamW, [3.0, -0.5], [[0.0, 0.0], [0.0, 0.0]], lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(got, [[2.85, -0.475], [2.7075, -0.45125]], rtol=1e-14)


def test_amsgrad_uses_the_running_maximum():
    # a large gradient then small ones: v decays but v_max stays, so AMSGrad takes smaller steps
    grads = [[10.0], [0.1], [0.1]]
    plain = run(Adam, [0.0], grads, lr=0.1)
    ams = run(Adam, [0.0], grads, lr=0.1, amsgrad=True)
    # step 3 by hand: v_max = v1 = 0.1 (v falls to 0.0999 + 1e-5 ... below it)
    m = [1.0, 0.9 * 1.0 + 0.01, 0.9 * 0.91 + 0.01]
    v = [0.1, 0.999 * 0.1 + 1e-5, 0.999 * (0.999 * 0.1 + 1e-5) + 1e-5]
    assert v[2] < v[0]
    p = 0.0
    for t in range(3):
        p -= 0.1 * (m[t] / (1 - 0.9 ** (t + 1))) / (math.sqrt(v[0] / (1 - 0.999 ** (t + 1))) + 1e-8)
    np.testing.assert_allclose(ams[2], [p], rtol=1e-13)
    assert abs(ams[2][0]) < abs(plain[2][0])


@pytest.mark.parametrize("optimizer_cls", [Adam, AdamW])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.01),
        dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True),
        dict(lr=0.02, betas=(0.0, 0.0)),
    ],
)
def test_adam_matches_reference(optimizer_cls, kwargs):
    kwargs.setdefault("weight_decay", 0.0)
    expected = reference_adam(P0, GRADS, decoupled=optimizer_cls is AdamW, **kwargs)
    assert_trajectories(run(optimizer_cls, P0, GRADS, **kwargs), expected)


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    lr=st.floats(1e-4, 1.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.0, 0.9999),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.3]),
    amsgrad=st.booleans(),
    decoupled=st.booleans(),
)
def test_adam_matches_reference_random(seed, lr, beta1, beta2, weight_decay, amsgrad, decoupled):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal((2, 3))
    grads = [rng.standard_normal((2, 3)) * 10.0 ** rng.uniform(-3, 2) for _ in range(4)]
    kwargs = dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, amsgrad=amsgrad)
    got = run(AdamW if decoupled else Adam, p0, grads, **kwargs)
    assert_trajectories(got, reference_adam(p0, grads, decoupled=decoupled, **kwargs), rtol=1e-10, atol=1e-12)


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    lr=st.floats(1e-4, 1.0),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    dampening=st.sampled_from([0.0, 0.1]),
    weight_decay=st.sampled_from([0.0, 0.01]),
    nesterov=st.booleans(),
)
def test_sgd_matches_reference_random(seed, lr, momentum, dampening, weight_decay, nesterov):
    nesterov = nesterov and momentum > 0 and dampening == 0
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
    assert_trajectories(run(SGD, p0, grads, **kwargs), reference_sgd(p0, grads, **kwargs), rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------- dtype and memory
OPTIMIZERS = [
    (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    (Adam, dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    (AdamW, dict(lr=0.01, weight_decay=0.05)),
]


def test_defaults_match_torch():
    p = _param()
    assert Adam([p]).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)
    assert AdamW([p]).defaults["weight_decay"] == 1e-2
    assert SGD([p], lr=0.1).defaults == dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)


@pytest.mark.parametrize("optimizer_cls, kwargs", OPTIMIZERS)
def test_float32_stays_float32(optimizer_cls, kwargs):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(3)]
    param = Parameter(p0.astype(np.float32))
    opt = optimizer_cls([param], **kwargs)
    # a scheduler or a user may store NumPy float64 scalars in the group: they must not upcast
    opt.param_groups[0]["lr"] = np.float64(kwargs["lr"])
    for g in grads:
        param.grad = g.astype(np.float32)
        opt.step()
        assert param.data.dtype == np.float32
    for value in opt.state[param].values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    is_adam = optimizer_cls in (Adam, AdamW)
    reference = reference_adam if is_adam else reference_sgd
    extra = dict(decoupled=optimizer_cls is AdamW) if is_adam else {}
    expected = reference(p0.astype(np.float32).astype(np.float64), [g.astype(np.float32) for g in grads],
                         **kwargs, **extra)[-1]
    np.testing.assert_allclose(param.data, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer_cls, kwargs", OPTIMIZERS)
def test_step_allocates_no_full_size_arrays(optimizer_cls, kwargs):
    # after the first step (state and the scratch buffer exist) a step must not allocate anything
    # the size of the parameter: no float64 temporaries, no fresh arrays per operation
    param = Parameter(np.ones(100_000, dtype=np.float32))
    param.grad = np.full(100_000, 0.5, dtype=np.float32)
    opt = optimizer_cls([param], **kwargs)
    opt.step()
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < param.data.nbytes // 4, f"a step allocated {peak} bytes for a {param.data.nbytes}-byte parameter"


def test_gradient_is_not_modified_by_step():
    param = Parameter(np.array([1.0, 2.0]))
    grad = np.array([0.5, -0.5])
    for optimizer_cls, kwargs in OPTIMIZERS:
        param.grad = grad.copy()
        optimizer_cls([param], **kwargs).step()
        np.testing.assert_array_equal(param.grad, grad)


# ---------------------------------------------------------------------------------------------- groups, skipping, zero_grad
def test_param_groups_have_their_own_hyper_parameters():
    w = Parameter(np.array([1.0, 1.0]))
    b = Parameter(np.array([1.0]))
    opt = SGD([{"params": [w]}, {"params": [b], "lr": 0.5, "weight_decay": 0.0}], lr=0.1, weight_decay=1.0)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 1.0
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[1]["momentum"] == 0.0  # filled from the defaults
    w.grad = np.array([1.0, 0.0])
    b.grad = np.array([1.0])
    opt.step()
    np.testing.assert_allclose(w.data, [1.0 - 0.1 * (1.0 + 1.0), 1.0 - 0.1 * 1.0])
    np.testing.assert_allclose(b.data, [0.5])


def test_no_weight_decay_for_biases_recipe():
    lin = Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    decay = [p for name, p in lin.named_parameters() if not name.endswith("bias")]
    no_decay = [p for name, p in lin.named_parameters() if name.endswith("bias")]
    opt = AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.1, weight_decay=0.5)
    bias_before = lin.bias.data.copy()
    weight_before = lin.weight.data.copy()
    lin.weight.grad = np.zeros_like(lin.weight.data)
    lin.bias.grad = np.zeros_like(lin.bias.data)
    opt.step()  # zero gradients: only decoupled decay moves anything
    np.testing.assert_array_equal(lin.bias.data, bias_before)
    np.testing.assert_allclose(lin.weight.data, weight_before * (1 - 0.1 * 0.5), rtol=1e-15)


def test_add_param_group():
    a = Parameter(np.array([1.0]))
    b = Parameter(np.array([1.0]))
    opt = SGD([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 1.0})
    a.grad = np.array([1.0])
    b.grad = np.array([1.0])
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.0])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


@pytest.mark.parametrize("optimizer_cls, kwargs", OPTIMIZERS)
def test_parameters_without_grad_are_skipped(optimizer_cls, kwargs):
    a = Parameter(np.array([1.0, 2.0]))
    b = Parameter(np.array([3.0]))
    opt = optimizer_cls([a, b], **kwargs)
    a.grad = np.array([0.5, 0.5])
    opt.step()
    np.testing.assert_array_equal(b.data, [3.0])  # untouched, even by weight decay
    assert not opt.state.get(b)
    b.grad = np.array([1.0])
    opt.step()
    if optimizer_cls in (Adam, AdamW):
        assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1  # per-parameter step counts
    # b's first update must equal a lone first step from 3.0
    expected = run(optimizer_cls, [3.0], [[1.0]], **kwargs)[0]
    np.testing.assert_allclose(b.data, expected, rtol=1e-15)


def test_zero_grad():
    lin = Linear(3, 2, rng=np.random.default_rng(0))
    opt = SGD(lin.parameters(), lr=0.1)
    for p in lin.parameters():
        p.grad = np.ones_like(p.data)
    kept = lin.weight.grad
    opt.zero_grad(set_to_none=False)
    assert lin.weight.grad is kept  # filled in place, memory kept
    np.testing.assert_array_equal(lin.weight.grad, 0)
    np.testing.assert_array_equal(lin.bias.grad, 0)
    opt.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None
    opt.zero_grad(set_to_none=False)  # None stays None
    assert lin.weight.grad is None


def test_step_closure_returns_loss():
    param = Parameter(np.array([2.0]))
    opt = SGD([param], lr=0.25)

    def closure():
        param.grad = 2 * param.data  # d/dp p^2
        return float(param.data[0] ** 2)

    assert opt.step(closure) == 4.0
    np.testing.assert_allclose(param.data, [1.0])


def test_gradient_shape_or_dtype_mismatch_raises():
    param = Parameter(np.zeros((2, 3), dtype=np.float32))
    opt = Adam([param])
    param.grad = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*gradient has shape \(3, 2\)"):
        opt.step()
    param.grad = np.zeros((2, 3), dtype=np.float64)
    with pytest.raises(ValueError, match="float64"):
        opt.step()


# ---------------------------------------------------------------------------------------------- validation
def _param():
    return Parameter(np.zeros(2))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD([_param()], lr=-0.1), "lr"),
        (lambda: SGD([_param()], lr=float("nan")), "lr"),
        (lambda: SGD([_param()], lr=0.1, momentum=-0.5), "momentum"),
        (lambda: SGD([_param()], lr=0.1, weight_decay=-1e-4), "weight_decay"),
        (lambda: SGD([_param()], lr=0.1, nesterov=True), "Nesterov"),
        (lambda: SGD([_param()], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda: Adam([_param()], lr=-1e-3), "lr"),
        (lambda: Adam([_param()], betas=(1.0, 0.999)), "beta1"),
        (lambda: Adam([_param()], betas=(-0.1, 0.999)), "beta1"),
        (lambda: Adam([_param()], betas=(0.9, 1.0)), "beta2"),
        (lambda: Adam([_param()], betas=(0.9,)), "betas"),
        (lambda: Adam([_param()], eps=-1e-8), "eps"),
        (lambda: Adam([_param()], weight_decay=-0.1), "weight_decay"),
        (lambda: AdamW([_param()], weight_decay=-0.1), "weight_decay"),
        (lambda: AdamW([_param()], lr="0.1"), "lr"),
        (lambda: Adam([{"params": [_param()], "lr": -1.0}]), "lr"),  # per-group values are checked too
        (lambda: SGD([], lr=0.1), "empty parameter list"),
        (lambda: Adam([]), "empty parameter list"),
    ],
)
def test_bad_hyper_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_parameter_in_two_groups_or_twice_raises():
    p = _param()
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        SGD([p, p], lr=0.1)


def test_wrong_params_argument_raises_type_error():
    lin = Linear(2, 2, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="model.parameters"):
        SGD(lin, lr=0.1)
    with pytest.raises(TypeError, match="expected a tinynet Parameter"):
        SGD([np.zeros(3)], lr=0.1)


# ---------------------------------------------------------------------------------------------- state dicts
def _model_and_grads(seed=0, steps=6):
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.standard_normal((3, 2))), Parameter(rng.standard_normal(2)),
              Parameter(rng.standard_normal(4))]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(steps)]
    return params, grads


def _make(optimizer_cls, params, kwargs):
    # two groups, to check that indices run through the groups in order
    return optimizer_cls([{"params": params[:2]}, {"params": params[2:], "lr": kwargs["lr"] / 2}], **kwargs)


def _apply(opt, params, grads):
    for g, p in zip(grads, params):
        p.grad = g.copy()
    opt.step()


def _walk(value):
    """Every leaf of a nested state dict."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


@pytest.mark.parametrize("optimizer_cls, kwargs", OPTIMIZERS)
@pytest.mark.parametrize("string_keys", [False, True])
def test_state_dict_round_trip_resumes_exactly(optimizer_cls, kwargs, string_keys):
    params, grads = _model_and_grads()
    opt = _make(optimizer_cls, params, kwargs)
    for step_grads in grads[:3]:
        _apply(opt, params, step_grads)
    saved = opt.state_dict()
    snapshot = [p.data.copy() for p in params]

    # only plain data: what serialization can store without pickle
    for leaf in _walk(saved):
        assert leaf is None or isinstance(leaf, (np.ndarray, int, float, bool, str)), type(leaf)
    assert set(saved) == {"state", "param_groups"}
    assert saved["param_groups"][0]["params"] == [0, 1] and saved["param_groups"][1]["params"] == [2]
    if optimizer_cls is not SGD:
        assert saved["param_groups"][0]["betas"] == [0.9, 0.999]
        assert saved["state"][0]["step"] == 3 and type(saved["state"][0]["step"]) is int
    if string_keys:  # as after a JSON round trip
        saved = {"state": {str(k): v for k, v in saved["state"].items()}, "param_groups": saved["param_groups"]}

    # continue the original run
    for step_grads in grads[3:]:
        _apply(opt, params, step_grads)
    final = [p.data.copy() for p in params]

    # a fresh model and optimizer, restored from the snapshot, must follow the same trajectory
    fresh = [Parameter(s) for s in snapshot]
    resumed = _make(optimizer_cls, fresh, dict(kwargs, lr=123.0))  # lr comes from the state dict
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == kwargs["lr"]
    for step_grads in grads[3:]:
        _apply(resumed, fresh, step_grads)
    for a, b in zip(final, fresh):
        np.testing.assert_array_equal(a, b.data)


def test_state_dict_is_a_snapshot_and_load_copies():
    params, grads = _model_and_grads()
    opt = Adam(params, lr=0.1)
    _apply(opt, params, grads[0])
    saved = opt.state_dict()
    exp_avg = saved["state"][0]["exp_avg"].copy()
    _apply(opt, params, grads[1])
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], exp_avg)  # later steps do not leak in

    other = Adam([Parameter(p.data) for p in params], lr=0.1)
    other.load_state_dict(saved)
    loaded = other.state[other.param_groups[0]["params"][0]]["exp_avg"]
    assert not np.shares_memory(loaded, saved["state"][0]["exp_avg"])
    saved["state"][0]["exp_avg"][...] = 99.0
    np.testing.assert_array_equal(loaded, exp_avg)


def test_load_state_dict_casts_state_to_parameter_dtype():
    params, grads = _model_and_grads()
    opt = Adam(params, lr=0.1)
    _apply(opt, params, grads[0])
    saved = opt.state_dict()  # float64 state
    params32 = [Parameter(p.data.astype(np.float32)) for p in params]
    opt32 = Adam(params32, lr=0.1)
    opt32.load_state_dict(saved)
    assert all(opt32.state[p]["exp_avg"].dtype == np.float32 for p in params32)
    assert opt32.state[params32[0]]["step"] == 1


def _trained_adam():
    params, grads = _model_and_grads()
    opt = Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, amsgrad=True)
    _apply(opt, params, grads[0])
    return opt, params


def _mutate(saved, change):
    change(saved)
    return saved


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s["param_groups"].pop(), "has 1 parameter groups, this optimizer has 2"),
        (lambda s: s["param_groups"][0]["params"].pop(), "group 0 has 1 parameters in the state dict but 2"),
        (lambda s: s["state"][1].__setitem__("exp_avg", np.zeros(3)), r"'exp_avg' of parameter 1 has shape \(3,\)"),
        (lambda s: s["state"][0].pop("max_exp_avg_sq"), "lacks 'max_exp_avg_sq'"),
        (lambda s: s["state"][0].__setitem__("step", -1), "step"),
        (lambda s: s["state"].__setitem__(7, s["state"][0]), "parameter 7"),
        (lambda s: s["state"].__setitem__("first", {}), "first"),
        (lambda s: s["param_groups"][1].__setitem__("lr", -1.0), "lr"),
        (lambda s: s["param_groups"][1].__setitem__("betas", [0.9, 1.5]), "beta2"),
        (lambda s: s.pop("state"), "'state' and 'param_groups'"),
    ],
)
def test_load_state_dict_validates(change, match):
    opt, params = _trained_adam()
    before = opt.state_dict()
    target, _ = _trained_adam()
    saved = _mutate(target.state_dict(), change)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)
    after = opt.state_dict()  # nothing changed by the failed load
    assert after["param_groups"] == before["param_groups"]
    for index, entry in before["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(after["state"][index][key], value)


def test_load_state_dict_restores_tuple_betas():
    opt, params = _trained_adam()
    saved = json.loads(json.dumps({"state": {}, "param_groups": opt.state_dict()["param_groups"]}))
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert opt.state == {}  # an empty state means "start fresh"


# ---------------------------------------------------------------------------------------------- schedulers
def _opt(lrs=(0.1,)):
    return SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def _lrs(scheduler, optimizer, epochs):
    """The group-0 rate at epoch 0 (after construction) and after each of ``epochs - 1`` steps."""
    out = [optimizer.param_groups[0]["lr"]]
    for _ in range(epochs - 1):
        scheduler.step()
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_step_lr_values():
    opt = _opt((0.1,))
    sched = StepLR(opt, step_size=2, gamma=0.5)
    assert sched.last_epoch == 0
    np.testing.assert_allclose(_lrs(sched, opt, 7), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125], rtol=1e-15)
    assert sched.last_epoch == 6
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]


def test_cosine_values():
    opt = _opt((1.0,))
    sched = CosineAnnealingLR(opt, T_max=4)
    c = math.sqrt(2) / 2  # cos(pi / 4)
    expected = [1.0, (1 + c) / 2, 0.5, (1 - c) / 2, 0.0, (1 - c) / 2]  # past T_max the closed form rises again
    np.testing.assert_allclose(_lrs(sched, opt, 6), expected, rtol=1e-12, atol=1e-15)


def test_cosine_eta_min_and_groups():
    opt = _opt((1.0, 0.5))
    sched = CosineAnnealingLR(opt, T_max=2, eta_min=0.1)
    assert sched.get_last_lr() == [1.0, 0.5]
    sched.step()  # cos(pi/2) = 0: halfway between base and eta_min
    np.testing.assert_allclose(sched.get_last_lr(), [0.55, 0.3], rtol=1e-12)
    sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), [0.1, 0.1], rtol=1e-12)
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], [0.1, 0.1], rtol=1e-12)


def test_warmup_then_schedule():
    opt = _opt((1.0,))
    sched = StepLR(opt, step_size=2, gamma=0.5, warmup_epochs=2, warmup_start_factor=0.1)
    # warmup 0.1 -> 0.55 -> 1.0, then the StepLR schedule starts at its epoch 0
    np.testing.assert_allclose(_lrs(sched, opt, 7), [0.1, 0.55, 1.0, 1.0, 0.5, 0.5, 0.25], rtol=1e-14)
    opt = _opt((2.0,))
    sched = CosineAnnealingLR(opt, T_max=2, warmup_epochs=4, warmup_start_factor=0.2)
    np.testing.assert_allclose(_lrs(sched, opt, 7), [0.4, 0.8, 1.2, 1.6, 2.0, 1.0, 0.0], rtol=1e-12, atol=1e-15)


def test_scheduler_writes_initial_lr_and_updates_optimizer_lr_used_by_step():
    param = Parameter(np.array([1.0]))
    opt = SGD([param], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 1.0
    sched.step()  # lr 0.5
    param.grad = np.array([1.0])
    opt.step()
    np.testing.assert_allclose(param.data, [0.5])


@pytest.mark.parametrize("load_optimizer_first", [True, False])
def test_scheduler_state_dict_resumes(load_optimizer_first):
    opt = _opt((1.0, 0.1))
    sched = CosineAnnealingLR(opt, T_max=10, eta_min=0.01, warmup_epochs=2)
    for _ in range(5):
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))  # JSON-able
    opt_state = opt.state_dict()
    assert state["last_epoch"] == 5
    expected_next = []
    for _ in range(3):
        sched.step()
        expected_next.append(sched.get_last_lr())

    new_opt = _opt((1.0, 0.1))
    new_sched = CosineAnnealingLR(new_opt, T_max=3)  # hyper-parameters come from the state dict
    if load_optimizer_first:
        new_opt.load_state_dict(opt_state)
        new_sched.load_state_dict(state)
    else:
        new_sched.load_state_dict(state)
        new_opt.load_state_dict(opt_state)
    assert new_sched.last_epoch == 5 and new_sched.T_max == 10
    np.testing.assert_allclose([g["lr"] for g in new_opt.param_groups], state["last_lr"], rtol=1e-15)
    got_next = []
    for _ in range(3):
        new_sched.step()
        got_next.append(new_sched.get_last_lr())
    np.testing.assert_allclose(got_next, expected_next, rtol=1e-15)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda o: StepLR(o, step_size=0), "step_size"),
        (lambda o: StepLR(o, step_size=2.5), "step_size"),
        (lambda o: StepLR(o, step_size=2, gamma=-0.1), "gamma"),
        (lambda o: CosineAnnealingLR(o, T_max=0), "T_max"),
        (lambda o: CosineAnnealingLR(o, T_max=5, eta_min=-1.0), "eta_min"),
        (lambda o: CosineAnnealingLR(o, T_max=5, warmup_epochs=-1), "warmup_epochs"),
        (lambda o: CosineAnnealingLR(o, T_max=5, warmup_epochs=2, warmup_start_factor=0.0), "warmup_start_factor"),
    ],
)
def test_scheduler_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make(_opt())


def test_scheduler_load_state_dict_validates():
    sched = StepLR(_opt((0.1, 0.2)), step_size=3)
    cosine_state = CosineAnnealingLR(_opt((0.1, 0.2)), T_max=4).state_dict()
    with pytest.raises(ValueError, match="missing keys.*step_size"):
        sched.load_state_dict(cosine_state)
    one_group = StepLR(_opt((0.1,)), step_size=3).state_dict()
    with pytest.raises(ValueError, match="one rate per parameter group"):
        sched.load_state_dict(one_group)
    bad = dict(sched.state_dict(), step_size=0)
    with pytest.raises(ValueError, match="step_size"):
        sched.load_state_dict(bad)
    assert sched.step_size == 3 and sched.last_epoch == 0


def test_scheduler_requires_an_optimizer():
    with pytest.raises(TypeError, match="Optimizer"):
        StepLR([{"lr": 0.1}], step_size=1)


# ---------------------------------------------------------------------------------------------- PyTorch parity
TORCH_CASES = [
    ("SGD", SGD, dict(lr=0.1)),
    ("SGD", SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("Adam", Adam, dict(lr=0.01)),
    ("Adam", Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("AdamW", AdamW, dict(lr=0.01)),
    ("AdamW", AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("torch_name, optimizer_cls, kwargs", TORCH_CASES)
def test_matches_torch(torch_name, optimizer_cls, kwargs, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    initial = [rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)]
    params = [Parameter(a) for a in initial]
    torch_params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in initial]
    opt = optimizer_cls([{"params": params[:1]}, {"params": params[1:], "lr": kwargs["lr"] * 2}], **kwargs)
    torch_opt = getattr(torch.optim, torch_name)(
        [{"params": torch_params[:1]}, {"params": torch_params[1:], "lr": kwargs["lr"] * 2}], **kwargs
    )
    for _ in range(5):
        for p, tp in zip(params, torch_params):
            g = (rng.standard_normal(p.shape) * 3).astype(dtype)
            p.grad = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        torch_opt.step()
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for p, tp in zip(params, torch_params):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **tol)
    # same state-dict structure (keys of each parameter's state)
    ours, theirs = opt.state_dict(), torch_opt.state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for index in ours["state"]:
        assert set(ours["state"][index]) == set(theirs["state"][index])
    for ours_group, their_group in zip(ours["param_groups"], theirs["param_groups"]):
        assert set(ours_group) <= set(their_group)
        assert ours_group["params"] == their_group["params"]


def test_loads_a_torch_adam_state_dict():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    initial = rng.standard_normal(5)
    torch_param = torch.nn.Parameter(torch.from_numpy(initial.copy()))
    torch_opt = torch.optim.Adam([torch_param], lr=0.05, amsgrad=True)
    grads = [rng.standard_normal(5) for _ in range(5)]
    for g in grads[:3]:
        torch_param.grad = torch.from_numpy(g.copy())
        torch_opt.step()
    # tensors -> arrays, torch's float "step" tensor -> int
    converted = {
        "state": {k: {n: (int(v.item()) if n == "step" else v.numpy()) for n, v in s.items()}
                  for k, s in torch_opt.state_dict()["state"].items()},
        "param_groups": torch_opt.state_dict()["param_groups"],
    }
    param = Parameter(torch_param.detach().numpy())
    opt = Adam([param], lr=1.0)
    opt.load_state_dict(converted)
    for g in grads[3:]:
        torch_param.grad = torch.from_numpy(g.copy())
        torch_opt.step()
        param.grad = g.copy()
        opt.step()
    np.testing.assert_allclose(param.data, torch_param.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["step", "cosine", "cosine_warmup"])
def test_schedulers_match_torch(kind):
    torch = pytest.importorskip("torch")
    base = [0.1, 0.03]
    torch_opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base], lr=0.1)
    opt = _opt(tuple(base))
    if kind == "step":
        ours = StepLR(opt, step_size=3, gamma=0.3)
        theirs = torch.optim.lr_scheduler.StepLR(torch_opt, step_size=3, gamma=0.3)
    elif kind == "cosine":
        ours = CosineAnnealingLR(opt, T_max=7, eta_min=0.001)
        theirs = torch.optim.lr_scheduler.CosineAnnealingLR(torch_opt, T_max=7, eta_min=0.001)
    else:
        ours = CosineAnnealingLR(opt, T_max=7, eta_min=0.001, warmup_epochs=3, warmup_start_factor=0.25)
        warmup = torch.optim.lr_scheduler.LinearLR(torch_opt, start_factor=0.25, total_iters=3)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(torch_opt, T_max=7, eta_min=0.001)
        theirs = torch.optim.lr_scheduler.SequentialLR(torch_opt, [warmup, cosine], milestones=[3])
    for epoch in range(11):
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-9, err_msg=f"epoch {epoch}")
        torch_opt.step()
        ours.step()
        theirs.step()
