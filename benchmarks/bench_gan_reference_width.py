"""The reference article's DCGAN (generator and discriminator width 64, batch 64) for 20 epochs.

Chapter 12 suggests that wider networks trained for longer close the gap to real digits. This
script measures that claim on a CPU with ``bench_gan_budget``'s loop and judge: the same seed,
optimiser and data as the chapter, the reference's widths and batch size. It takes about 12
minutes on one core.

    .venv/bin/python benchmarks/bench_gan_reference_width.py
"""

from bench_gan_budget import main

if __name__ == "__main__":
    main(["--g-width", "64", "--d-width", "64", "--batch-size", "64", "--epochs", "20", "--every", "5"])
