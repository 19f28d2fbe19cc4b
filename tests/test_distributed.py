"""companion.distributed and companion.ddp_train: data parallelism, run for real by torchrun (gloo).

The claim the chapter rests on: k ranks with batch B/k take the same steps as one process with
batch B. Checked through the very same script (``python -m companion.ddp_train``) launched by
``torchrun --nproc_per_node 1`` and ``2``, on 1,024 real digits for 2 epochs: parameters, epoch
metrics and the loss of every step agree. A run stopped after epoch 1 and resumed by a new launch
equals the uninterrupted run bit for bit. The rest runs in this process: the bad launches get
clear errors, the sampler shards a global batch exactly, and the Trainer reshuffles every epoch,
also after a resume. (Each launch costs ~10-16 CPU seconds, mostly importing torch three times;
the training itself is under a second per rank.)
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from companion import distributed
from companion.distributed import DistEnv
from companion.train import Trainer, load_checkpoint_file

ARGS = ("--epochs", "2", "--batch-size", "64", "--lr", "0.05", "--momentum", "0.9",
        "--train-size", "1024", "--seed", "0")
STEPS_PER_EPOCH = 1024 // 64
#: float32, 2 ranks x 32 vs 1 x 64: each rank sums half of every gradient, then the halves are
#: added, so the sums round differently (~1 ulp per step) and 32 SGD steps with momentum carry
#: that along. Measured (torch 2.14.1, AMD EPYC): largest parameter difference 1.8e-7, largest
#: step-loss difference 2.4e-7. 2e-5 leaves a 100x margin for other CPUs' kernels and is still
#: 250x smaller than the smallest mean change of a layer over the run (5e-3, fc1.weight).
FLOAT32_ATOL = 2e-5


@functools.cache
def run(nproc: int, dtype: str, *extra: str) -> dict:
    """One launch of companion.ddp_train under torchrun, cached for the module's tests."""
    return distributed.launch(nproc, *ARGS, "--dtype", dtype, *extra, timeout=600)


