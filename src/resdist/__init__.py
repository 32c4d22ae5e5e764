"""Residual Distillation in MindSpore.

Importing the package does not import MindSpore; submodules do. ``resdist.runtime.prefer_fast_cpu_kernels``
must run before MindSpore is imported, so entry points import ``resdist.runtime`` first.
"""
__version__ = "0.1.0"
