"""The seed's other meta-learners: Leap, iMAML and ANIL, against hand computations and through the loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from _isolation import one_thread
from _training_helpers import (
    RECIPE,
    TWO_TASKS,
    assert_same_tensors,
    finish,
    init_tensors,
    small_config,
    start,
    subprocess_env,
    torchrun_two_processes,
    training_caches,
)

import lsml_hub
from lsml_hub.algorithms import ANIL, IMAML, InnerStep, Leap, TaskSignals, build_algorithm, conjugate_gradient
from lsml_hub.data import load_task
from lsml_hub.errors import ConfigError
from lsml_hub.training.checkpoint import Checkpoint
from lsml_hub.training.config import InnerConfig
from lsml_hub.training.learner import LearnerSetup, TaskLearner

TASKS = [*TWO_TASKS, "builtin:symbols?samples_per_class=20"]


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


# -- Leap ------------------------------------------------------------------------------------------------
def quadratic_trajectory(steps: int, lr: float = 0.3):
    """Full-batch SGD on f(θ) = ½ θᵀAθ − bᵀθ: the points, losses and gradients, in float64."""
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    theta = torch.tensor([3.0, 2.0], dtype=torch.float64)
    points, losses, grads = [], [], []
    for _ in range(steps + 1):
        points.append(theta.clone())
        losses.append(0.5 * theta @ a @ theta - b @ theta)
        grads.append(a @ theta - b)
        theta = theta - lr * grads[-1]
    return points, losses, grads


def expected_leap_gradient(points, losses, grads, segments, *, loss=True, stabilizer=True, norm=True):
    """The path-length gradient written out segment by segment, as in Flennerhag et al. (2019)."""
    g = torch.zeros_like(points[0])
    for i in range(1, segments + 1):
        u = points[i] - points[i - 1]
        d = float(losses[i] - losses[i - 1]) if loss else 0.0
        if stabilizer and d > 0:
            d = -d
        add = -u - d * grads[i - 1]
        if norm:
            add = add / math.sqrt(d * d + float(u @ u))
        g += add
    return g


@pytest.mark.parametrize("options", [{}, {"loss": False}, {"norm": False}, {"stabilizer": False}])
def test_leap_accumulates_the_path_length_gradient_over_three_segments(options):
    points, losses, grads = quadratic_trajectory(steps=4)
    leap = Leap(meta_lr=1.0, reset_period=10, **options)
    state = leap.task_state(points[0])
    for i in range(4):  # four inner steps: the fourth step's loss closes the third segment
        leap.observe_(state, InnerStep(losses[i], grads[i], points[i + 1] - points[i], index=i))
    expected = expected_leap_gradient(points, losses, grads, segments=3, **options)
    torch.testing.assert_close(state["meta_grad"], expected, rtol=1e-12, atol=1e-12)
    total = torch.zeros(2, dtype=torch.float64)
    leap.accumulate_(total, TaskSignals(points[4], state))
    assert torch.equal(total, state["meta_grad"])  # the contribution is the accumulated gradient
    leap.restart_(state)  # a new trajectory starts its own path
    assert not state["meta_grad"].any()


def test_leap_meta_steps_against_the_mean_path_gradient_at_every_reset():
    leap = Leap(meta_lr=0.5, reset_period=3)
    assert leap.aggregate_period == 3 and [s for s in range(1, 10) if leap.is_meta_step(s)] == [3, 6, 9]
    phi = torch.tensor([1.0, 1.0])
    delta = leap.delta_(torch.tensor([2.0, -4.0]), phi)
    assert delta.tolist() == [-1.0, 2.0]


# -- iMAML -----------------------------------------------------------------------------------------------
def small_model_problem():
    """A 2-layer net small enough to form its Hessian: (flat params, loss of flat params)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,), generator=gen)
    w = torch.randn(3 * 4 + 4 * 3, generator=gen, dtype=torch.float64) * 0.5

    def loss(flat):
        hidden = torch.tanh(x @ flat[:12].view(3, 4))
        return F.cross_entropy(hidden @ flat[12:].view(4, 3), y)

    return w, loss


