"""The meta-update rules: hand-computed shifts and the equalities of docs/algorithm.md."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from lsml_hub.algorithms import (
    FOMAML,
    ContinualTrajectoryShifting,
    Independent,
    MultiTask,
    Reptile,
    ShiftedFOMAML,
    TaskSignals,
    build_algorithm,
)
from lsml_hub.distributed import DistContext
from lsml_hub.errors import ConfigError
from lsml_hub.models import split_backbone_head
from lsml_hub.training import MetaTrainConfig, MetaTrainer


def meta_step(algo, phi, thetas, grads=None):
    total = torch.zeros_like(phi, dtype=torch.float64)
    for i, theta in enumerate(thetas):
        algo.accumulate_(total, TaskSignals(theta, query_grad=None if grads is None else grads[i]))
    delta = algo.delta_(total.div_(len(thetas)), phi)
    algo.apply_(phi, thetas, delta)
    return delta


def test_cts_moves_phi_and_shifts_every_trajectory_by_the_same_delta():
    algo = ContinualTrajectoryShifting(meta_lr=0.5, aggregate_period=1, reset_period=10)
    phi = torch.tensor([0.0, 0.0])
    thetas = [torch.tensor([2.0, 4.0]), torch.tensor([4.0, 0.0])]
    delta = meta_step(algo, phi, thetas)
    # mean θ = [3, 2]; Δ = 0.5 · ([3, 2] − [0, 0]) = [1.5, 1]
    assert delta.tolist() == [1.5, 1.0]
    assert phi.tolist() == [1.5, 1.0]
    assert thetas[0].tolist() == [3.5, 5.0]
    assert thetas[1].tolist() == [5.5, 1.0]


def test_reptile_does_not_shift_and_updates_only_at_the_reset():
    algo = Reptile(meta_lr=1.0, reset_period=4)
    assert algo.aggregate_period == 4
    assert [s for s in range(1, 13) if algo.is_meta_step(s)] == [4, 8, 12]
    phi, theta = torch.zeros(2), torch.tensor([2.0, 2.0])
    meta_step(algo, phi, [theta])
    assert phi.tolist() == [2.0, 2.0] and theta.tolist() == [2.0, 2.0]  # moved φ, θ untouched


def test_fomaml_steps_against_the_mean_query_gradient():
    phi = torch.tensor([1.0, 1.0])
    grads = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 2.0])]
    thetas = [torch.tensor([5.0, 5.0]), torch.tensor([7.0, 7.0])]
    meta_step(FOMAML(meta_lr=0.5, reset_period=3), phi, thetas, grads)
    assert phi.tolist() == [0.0, 0.5]  # φ − 0.5 · [2, 1]
    assert thetas[0].tolist() == [5.0, 5.0]  # plain FOMAML does not shift
    shifted = [t.clone() for t in thetas]
    phi2 = torch.tensor([1.0, 1.0])
    meta_step(ShiftedFOMAML(meta_lr=0.5, reset_period=3), phi2, shifted, grads)
    assert shifted[0].tolist() == [4.0, 4.5]  # FOMAML++ shifts by Δ = [−1, −0.5]


def test_independent_never_meta_updates_or_resets():
    algo = Independent()
    assert not any(algo.is_meta_step(s) or algo.is_reset_step(s) for s in range(1, 2001))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "cts", "aggregate_period": 0}, "aggregate_period"),
        ({"name": "cts", "reset_period": -1}, "reset_period"),
        ({"name": "reptile", "aggregate_period": 2, "reset_period": 5}, "must equal reset_period"),
        ({"name": "multitask", "reset_period": 3}, "must be 1"),
        ({"name": "maml"}, "unknown algorithm 'maml'"),
        ({"name": "cts", "lr": 0.1}, "unknown key(s) ['lr']"),
        ({"name": "cts", "meta_lr": 0}, "meta_lr"),
    ],
)
def test_bad_algorithm_config_names_the_problem(config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_algorithm(config)


def test_multitask_with_unit_meta_lr_is_multitask_sgd_on_quadratics():
    # L_t(θ) = ½‖θ − c_t‖²: an inner SGD step is θ ← θ − α(θ − c_t).
    centers = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]), torch.tensor([-1.0, 4.0])]
    alpha, algo = 0.1, MultiTask()
    phi = torch.tensor([0.0, 0.0])
    thetas = [phi.clone() for _ in centers]
    expected = phi.clone()
    for step in range(1, 6):
        for theta, c in zip(thetas, centers):
            theta.sub_(alpha * (theta - c))
        meta_step(algo, phi, thetas)
        if algo.is_reset_step(step):
            for theta in thetas:
                theta.copy_(phi)
        expected -= alpha * torch.stack([expected - c for c in centers]).mean(0)
        torch.testing.assert_close(phi, expected, rtol=0, atol=1e-6)


# --- the same equalities through the real training loop ---------------------------------------

def tiny_config(tmp_path, name, algorithm, model="test_resnet", **inner):
    return MetaTrainConfig.from_dict({
        "model": model,
        "tasks": ["builtin:latin_upper?samples_per_class=20", "builtin:printed_digits?samples_per_class=20"],
        "algorithm": algorithm,
        "inner": {"batch_size": 8, **inner},
        "steps": 6, "eval_every": 6, "eval_batches": 1, "checkpoint_every": 6, "log_every": 3,
        "output_dir": str(tmp_path / name), "device": "cpu", "tensorboard": False,
    })


@pytest.fixture
def builtin_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "lsml-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_cts_with_p_equal_k_is_reptile_through_the_loop(tmp_path, builtin_cache):
    cts = MetaTrainer(tiny_config(tmp_path, "cts", {"name": "cts", "meta_lr": 0.5, "aggregate_period": 3,
                                                     "reset_period": 3}), DistContext()).run()
    rep = MetaTrainer(tiny_config(tmp_path, "rep", {"name": "reptile", "meta_lr": 0.5, "reset_period": 3}),
                      DistContext()).run()
    a, b = load_file(cts.init_dir / "model.safetensors"), load_file(rep.init_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_multitask_k1_plain_sgd_unit_beta_is_multitask_sgd_through_the_loop(tmp_path, builtin_cache):
    plain_sgd = {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0}
    # resnet20_cifar has no max-pool: test_resnet's pooling ties on the glyphs' flat black background
    # let 1e-7 rounding differences pick another argmax and jump apart.
    cfg = tiny_config(tmp_path, "mt", {"name": "multitask", "meta_lr": 1.0}, model="resnet20_cifar", **plain_sgd)
    twin = MetaTrainer(copy.deepcopy(cfg), DistContext())  # same seeds: same models, heads and batches
    result = MetaTrainer(cfg, DistContext()).run()

    # Multi-task SGD by hand: every task's gradient at φ, the body moved by their mean, each head by its own.
    # φ − α·mean(g) is computed as φ + (mean_t(φ − α·g_t) − φ) and SGD's add_(g, alpha=−α), the loop's
    # exact roundings: BatchNorm over near-constant glyph channels amplifies a 1e-7 rounding difference a
    # hundredfold per step, so only a bit-exact comparison says the loop is multi-task SGD.
    phi = twin.phi.clone()
    for _ in range(cfg.steps):
        stepped = []
        for learner in twin.learners:
            learner.body.copy_(phi)
            batch = next(learner.stream)
            loss = torch.nn.functional.cross_entropy(learner.model(batch.images), batch.labels)
            params = list(learner.model.parameters())
            grads = dict(zip((id(p) for p in params), torch.autograd.grad(loss, params)))
            with torch.no_grad():
                for p in split_backbone_head(learner.model).head.values():
                    p.add_(grads[id(p)], alpha=-plain_sgd["lr"])
            body_grad = torch.cat([grads[id(p)].reshape(-1) for p in learner.body_params])
            stepped.append(phi.clone().add_(body_grad, alpha=-plain_sgd["lr"]).double())
        phi.add_((torch.stack(stepped).sum(0).div_(len(stepped)) - phi).float())

    weights = load_file(result.init_dir / "model.safetensors")
    model_params = split_backbone_head(twin.learners[0].model).body
    exported = torch.cat([weights[name].reshape(-1) for name in model_params])
    torch.testing.assert_close(exported, phi, rtol=0, atol=0)
