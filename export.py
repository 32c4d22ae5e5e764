#!/usr/bin/env python
"""Export a trained network (a best.ckpt) for deployment: MindIR, ONNX or AIR, BatchNorm folded.

    python export.py --ckpt_file outputs/RUN/best.ckpt --arch plain20 --file_name plain20 --file_format MINDIR
    python export.py --config configs/cifar10_plain20_rd.yaml --ckpt_file best.ckpt --file_format ONNX
    python export.py --ckpt_file best.ckpt --arch plain50 --stem imagenet --height 224 --file_format AIR \\
        --device_target Ascend

The file is loaded back after writing (MindIR by MindSpore, ONNX by onnxruntime) and its logits compared with
the checkpoint network's. Then: scripts/run_convert_om.sh (Ascend .om via ATC), scripts/run_convert_lite.sh
(.ms via MindSpore Lite's converter_lite), eval.py --mindir / --onnx (accuracy of the exported file).
"""
import sys

from resdist import cli  # imports no MindSpore: the CPU kernel choice must come first


def run(cfg, cpu_note):
    from resdist import runtime
    from resdist.export import TOLERANCE, export

    runtime.setup_logging()
    runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cpu_threads=cfg.cpu_threads)
    result = export(cfg)
    ops = result["ops"]
    print(f"exported {cfg.arch} ({result['format']}, input {'x'.join(map(str, result['input_shape']))}, "
          f"BatchNorm {'folded' if result['folded_bn'] else 'kept'}) to {result['file']}")
    if ops is not None:
        print("graph: " + ", ".join(f"{n} {op}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1])))
    if result["max_abs_diff"] is not None:
        verdict = "OK" if result["max_abs_diff"] <= TOLERANCE else f"ABOVE the tolerance {TOLERANCE:g}"
        print(f"reloaded and compared with the checkpoint network: max |logit difference| "
              f"{result['max_abs_diff']:.2e} ({verdict})")
        if result["max_abs_diff"] > TOLERANCE:
            return 1
    return 0


def main(argv=None):
    return cli.run_entry_point("export", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
