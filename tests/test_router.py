"""The NumPy router matches torch autograd + torch.optim.Adam on the same weights and dropout masks."""
from __future__ import annotations

import numpy as np
import torch

from streammoe.routers import MLPRouter, softmax


def torch_step(router: MLPRouter, X, M, masks, opt_state=None):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in router.params.items()}
    d1, d2 = (torch.tensor(m) for m in masks)
    x = torch.tensor(X, dtype=torch.float32)
    h1 = torch.relu(x @ params["W1"].T + params["b1"]) * d1
    h2 = torch.relu(h1 @ params["W2"].T + params["b2"]) * d2
    z = h2 @ params["W3"].T + params["b3"]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(M, dtype=torch.float32))
    opt = torch.optim.Adam(list(params.values()), lr=router.lr)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach()), {k: v.detach().numpy() for k, v in params.items()}


def test_gradients_and_adam_step_match_torch():
    rng = np.random.default_rng(0)
    router = MLPRouter(5, 4, hidden=32, seed=1)
    X = rng.normal(size=(64, 5))
    M = (rng.random((64, 4)) > 0.6).astype(float)
    masks = (router._dropout_mask((64, 32)), router._dropout_mask((64, 16)))
    loss_t, after_t = torch_step(router, X, M, masks)
    loss_n, grads = router.gradients(X, M, masks=masks)
    router.apply_gradients(grads)
    # float32 on both sides (torch's default, the reference's precision): equal up to rounding
    assert np.isclose(loss_n, loss_t, rtol=1e-6)
    for k, v in after_t.items():
        assert router.params[k].dtype == np.float32
        np.testing.assert_allclose(router.params[k], v, rtol=1e-5, atol=1e-7)


def test_growth_keeps_existing_outputs_and_state_round_trips():
    rng = np.random.default_rng(1)
    router = MLPRouter(2, 3, hidden=8, seed=0)
    X = rng.normal(size=(10, 2))
    before = router.logits(X)
    router.add_inputs(2)
    after = router.logits(np.hstack([X, np.zeros((10, 2))]))
    np.testing.assert_allclose(before, after)  # zero-valued new features change nothing
    router.add_outputs(1)
    assert router.logits(np.zeros((1, 4))).shape == (1, 4)
    router.train_step(rng.normal(size=(10, 4)), np.ones((10, 4)))
    clone = MLPRouter.from_state(router.to_state())
    Xn, Mn = rng.normal(size=(10, 4)), np.zeros((10, 4))
    router.train_step(Xn, Mn)
    clone.train_step(Xn, Mn)
    for k in router.params:
        assert np.array_equal(router.params[k], clone.params[k])
    router.remove_output(0)
    assert router.n_outputs == 3


def test_softmax_temperature():
    w = softmax(np.array([[1.0, 2.0, 3.0]]), 0.8)
    assert np.isclose(w.sum(), 1) and np.argmax(w) == 2
    assert softmax(np.array([[1.0, 2.0]]), 0.1)[0, 1] > softmax(np.array([[1.0, 2.0]]), 10)[0, 1]


def test_logits_are_row_exact_whatever_the_batch():
    """A window's logits computed at once equal the same rows one by one, bit for bit."""
    rng = np.random.default_rng(3)
    router = MLPRouter(7, 12, seed=2)
    X = rng.normal(size=(300, 7))
    X[::5, 2] = 0.0
    full = router.logits(X)
    singles = np.vstack([router.logits(X[i:i + 1]) for i in range(300)])
    assert np.array_equal(full, singles)
    assert np.array_equal(full[17:90], router.logits(X[17:90]))
    p = router.params
    reference = np.maximum(np.maximum(X @ p["W1"].T + p["b1"], 0) @ p["W2"].T + p["b2"], 0) @ p["W3"].T + p["b3"]
    np.testing.assert_allclose(full, reference, rtol=1e-5, atol=1e-6)
