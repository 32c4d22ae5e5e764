"""What the benchmark scripts share (no MindSpore or PyTorch import here)."""
import json
import os

from resdist.fsutil import write_text  # imports no MindSpore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def portable_path(path):
    """``path`` as a committed report may name it: relative to the repository when inside it, else its last part
    only (no machine's folders)."""
    path = os.path.abspath(path)
    if os.path.commonpath([ROOT, path]) == ROOT:
        return os.path.relpath(path, ROOT)
    return os.path.basename(path.rstrip(os.sep))


def portable_command(script, argv):
    """The command line as a reader can reuse it: absolute paths (alone or in a comma-separated list) as
    ``portable_path`` gives them."""
    def portable(arg):
        prefix, sep, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        return prefix + sep + ",".join(portable_path(v) if os.path.isabs(v) else v for v in value.split(","))
    return " ".join([os.path.basename(script)] + [portable(a) for a in argv])


def save_report(report, path):
    """Write the JSON report atomically (a crash leaves the previous file, never half of one) and say where."""
    write_text(path, json.dumps(report, indent=2) + "\n")
    print(f"written to {path}")


def key_values(parser, items):
    """A benchmark's repeated ``--set KEY=VALUE`` as (key, value) pairs; anything else is a usage error."""
    bad = [s for s in items if "=" not in s]
    if bad:
        parser.error(f"--set takes KEY=VALUE, not {bad[0]!r}")
    return [tuple(s.split("=", 1)) for s in items]


def cpu_flags():
    """The instruction sets that decide onnxruntime's x86 integer kernels (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(set(flags) & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512bw"})
