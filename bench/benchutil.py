"""What the benchmark scripts share (no MindSpore or PyTorch import here)."""
import json
import os

from resdist.fsutil import write_text  # imports no MindSpore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def portable_command(script, argv):
    """The command line as a reader can reuse it: absolute paths inside the repository become relative to it and
    other absolute paths keep only their last part, so a committed report names no machine's folders."""
    def portable(arg):
        prefix, sep, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        if os.path.isabs(value):
            inside = os.path.commonpath([ROOT, os.path.abspath(value)]) == ROOT
            value = os.path.relpath(value, ROOT) if inside else os.path.basename(value.rstrip(os.sep))
        return prefix + sep + value
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
