"""Meta-training and fine-tuning on CUDA: every precision, compile, data on the device, no host sync, NCCL.

Marked ``gpu``: skipped where CUDA is missing (conftest says why). ``benchmarks/gpu_check.sh`` runs
them together with the GPU benchmark. GPU float results are not bit-reproducible (cuDNN picks kernels
at run time, some backward kernels add atomically), so comparisons here carry a tolerance.
"""

from __future__ import annotations

import pytest
import timm
import torch
import yaml
from _training_helpers import (
    RECIPE,
    assert_same_tensors,
    finish,
    init_tensors,
    small_config,
    start,
    subprocess_env,
    torchrun_two_processes,
    training_caches,
)
from safetensors import safe_open

import lsml_hub
from lsml_hub.data import Augment, BatchStream, load_task
from lsml_hub.distributed import DistContext
from lsml_hub.training import MetaTrainConfig, MetaTrainer
from lsml_hub.training.checkpoint import Checkpoint

pytestmark = pytest.mark.gpu

# Two runs of the same config on one GPU (resume, compile, NCCL) agree to this after a few steps.
GPU_ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root:
        yield root


def gpu_config(out, **overrides):
    return small_config(out, device="cuda", **overrides)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_meta_trains_and_exports_an_fp32_init(tmp_path, precision):
    result = lsml_hub.meta_train(gpu_config(tmp_path / "run", precision=precision, channels_last=True,
                                            checkpoint_every=3))
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in result.final_eval.values())
    with safe_open(result.init_dir / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F32", "I64"}
    timm.create_model(f"local-dir:{result.init_dir}", pretrained=True, num_classes=3)
    tasks = Checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt").tasks
    assert all(("scaler" in state) == (precision == "fp16") for state in tasks.values())


def test_imaml_pulls_toward_phi_under_fp16s_gradient_scaler(tmp_path):
    algorithm = {"name": "imaml", "reset_period": 3, "cg_steps": 2, "held_out_batches": 1, "proximal": True}
    result = lsml_hub.meta_train(gpu_config(tmp_path / "run", precision="fp16", algorithm=algorithm, steps=6))
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in result.final_eval.values())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fine_tuning_runs_in_half_precision(precision):
    result = lsml_hub.finetune("scratch:test_resnet", "builtin:digits?classes=0-4", steps=4, batch_size=8,
                               max_train_samples=20, eval_every=2, device="cuda", precision=precision,
                               channels_last=True, progress=False)
    assert all(torch.isfinite(torch.tensor(p.train_loss)) for p in result.history)


def test_a_split_held_on_the_gpu_gives_the_cpu_streams_batches():
    data = load_task("builtin:printed_digits?samples_per_class=20").tensors("train")
    kwargs = {"seed": 5, "augment": Augment(4, True)}
    on_host = BatchStream(data, 16, device="cpu", **kwargs)
    from_pinned = BatchStream(data, 16, device="cuda", **kwargs)
    on_gpu = BatchStream(data.to("cuda"), 16, device="cuda", **kwargs)
    for _ in range(15):  # across an epoch boundary (200 images)
        a, b, c = next(on_host), next(from_pinned), next(on_gpu)
        # The same pixels and labels; the CPU's addcmul rounds once (fused multiply-add) where CUDA's rounds
        # the product first, so the normalized values may differ in the last bit.
        torch.testing.assert_close(b.images.cpu(), a.images, rtol=0, atol=1e-6)
        assert torch.equal(b.images, c.images)  # host-fed and device-held batches: the same kernels
        assert torch.equal(a.labels, c.labels.cpu())


@pytest.mark.parametrize("device_data_gb", [8.0, 0.0], ids=["data_on_gpu", "pinned_host_data"])
def test_a_step_with_several_tasks_never_waits_for_the_host(tmp_path, device_data_gb):
    never = 10**6  # no logging, evaluation or checkpoint inside the measured steps
    cfg = MetaTrainConfig.from_dict(gpu_config(
        tmp_path / "run", precision="bf16", channels_last=True, device_data_gb=device_data_gb, steps=never,
        log_every=never, eval_every=never, checkpoint_every=never,
    ))
    trainer = MetaTrainer(cfg, DistContext(device=torch.device("cuda")))
    for _ in range(3):  # warm-up: cuDNN autotuning and the allocator may synchronise
        trainer.train_step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(12):  # crosses an epoch boundary of the 200-image tasks
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_compiled_meta_training_matches_eager(tmp_path):
    eager = lsml_hub.meta_train(gpu_config(tmp_path / "eager", steps=3))
    compiled = lsml_hub.meta_train(gpu_config(tmp_path / "compiled", steps=3, compile=True))
    assert_same_tensors(init_tensors(compiled.init_dir), init_tensors(eager.init_dir), atol=1e-3)


def test_a_resumed_gpu_run_ends_close_to_an_uninterrupted_one(tmp_path):
    whole = lsml_hub.meta_train(gpu_config(tmp_path / "whole", steps=6, checkpoint_every=3))
    lsml_hub.meta_train(gpu_config(tmp_path / "split", steps=3, checkpoint_every=3))
    resumed = lsml_hub.meta_train(gpu_config(tmp_path / "split", steps=6, checkpoint_every=3))
    assert_same_tensors(init_tensors(resumed.init_dir), init_tensors(whole.init_dir), atol=GPU_ATOL)


@pytest.mark.multiprocess
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL refuses two ranks on one GPU: needs 2 GPUs")
def test_torchrun_with_nccl_matches_one_process(tmp_path, tmp_path_factory):
    # device cuda: each rank takes cuda:LOCAL_RANK and the process group uses NCCL (lsml_hub.distributed).
    single = lsml_hub.meta_train(gpu_config(tmp_path / "one", steps=4))
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump(gpu_config(tmp_path / "two", steps=4)))
    log = tmp_path / "torchrun.log"
    finish(start([*torchrun_two_processes(), str(RECIPE), str(cfg)],
                 subprocess_env(tmp_path_factory), log), log)
    assert_same_tensors(init_tensors(tmp_path / "two" / "init"), init_tensors(single.init_dir), atol=GPU_ATOL)
