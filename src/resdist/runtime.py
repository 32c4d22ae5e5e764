"""Process-level setup: CPU kernel choice, logging, device/mode, seeds and the distributed group.

`prefer_fast_cpu_kernels` must run before MindSpore is imported; this module therefore imports MindSpore
only inside functions.
"""
import logging
import logging.handlers
import os
import platform
import random
import sys

import numpy as np

logger = logging.getLogger("resdist")

ISA_VAR = "ONEDNN_MAX_CPU_ISA"
HOST_DISPATCH_VAR = "MS_DEV_HOST_BLOCKING_RUN"
LOG_FORMAT = ("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")


def prefer_fast_cpu_kernels():
    """Cap oneDNN at AVX2 on x86 unless the user chose an ISA.

    On AVX-512 CPUs oneDNN (as shipped in MindSpore 2.10) falls back to a reference convolution that is
    about 100x slower; capped at AVX2 it uses its JIT GEMM kernels. Returns a sentence for the log.
    """
    if ISA_VAR in os.environ:
        return f"{ISA_VAR}={os.environ[ISA_VAR]} (set by the user, left alone)"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"{ISA_VAR} not set ({platform.machine()} is not x86)"
    if "mindspore" in sys.modules:
        return f"{ISA_VAR} not set: MindSpore was imported first, so it would have no effect"
    os.environ[ISA_VAR] = "AVX2"
    return f"set {ISA_VAR}=AVX2 (oneDNN's AVX-512 path uses a ~100x slower reference convolution here)"


def prefer_blocking_host_dispatch(device_target):
    """On CPU, have MindSpore run each step on the calling thread instead of through its async dispatch queue.

    With the queue, the Python thread waits for the step in a busy loop (``AsyncRQueue::Wait``) that keeps a
    whole core spinning; on a 2-core machine that halves the cores left for the convolutions (measured:
    ResNet-20 training step 2x faster without it, see docs/performance.md). On Ascend/GPU the queue overlaps
    host and device work, so it is left on. MindSpore reads the variable once, at its first dispatched
    operation: call this before any tensor operation runs. A user's own setting wins.
    Returns a sentence for the log.
    """
    if device_target != "CPU":
        return f"{HOST_DISPATCH_VAR} not set (device {device_target})"
    if HOST_DISPATCH_VAR in os.environ:
        return f"{HOST_DISPATCH_VAR}={os.environ[HOST_DISPATCH_VAR]} (set by the user, left alone)"
    os.environ[HOST_DISPATCH_VAR] = "1"
    return f"set {HOST_DISPATCH_VAR}=1 (no busy-waiting dispatch thread competing with the kernels)"


NUMPY_ABI_NOTICE = "compiled using NumPy 1.x"


class CapturedOutput:
    """``with CapturedOutput(fd) as out:`` keeps what the block writes to file descriptor ``fd`` (1: stdout,
    2: stderr), C and C++ code included, and to the matching ``sys`` stream; ``out.text`` after the block. For
    native libraries that print to the process's streams (MNN's progress, MindSpore's NumPy notice)."""

    def __init__(self, fd):
        self.fd, self.name, self.text = fd, {1: "stdout", 2: "stderr"}[fd], ""

    def __enter__(self):
        import io
        import tempfile

        getattr(sys, self.name).flush()
        self.saved_fd, self.saved_stream = os.dup(self.fd), getattr(sys, self.name)
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), self.fd)
        setattr(sys, self.name, io.StringIO())
        return self

    def __exit__(self, *exc):
        text = getattr(sys, self.name).getvalue()
        setattr(sys, self.name, self.saved_stream)
        os.dup2(self.saved_fd, self.fd)
        os.close(self.saved_fd)
        self.file.seek(0)
        self.text = text + self.file.read().decode("utf-8", "replace")
        self.file.close()


