"""Optimizers and schedules from tables, against hand-written update rules."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nqs.optimizer import build_optimizer, build_schedule


def test_sgd_step_is_minus_learning_rate_times_gradient_for_complex_params():
    opt = build_optimizer({"kind": "sgd", "learning_rate": 0.05})
    params = {"w": jnp.array([1.0 + 2.0j, -0.5j]), "b": jnp.array([0.3])}
    grad = {"w": jnp.array([0.2 - 0.4j, 1.0 + 0.0j]), "b": jnp.array([-1.0])}
    updates, _ = opt.update(grad, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["w"], params["w"] - 0.05 * grad["w"])
    np.testing.assert_allclose(new["b"], params["b"] - 0.05 * grad["b"])


def test_adam_keyword_arguments_are_passed():
    opt = build_optimizer({"kind": "adam", "learning_rate": 0.1, "b1": 0.0, "b2": 0.0})
    params = jnp.array([1.0, 2.0])
    grad = jnp.array([0.5, -2.0])
    updates, _ = opt.update(grad, opt.init(params), params)
    # b1 = b2 = 0: the update is -lr * g / (|g| + eps)
    np.testing.assert_allclose(updates, -0.1 * grad / (np.abs(grad) + 1e-8))


@pytest.mark.parametrize(
    "table, expected",
    [
        ({"kind": "constant", "value": 0.2}, [0.2, 0.2, 0.2]),
        (
            {
                "kind": "linear",
                "init_value": 1.0,
                "end_value": 0.0,
                "transition_steps": 10,
            },
            [1.0, 0.5, 0.0],
        ),
        (
            {"kind": "cosine", "init_value": 1.0, "decay_steps": 10},
            [1.0, 0.5, 0.0],
        ),
        (
            {
                "kind": "exponential",
                "init_value": 1.0,
                "transition_steps": 5,
                "decay_rate": 0.5,
            },
            [1.0, 0.5, 0.25],
        ),
    ],
    ids=["constant", "linear", "cosine", "exponential"],
)
def test_schedules(table, expected):
    sched = build_schedule(table)
    np.testing.assert_allclose([sched(s) for s in (0, 5, 10)], expected, atol=1e-12)


def test_schedule_as_learning_rate():
    table = {
        "kind": "linear",
        "init_value": 1.0,
        "end_value": 0.0,
        "transition_steps": 4,
    }
    opt = build_optimizer({"kind": "sgd", "learning_rate": table})
    params = jnp.array([0.0])
    state = opt.init(params)
    steps = []
    for _ in range(3):
        updates, state = opt.update(jnp.array([1.0]), state, params)
        steps.append(float(-updates[0]))
    np.testing.assert_allclose(steps, [1.0, 0.75, 0.5])


@pytest.mark.parametrize(
    "table, match",
    [
        ({"kind": "sgd", "learning_rate": 0.1, "beta": 0.9}, "'beta'"),
        ({"kind": "adamm", "learning_rate": 0.1}, "unknown optax optimizer"),
        ({"kind": "sgd"}, "learning_rate"),
        ({"kind": "sgd", "learning_rate": {"kind": "step"}}, "schedule kind"),
        ({"kind": "sgd", "learning_rate": {"kind": "cosine", "init": 1}}, "'init'"),
    ],
    ids=["unknown-arg", "unknown-kind", "missing-lr", "bad-schedule", "schedule-arg"],
)
def test_errors_name_the_problem(table, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(table)