def test_imaml_conjugate_gradient_matches_a_direct_solve():
    w, loss = small_model_problem()
    hessian = torch.autograd.functional.hessian(loss, w)
    g = torch.randn(len(w), generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def hvp(v):
        return torch.autograd.functional.hvp(loss, w, v)[1]

    imaml = IMAML(meta_lr=1.0, reset_period=5, reg_lambda=0.5, cg_steps=len(w), held_out_batches=1)
    total = torch.zeros(len(w), dtype=torch.float64)
    imaml.accumulate_(total, TaskSignals(w, query_grad=g, hvp=hvp))
    direct = torch.linalg.solve(torch.eye(len(w), dtype=torch.float64) + hessian / 0.5, g)
    torch.testing.assert_close(total, direct, rtol=1e-6, atol=1e-8)


def test_conjugate_gradient_stops_moving_once_the_residual_is_zero():
    x = conjugate_gradient(lambda v: 2 * v, torch.tensor([2.0, 4.0]), steps=5)  # exact after one iteration
    assert x.tolist() == [1.0, 2.0]


def learner_for(algorithm, *, channels_last=False, arch="test_resnet",
                task="builtin:printed_digits?samples_per_class=20", inner=None):
    from lsml_hub.compute import ComputeConfig
    from lsml_hub.models import create_backbone, split_backbone_head
    from lsml_hub.training.flat import flat_values

    torch.manual_seed(0)
    body = split_backbone_head(create_backbone(arch, num_classes=1)).body.values()
    phi = flat_values(list(body), channels_last)
    setup = LearnerSetup(arch, inner or InnerConfig(batch_size=8), seed=0, device=torch.device("cpu"),
                         mean_std=((0.5,), (0.5,)), compute=ComputeConfig(channels_last=channels_last),
                         algorithm=algorithm)
    return TaskLearner.create(0, load_task(task), phi, setup)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_learners_hessian_vector_product_is_the_gradients_derivative(channels_last):
    # A ViT (GELU, LayerNorm) is smooth in θ; ReLU nets on glyphs sit exactly on kinks (blank pixels), where
    # finite differences say nothing. Its patch embedding is the 4-D weight that channels_last lays out NHWC.
    learner = learner_for(IMAML(reset_period=5), channels_last=channels_last, arch="test_vit")
    hvp = learner.hessian_vector_product()
    batch_position = learner.hvp_stream.position - 8
    v = torch.randn(learner.body.shape, generator=torch.Generator().manual_seed(2))
    v /= v.norm()

    def grad_at(shift):
        learner.hvp_stream.position = batch_position  # the same batch the product was taken on
        with torch.no_grad():
            learner.body.add_(shift)
        g = learner.gradient_on(next(learner.hvp_stream))
        with torch.no_grad():
            learner.body.sub_(shift)
        return g

    eps = 1e-2
    finite_difference = (grad_at(eps * v) - grad_at(-eps * v)) / (2 * eps)
    product = hvp(v)
    cosine = F.cosine_similarity(product, finite_difference, dim=0)
    assert cosine > 0.99, float(cosine)
    torch.testing.assert_close(product.norm(), finite_difference.norm(), rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_imaml_proximal_steps_add_lambda_times_the_distance_to_phi(channels_last):
    # Plain SGD: the proximal step differs from the plain one by exactly -lr * λ * (θ - φ), the term's gradient.
    sgd = InnerConfig(lr=0.1, momentum=0.0, weight_decay=0.0, batch_size=8)
    twins = [learner_for(IMAML(reset_period=5, reg_lambda=2.0, proximal=proximal), channels_last=channels_last,
                         inner=sgd) for proximal in (True, False)]
    offset = torch.randn(twins[0].body.shape, generator=torch.Generator().manual_seed(3)) * 1e-2
    for learner in twins:
        assert learner.phi is not None and not learner.phi.data_ptr() == learner.body.data_ptr()
        with torch.no_grad():
            learner.body.add_(offset)  # θ ≠ φ, so the term pulls
        learner.inner_step()
    pulled, plain = (learner.body for learner in twins)
    torch.testing.assert_close(pulled - plain, -0.1 * 2.0 * offset, rtol=1e-4, atol=1e-6)


def test_imaml_without_proximal_leaves_the_inner_steps_alone():
    assert IMAML(reset_period=5).proximal_strength == 0.0
    assert IMAML(reset_period=5, reg_lambda=0.25, proximal=True).proximal_strength == 0.25


@pytest.mark.parametrize("values, message", [
    ({"name": "imaml", "proximal": "yes"}, "algorithm.proximal must be true or false, got 'yes'"),
    ({"name": "imaml", "reg_lambda": 0}, "algorithm.reg_lambda must be a positive number, got 0"),
    ({"name": "imaml", "reg_lambda": -1.0}, "algorithm.reg_lambda must be a positive number"),
    ({"name": "imaml", "cg_steps": 0}, "algorithm.cg_steps must be a positive integer, got 0"),
    ({"name": "imaml", "held_out_batches": -2}, "algorithm.held_out_batches must be a positive integer"),
    ({"name": "leap", "aggregate_period": 1, "reset_period": 5}, "leap meta-updates at every reset"),
    ({"name": "leap", "norm": "yes"}, "algorithm.norm must be true or false"),
])
def test_bad_seed_learner_settings_are_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        build_algorithm(values)


# -- ANIL ------------------------------------------------------------------------------------------------
def test_anil_inner_steps_train_the_head_and_leave_the_body_alone():
    learner = learner_for(ANIL(reset_period=10))
    body, head = learner.body.clone(), learner.model.get_classifier().weight.detach().clone()
    for _ in range(3):
        learner.inner_step()
    assert torch.equal(learner.body, body)
    assert not torch.equal(learner.model.get_classifier().weight, head)
    grad = learner.signals().query_grad  # the body still gets its held-out gradient
    assert grad.shape == body.shape and grad.abs().sum() > 0


def test_anil_needs_a_model_whose_head_is_separate(tmp_path, monkeypatch):
    from lsml_hub.models import ParamSplit

    monkeypatch.setattr("lsml_hub.training.loop.split_backbone_head",
                        lambda model: ParamSplit(body=dict(model.named_parameters()), head={}))
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: pytest.fail("loaded a dataset"))
    with pytest.raises(ConfigError, match="anil trains only the classifier head .* has no separate head"):
        lsml_hub.meta_train(small_config(tmp_path / "run", algorithm={"name": "anil"}))


# -- through the loop --------------------------------------------------------------------------------------
SEED_LEARNERS = {
    "leap": {"name": "leap", "meta_lr": 0.5, "reset_period": 3},
    # proximal: the resume and torchrun equalities below cover the inner steps' pull toward φ as well.
    "imaml": {"name": "imaml", "meta_lr": 0.1, "reset_period": 3, "cg_steps": 3, "held_out_batches": 2,
              "proximal": True},
    "anil": {"name": "anil", "meta_lr": 0.1, "reset_period": 3},
}


@pytest.mark.parametrize("name", sorted(SEED_LEARNERS))
def test_each_rule_meta_trains_moves_phi_and_credits_its_paper(tmp_path, name):
    result = lsml_hub.meta_train(small_config(tmp_path / "run", algorithm=SEED_LEARNERS[name], steps=6))
    start = init_tensors(lsml_hub.meta_train(small_config(tmp_path / "start", algorithm={"name": "none"},
                                                          steps=1)).init_dir)
    moved = init_tensors(result.init_dir)
    assert any(not torch.equal(moved[k], start[k]) for k in moved if "running" not in k and "num_batches" not in k)
    assert all(math.isfinite(r.loss) for r in result.final_eval.values())
    card = (result.init_dir / "README.md").read_text()
    assert build_algorithm(SEED_LEARNERS[name]).reference.split(",")[0] in card


@pytest.mark.parametrize("name", ["leap", "imaml"])
def test_a_resumed_run_ends_with_the_same_init_bit_for_bit(tmp_path, name):
    algorithm = SEED_LEARNERS[name]
    whole = lsml_hub.meta_train(small_config(tmp_path / "whole", algorithm=algorithm, steps=8, checkpoint_every=4))
    lsml_hub.meta_train(small_config(tmp_path / "split", algorithm=algorithm, steps=4, checkpoint_every=4))
    state = Checkpoint.load(tmp_path / "split" / "checkpoints" / "last.pt").tasks[0]
    assert state["steps_since_reset"] == 1 and ("algorithm" in state) == (name == "leap")
    resumed = lsml_hub.meta_train(small_config(tmp_path / "split", algorithm=algorithm, steps=8, checkpoint_every=4))
    assert_same_tensors(init_tensors(resumed.init_dir), init_tensors(whole.init_dir))


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("name", ["leap", "imaml"])
def test_one_process_and_a_two_process_torchrun_agree_bit_for_bit(tmp_path, tmp_path_factory, name):
    def config(out):
        return small_config(out, tasks=TASKS, algorithm=SEED_LEARNERS[name], steps=6, checkpoint_every=3)

    single = lsml_hub.meta_train(config(tmp_path / "one"))
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path / "two")))
    log = tmp_path / "torchrun.log"
    finish(start([*torchrun_two_processes(), str(RECIPE), str(cfg)],
                 subprocess_env(tmp_path_factory), log), log)
    assert_same_tensors(init_tensors(tmp_path / "two" / "init"), init_tensors(single.init_dir))


def test_imaml_meta_trains_a_vision_transformer(tmp_path):
    # Hessian-vector products through attention need its math kernel (fused ones have no double backward).
    result = lsml_hub.meta_train(small_config(tmp_path / "run", model="test_vit", model_kwargs={"img_size": 32},
                                              algorithm=SEED_LEARNERS["imaml"], steps=3))
    assert all(math.isfinite(r.loss) for r in result.final_eval.values())