def absorb_numpy_abi_notice():
    """MindSpore 2.10's C++ front end is built against NumPy 1.x. Under NumPy 2 its first eager operation on a
    Parameter asks NumPy for the 1.x C API; NumPy refuses by printing a notice with two "Traceback" headers to
    stderr, and MindSpore goes on without it (nothing computed changes: the test suite passes under NumPy 1.26 and
    2.4). A user reads that as a crash. It happens once a process: this runs such an operation with stderr
    captured, and returns a one-line note if the notice came (anything else printed is passed on). Run by
    init_context, after the device is chosen (no operation may run before)."""
    if int(np.__version__.split(".")[0]) < 2:
        return ""
    import mindspore as ms

    with CapturedOutput(2) as captured:  # MindSpore's log line and C++ print (fd 2), NumPy's message (sys.stderr)
        probe = ms.Parameter(ms.Tensor(np.ones(1, np.float32)), name="numpy_abi_probe")
        (probe.reshape(-1, 1) * 2.0).asnumpy()
    text = captured.text
    if NUMPY_ABI_NOTICE not in text:
        sys.stderr.write(text)
        return ""
    return (f"NumPy {np.__version__}: MindSpore's C++ front end, built for NumPy 1.x, printed its NumPy 1.x/2.x "
            f"notice (captured): harmless, it runs without NumPy's C API")


def setup_logging(log_file=None, rank=0):
    """Log to stdout (rank 0 at INFO, other ranks at WARNING) and, if given, to a file (INFO on every rank)."""
    root = logging.getLogger("resdist")
    root.handlers.clear()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter(*LOG_FORMAT)
    stream = logging.StreamHandler(sys.stdout)
    stream.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    if log_file:
        attach_log_file(log_file)
    root.propagate = False
    return root


def hold_log_lines():
    """Keep the log records from now on (besides printing them) until ``attach_log_file``: a run logs what it
    builds before its folder exists, since a refused run must not create or touch that folder."""
    logging.getLogger("resdist").addHandler(logging.handlers.MemoryHandler(capacity=10 ** 6,
                                                                          flushLevel=logging.CRITICAL + 1))


def attach_log_file(log_file):
    """Log to ``log_file`` as well (INFO), starting with the records held since ``hold_log_lines``."""
    root = logging.getLogger("resdist")
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    fh = logging.FileHandler(log_file)
    fh.setFormatter(logging.Formatter(*LOG_FORMAT))
    for held in [h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)]:
        held.setTarget(fh)
        held.flush()
        root.removeHandler(held)
    root.addHandler(fh)


def log_to_files(level, message):
    """Write a record to the log files only (for an error the entry point also prints to the console)."""
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def init_context(device_target="CPU", mode="graph", seed=0, distribute=False, cpu_threads=0):
    """Select device and execution mode, seed every generator, join the process group if asked.
    ``DEVICE_ID`` in the environment (rank-table launches on Ascend) picks the device; ``cpu_threads`` > 0 sets
    the CPU kernels' thread count.

    Returns (rank, group_size).
    """
    import mindspore as ms

    device_id = int(os.environ["DEVICE_ID"]) if os.environ.get("DEVICE_ID", "").isdigit() else None
    try:
        if device_id is None:
            ms.set_device(device_target)
        else:
            ms.set_device(device_target, device_id)
    except RuntimeError as exc:
        from .errors import ConfigError

        raise ConfigError(f"device_target={device_target} is not available in this MindSpore build "
                          f"({str(exc).splitlines()[0][:160]}); install the MindSpore build for {device_target} "
                          f"or use --device_target CPU") from None
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    if cpu_threads and device_target == "CPU":
        ms.device_context.cpu.op_tuning.threads_num(cpu_threads)
    rank, group_size = 0, 1
    if distribute:
        from mindspore.communication import get_group_size, get_rank, init

        init()  # after set_context(mode=...), as MindSpore requires
        rank, group_size = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=group_size)
    seed_everything(seed)
    # not in a distributed worker: its stderr goes to msrun's worker log anyway, and with the probe there a
    # worker timed out in the cluster's finalize (tests/test_distributed.py, reproduced twice)
    if device_target == "CPU" and not distribute:
        global numpy_note
        numpy_note = absorb_numpy_abi_notice()
    return rank, group_size


numpy_note = ""  # set by init_context: what absorb_numpy_abi_notice captured, for the log's "CPU runtime" line


def seed_everything(seed):
    import mindspore as ms
    import mindspore.dataset as ds

    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    ds.config.set_seed(seed)
