"""companion.train: the Trainer's loop, modes, checkpoints and exact resume."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from companion.data import loaders, mnist
from companion.models import MnistCNN
from companion.repro import seed_everything
from companion.train import History, Trainer, load_checkpoint_file, save_atomic


@pytest.fixture(scope="module")
def small_mnist():
    train, test = mnist("train"), mnist("test")
    return Subset(train, range(512)), Subset(test, range(256))


def make_run(small_mnist, seed: int = 0):
    """A fresh model/optimizer/loader triple, built the same way each time."""
    gen = seed_everything(seed)
    model = MnistCNN()  # has dropout: resume must restore the RNG to match exactly
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)
    train_loader = DataLoader(small_mnist[0], batch_size=64, shuffle=True, generator=gen)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched, progress="off")
    return trainer, train_loader


def test_fit_learns_and_returns_history(small_mnist):
    gen = seed_everything(0)
    model = MnistCNN()
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(), progress="off")
    train_loader = DataLoader(small_mnist[0], batch_size=32, shuffle=True, generator=gen)
    test_loader = DataLoader(small_mnist[1], batch_size=128)
    before = trainer.evaluate(test_loader)
    history = trainer.fit(train_loader, test_loader, epochs=3)
    assert isinstance(history, History) and len(history) == 3
    assert history["epoch"] == [1, 2, 3]
    assert set(history.keys()) >= {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > before["acc"] + 0.3
    assert history.best("val_acc") == max(history["val_acc"])


def test_resume_equals_uninterrupted(small_mnist, tmp_path):
    ckpt = tmp_path / "run.pt"
    # Uninterrupted: 4 epochs.
    full, loader = make_run(small_mnist)
    full.fit(loader, epochs=4)
    # Interrupted after 2 epochs, then a *new* process-like start: fresh objects, resume from disk.
    first, loader = make_run(small_mnist)
    first.fit(loader, epochs=2, checkpoint=ckpt)
    torch.manual_seed(12345)  # disturb the global RNG as a new session would
    resumed, loader = make_run(small_mnist, seed=99)  # different init: everything must come from the checkpoint
    history = resumed.fit(loader, epochs=4, checkpoint=ckpt, resume=True)
    assert resumed.epoch == 4 and len(history) == 4
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"parameter {name} differs after resume"
    assert [r["train_loss"] for r in history.records] == full.history["train_loss"]
    assert resumed.scheduler.get_last_lr() == full.scheduler.get_last_lr()


def test_resume_without_checkpoint_starts_fresh(small_mnist, tmp_path):
    trainer, loader = make_run(small_mnist)
    trainer.fit(loader, epochs=1, checkpoint=tmp_path / "new.pt", resume=True)
    assert trainer.epoch == 1 and (tmp_path / "new.pt").is_file()


def test_evaluate_uses_eval_mode_and_no_grad():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled()))
            return self.lin(x)

    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    model = Spy()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), progress="off")
    trainer.fit(data, data, epochs=1)
    assert seen[:3] == [(True, True)] * 3  # training batches
    assert seen[3:] == [(False, False)] * 3  # validation batches
    logits, targets = trainer.predict(data)
    assert logits.shape == (24, 3) and targets.shape == (24,)
    assert model.training  # predict/evaluate restore the previous mode


def test_metrics_are_weighted_by_batch_size():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    # batch 1: 3 examples all right; batch 2: 1 example wrong -> accuracy 3/4, not mean(1, 0) = 0.5
    batches = [(torch.tensor([[1.0, 0], [1, 0], [0, 1]]), torch.tensor([0, 0, 1])),
               (torch.tensor([[1.0, 0]]), torch.tensor([1]))]
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(), progress="off")
    assert trainer.evaluate(batches)["acc"] == pytest.approx(0.75)


def test_custom_step_with_two_optimizers_and_checkpoint(tmp_path):
    seed_everything(0)
    nets = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 1)})
    opts = {"a": torch.optim.SGD(nets["a"].parameters(), lr=0.1), "b": torch.optim.Adam(nets["b"].parameters(), lr=0.01)}
    a_before = nets["a"].weight.detach().clone()

    def step(trainer, batch):
        (x,) = batch
        loss_b = trainer.model["b"](x).pow(2).mean()  # only b is updated in this step
        trainer.optimizer["b"].zero_grad()
        loss_b.backward()
        trainer.optimizer["b"].step()
        return {"loss_b": loss_b}

    data = [(torch.randn(5, 3),) for _ in range(4)]
    trainer = Trainer(nets, opts, step_fn=step, progress="off")
    history = trainer.fit(data, epochs=2, checkpoint=tmp_path / "gan.pt")
    assert torch.equal(nets["a"].weight, a_before)
    assert history["train_loss_b"][1] < history["train_loss_b"][0]
    ckpt = load_checkpoint_file(tmp_path / "gan.pt")
    assert set(ckpt["optimizers"]) == {"a", "b"} and ckpt["epoch"] == 2


def test_callback_stops_early():
    model = nn.Linear(2, 2)
    data = [(torch.randn(4, 2), torch.randint(0, 2, (4,)))]
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      callbacks=[lambda t, rec: rec["epoch"] >= 2], progress="off")
    assert len(trainer.fit(data, epochs=10)) == 2


def test_line_progress_prints_one_line_per_epoch(capsys):
    model = nn.Linear(2, 2)
    data = [(torch.randn(4, 2), torch.randint(0, 2, (4,)))]
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), progress="line").fit(data, epochs=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  train_loss ")
    with pytest.raises(ValueError, match="progress"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), progress="fancy")


def test_trainer_requires_loss_or_step():
    with pytest.raises(ValueError, match="loss_fn"):
        Trainer(nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------
def test_save_atomic_leaves_no_partial_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_atomic({"x": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("fail mid-write")

    with pytest.raises(RuntimeError):
        save_atomic({"x": Boom()}, path)
    assert torch.equal(load_checkpoint_file(path)["x"], torch.ones(2))  # old file intact
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]  # no temporary left behind


def test_checkpoints_load_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": Evil()}, protocol=2))  # torch.save's protocol: no unrelated warning
    with pytest.raises(ValueError, match="weights-only"):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint_file(tmp_path / "missing.pt")


def test_loading_into_a_different_architecture_is_a_clear_error(tmp_path, small_mnist):
    trainer, loader = make_run(small_mnist)
    trainer.save_checkpoint(tmp_path / "cnn.pt")
    other = Trainer(nn.Linear(784, 10), torch.optim.SGD(nn.Linear(784, 10).parameters(), lr=0.1),
                    nn.CrossEntropyLoss(), progress="off")
    with pytest.raises(ValueError, match="different model architecture"):
        other.load_checkpoint(tmp_path / "cnn.pt")


def test_history_round_trip_and_plot():
    h = History()
    for e in range(3):
        h.append({"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val_acc": 0.5 + 0.1 * e, "seconds": 0.1})
    assert History.from_dict(h.to_dict()).records == h.records
    fig = h.plot()
    assert len(fig.axes) == 2
    # Within the book's column (tests/test_reader_notebooks.py holds the stored figures to it).
    from companion.plotting import MAX_WIDTH_IN
    assert fig.get_size_inches()[0] <= MAX_WIDTH_IN
    assert h.plot(["train_loss"]).get_size_inches()[0] <= MAX_WIDTH_IN / 2
    with pytest.raises(KeyError, match="val_loss"):
        h["val_loss"]
