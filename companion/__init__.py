"""Companion package of *Deep learning for image recognition, run and verified*.

One concept per module, so a reader finds any piece in one look:

- :mod:`companion.repro`    -- seeds, thread count and print precision for reproducible runs
- :mod:`companion.data`     -- real, offline-first datasets (MNIST, CIFAR-10, photo-blended digits)
- :mod:`companion.train`    -- the :class:`~companion.train.Trainer` and its :class:`~companion.train.History`
- :mod:`companion.metrics`  -- accuracy, confusion matrix, precision/recall/F1, IoU, Dice, calibration
- :mod:`companion.augment`  -- random affine augmentation of whole batches, checked against torchvision
- :mod:`companion.ops`      -- convolution, pooling, batch/layer/group norm and dropout from scratch,
  checked against PyTorch
- :mod:`companion.schedules` -- learning-rate schedules traced per step, the learning-rate range test
- :mod:`companion.models`   -- every model the book trains, one file per family
- :mod:`companion.transfer` -- replacing heads, freezing layers, loading pretrained weights
- :mod:`companion.interpret` -- saliency, occlusion, Grad-CAM, the randomisation check, FGSM and PGD
- :mod:`companion.gan`      -- GAN losses, the two-optimizer training step, sample-quality metrics
- :mod:`companion.export`   -- saving weights with metadata; torch.export / ONNX export
- :mod:`companion.scenes`   -- digit scenes: real digits on real photographs, with boxes and masks
- :mod:`companion.detection` -- NMS, precision-recall, AP/mAP
- :mod:`companion.predict`  -- the command-line predictor (``python -m companion.predict``)
- :mod:`companion.plotting` -- the book's one matplotlib style (150 dpi, legible at page width)
- :mod:`companion.figures`  -- schematics drawn by code from the chapters' own numbers
"""

__version__ = "0.1.0"
