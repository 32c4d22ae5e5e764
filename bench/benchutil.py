"""What the benchmark scripts share (no MindSpore or PyTorch import here)."""
import json
import os


def save_report(report, path):
    """Write the JSON report atomically (a crash leaves the previous file, never half of one) and say where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(path + ".partial", path)
    print(f"written to {path}")