def max_param_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def records(result: dict) -> list[dict]:
    """The epoch records without wall time (the only entry that may differ between equal runs)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in result["history"]["records"]]


# --------------------------------------------------------------------------------------------
# (a) 2 ranks x batch 32 == 1 process x batch 64
# --------------------------------------------------------------------------------------------
def test_two_ranks_equal_one_process_float64():
    one, two = run(1, "float64"), run(2, "float64")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert len(two["step_losses"]) == 2 * STEPS_PER_EPOCH
    assert max_param_diff(one["state_dict"], two["state_dict"]) < 1e-10
    # Not a vacuous equality: the run moved the parameters and lowered the loss.
    assert max_param_diff(one["state_dict"], run_initial_weights()) > 1e-2
    assert two["step_losses"][-1] < two["step_losses"][0] - 0.1
    torch.testing.assert_close(two["step_losses"], one["step_losses"], rtol=0, atol=1e-10)
    for r1, r2 in zip(records(one), records(two), strict=True):  # global means, not rank 0's shard
        assert r1.keys() == r2.keys()
        for k in r1:
            assert r2[k] == pytest.approx(r1[k], abs=1e-10), k


def test_two_ranks_equal_one_process_float32():
    one, two = run(1, "float32"), run(2, "float32")
    diff = max_param_diff(one["state_dict"], two["state_dict"])
    assert diff < FLOAT32_ATOL, f"largest parameter difference {diff:.3g}"
    torch.testing.assert_close(two["step_losses"], one["step_losses"], rtol=0, atol=FLOAT32_ATOL)


def test_rank_zero_alone_prints():
    out = run(2, "float64")["stdout"]
    assert out.count("epoch 1/2") == 1 and out.count("epoch 2/2") == 1, out


def run_initial_weights() -> dict:
    from companion.models import MnistCNN

    torch.manual_seed(0)  # as ddp_train does before building the model
    return MnistCNN(dropout=0.0).double().state_dict()


# --------------------------------------------------------------------------------------------
# (b) killed after epoch 1 and resumed == uninterrupted
# --------------------------------------------------------------------------------------------
def test_stopped_and_resumed_equals_uninterrupted(tmp_path):
    ckpt = str(tmp_path / "ddp.pt")
    full = run(2, "float32")
    stopped = distributed.launch(2, *ARGS, "--dtype", "float32", "--checkpoint", ckpt,
                                 "--stop-after-epoch", "1", timeout=600)
    assert len(records(stopped)) == 1 and "epoch 2/2" not in stopped["stdout"]
    resumed = distributed.launch(2, *ARGS, "--dtype", "float32", "--checkpoint", ckpt, "--resume",
                                 timeout=600)
    assert resumed["first_epoch"] == 1 and "epoch 1/2" not in resumed["stdout"]
    saved = load_checkpoint_file(ckpt)  # written by rank 0 alone, atomically, plain parameter names
    assert saved["model"].keys() == full["state_dict"].keys() and len(saved["rank_rng"]) == 2
    assert [f.name for f in tmp_path.iterdir()] == ["ddp.pt"]
    for k, v in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][k], v), k
    assert records(resumed) == records(full)
    assert torch.equal(resumed["step_losses"], full["step_losses"][STEPS_PER_EPOCH:])
    assert torch.equal(stopped["step_losses"], full["step_losses"][:STEPS_PER_EPOCH])


# --------------------------------------------------------------------------------------------
# (c) bad launches: clear errors, in this process
# --------------------------------------------------------------------------------------------
def test_torchrun_with_a_batch_that_does_not_divide_fails_clearly():
    with pytest.raises(RuntimeError, match=r"failed \(exit code 1\): ValueError: the global batch size 63 "
                                           r"must be a positive multiple of the world size 2"):
        distributed.launch(2, "--batch-size", "63", "--train-size", "128", timeout=600)


@pytest.mark.parametrize("missing", distributed.RENDEZVOUS_VARIABLES)
def test_setup_without_torchrun_names_the_variables(monkeypatch, missing):
    for name, value in zip(distributed.RENDEZVOUS_VARIABLES, ("0", "0", "1", "127.0.0.1", "29500")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(RuntimeError, match=rf"{missing}.*torchrun --standalone --nproc_per_node"):
        distributed.setup()


def test_setup_names_all_missing_variables(monkeypatch):
    for name in distributed.RENDEZVOUS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError) as err:
        distributed.setup()
    assert all(name in str(err.value) for name in distributed.RENDEZVOUS_VARIABLES)


@pytest.mark.parametrize("batch_size, world_size", [(63, 2), (64, 3), (2, 4), (0, 1)])
def test_batch_that_does_not_divide_names_both_numbers(batch_size, world_size):
    env = DistEnv(0, 0, world_size, "gloo", torch.device("cpu"))
    data = TensorDataset(torch.arange(10.0))
    with pytest.raises(ValueError, match=rf"global batch size {batch_size} .* world size {world_size}"):
        distributed.loader(data, batch_size, env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("kwargs", [{"backend": "nccl"}, {"device": "cuda"}])
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, kwargs):
    for name, value in zip(distributed.RENDEZVOUS_VARIABLES, ("0", "0", "1", "127.0.0.1", "29500")):
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match="no usable CUDA GPU|nccl backend needs CUDA"):
        distributed.setup(**kwargs)
    assert not dist.is_initialized()


def test_wrap_without_a_process_group_is_a_clear_error():
    assert not dist.is_initialized()
    env = DistEnv(0, 0, 1, "gloo", torch.device("cpu"))
    with pytest.raises(RuntimeError, match="setup"):
        distributed.wrap(nn.Linear(2, 2), env)


# --------------------------------------------------------------------------------------------
# The sampler and the Trainer's per-epoch reshuffling, in this process
# --------------------------------------------------------------------------------------------
def batches(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [x.long().tolist() for (x,) in loader]


@pytest.mark.parametrize("n, world_size", [(256, 2), (256, 4), (200, 2)])
def test_ranks_together_see_the_global_batch(n, world_size):
    data = TensorDataset(torch.arange(float(n)))
    whole = distributed.loader(data, 64, DistEnv(0, 0, 1, "gloo", torch.device("cpu")), seed=3)
    shards = [distributed.loader(data, 64, DistEnv(r, r, world_size, "gloo", torch.device("cpu")), seed=3)
              for r in range(world_size)]
    for epoch in (0, 1):
        expected = batches(whole, epoch)
        per_rank = [batches(s, epoch) for s in shards]
        assert all(len(b) == len(expected) for b in per_rank)  # same number of steps on every rank
        for i, batch in enumerate(expected):
            assert sorted(sum((b[i] for b in per_rank), [])) == sorted(batch)
    assert batches(whole, 0) != batches(whole, 1)  # reshuffled from one epoch to the next


@pytest.fixture
def one_rank_group():
    """A real gloo process group of one rank, in this process (no torchrun needed)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield DistEnv(0, 0, 1, "gloo", torch.device("cpu"))
    dist.destroy_process_group()


