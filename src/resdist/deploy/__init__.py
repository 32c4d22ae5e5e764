"""Deployment: BatchNorm folding (``fold``), export to MindIR / ONNX / MNN / AIR (``export``), loading an exported
file back in the runtime that will run it (``exported``, ``mnn``), INT8 quantization (``quantize``), the analytic
memory model of a deployed graph (``memory``), and eval.py's job on a checkpoint or exported file (``eval_job``)."""
