"""Companion package of *Deep learning for image recognition, run and verified*.

One concept per module, so a reader finds any piece in one look:

- :mod:`companion.repro`  -- seeds, thread count and print precision for reproducible runs
- :mod:`companion.data`   -- real, offline-first datasets (MNIST, ...)
- :mod:`companion.train`  -- the :class:`~companion.train.Trainer` and its :class:`~companion.train.History`
- :mod:`companion.models` -- every model the book trains, one file per family
"""

__version__ = "0.1.0"