def recording_trainer(env: DistEnv, seen: list) -> Trainer:
    def step(trainer, batch):
        seen.append((trainer.epoch, batch[0].long().tolist()))
        return {"n": torch.tensor(1.0)}

    return Trainer(nn.Linear(1, 1), step_fn=step, distributed=env, progress="off")


def test_trainer_reshuffles_every_epoch_also_after_resume(one_rank_group, tmp_path):
    env, ckpt = one_rank_group, tmp_path / "t.pt"
    data = TensorDataset(torch.arange(96.0))
    expected = {e: batches(distributed.loader(data, 32, env, seed=5), e) for e in (0, 1)}
    seen: list = []
    recording_trainer(env, seen).fit(distributed.loader(data, 32, env, seed=5), epochs=2)
    assert [b for e, b in seen if e == 0] == expected[0]
    assert [b for e, b in seen if e == 1] == expected[1] != expected[0]
    seen.clear()
    recording_trainer(env, seen).fit(distributed.loader(data, 32, env, seed=5), epochs=1, checkpoint=ckpt)
    seen.clear()  # a new process would build a new loader whose sampler starts at epoch 0
    recording_trainer(env, seen).fit(distributed.loader(data, 32, env, seed=5), epochs=2,
                                     checkpoint=ckpt, resume=True)
    assert [b for _, b in seen] == expected[1]


def test_one_rank_trainer_history_matches_the_plain_trainer(one_rank_group):
    """In a world of one, the distributed code paths change nothing: the same floats."""
    x, y = torch.randn(96, 3, generator=torch.Generator().manual_seed(0)), torch.arange(96) % 2
    histories = []
    for env in (None, one_rank_group):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        loader = distributed.loader(TensorDataset(x, y), 32, one_rank_group, seed=1)
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                          distributed=env, progress="off")
        if env is None:
            loader.sampler.set_epoch(0)
        histories.append(trainer.fit(loader, loader, epochs=1).records[0])
    plain, dist_ = ({k: v for k, v in h.items() if k != "seconds"} for h in histories)
    assert plain == dist_


# --------------------------------------------------------------------------------------------
# (d) the DEVICE = "cuda" path
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_matches_the_cpu_run():
    gpu = distributed.launch(1, *ARGS, "--dtype", "float64", "--device", "cuda", timeout=600)
    assert gpu["stdout"].count("epoch 2/2") == 1
    # GPU kernels sum in other orders than CPU ones: equal to float64 rounding, not bit for bit.
    assert max_param_diff(gpu["state_dict"], run(1, "float64")["state_dict"]) < 1e-8
    nccl = torch.cuda.device_count() >= 2 and distributed.launch(2, *ARGS, "--dtype", "float64", timeout=600)
    if nccl:  # two GPUs: nccl, one process per GPU
        assert max_param_diff(nccl["state_dict"], gpu["state_dict"]) < 1e-8
