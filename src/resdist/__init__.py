"""Residual Distillation in MindSpore.

The package follows the pipeline, in layers; a module imports only its own folder and the layers below it
(tests/test_repo.py checks):

    base     errors (what a user can fix), fsutil (atomic writes), precision, runtime (CPU/device settings)
    models/  the networks and their registry              data/  dataset pipelines, downstream preparation
    shared   checkpoint (I/O and records), build (network and data set from a config), evaluate (top-1/top-5)
    distill/ the training objectives: CE, KD, FD and the RD step (``distill/rd.py``)
    config   the option table, YAML recipes and command-line parsing
    train/   the training loop and run folder         deploy/  folding, export, INT8, exported files, eval.py's job
    entry    cli (what train.py / eval.py / export.py share), demo

Importing the package does not import MindSpore; submodules do. ``resdist.runtime.prefer_fast_cpu_kernels``
must run before MindSpore is imported, so entry points import ``resdist.runtime`` first.
"""
__version__ = "0.1.0"
