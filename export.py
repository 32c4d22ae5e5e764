#!/usr/bin/env python
"""Export a trained network (a best.ckpt) for deployment: MindIR, ONNX, MNN or AIR, BatchNorm folded.

    python export.py --ckpt_file outputs/RUN/best.ckpt --arch plain20 --file_name plain20 --file_format MINDIR
    python export.py --config configs/cifar10_plain20_rd.yaml --ckpt_file best.ckpt --file_format ONNX
    python export.py --ckpt_file best.ckpt --arch plain50 --stem imagenet --height 224 --file_format AIR \\
        --device_target Ascend
    python export.py --ckpt_file best.ckpt --arch plain20 --dataset cifar10 --file_format ONNX --quantize int8 \\
        --calib_data ../shared/data/cifar-10-batches-bin          # writes plain20.int8.onnx (README "INT8")
    python export.py --ckpt_file best.ckpt --arch plain20 --dataset cifar10 --file_format MNN --quantize int8 \\
        --calib_data ../shared/data/cifar-10-batches-bin --calib_method entropy   # plain20.int8.mnn (MNN's quantizer)

The file is loaded back after writing (MindIR by MindSpore, ONNX by onnxruntime, MNN by MNN) and its logits
compared with the checkpoint network's (an INT8 model with the float model's, on held-out images of the
validation split that calibration never saw); a file that fails the check is not written. Then:
scripts/run_convert_om.sh (Ascend .om via ATC), scripts/run_convert_lite.sh (.ms via MindSpore Lite's
converter_lite), eval.py --mindir / --onnx / --mnn (accuracy of the exported file).
"""
import sys

from resdist import cli  # imports no MindSpore: the CPU kernel choice must come first


def run(cfg, cpu_note):
    from resdist import runtime
    from resdist.deploy.export import export

    runtime.setup_logging()
    runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cpu_threads=cfg.cpu_threads)
    result = export(cfg)
    ops = result["ops"]
    shape = "x".join(map(str, result["input_shape"]))
    if result.get("quantized") and result["format"] == "MNN":
        print(f"exported {cfg.arch} (INT8 MNN: MNN's own quantizer, {result['calib_method']} calibration on "
              f"{result['calib_split']}; input {shape}) to {result['file']}: {result['bytes'] / 2**20:.2f} MB "
              f"(float {result['float_bytes'] / 2**20:.2f} MB)")
    elif result.get("quantized"):
        first = result["first_conv_weights"]
        print(f"exported {cfg.arch} (INT8 ONNX: QDQ, per-channel int8 weights ("
              f"{first + ' in the first convolution' if first else 'no convolution reads the input'}), "
              f"{result['activations']} activations, "
              f"{result['calib_method']} calibration on {result['calib_split']}; input {shape}) to {result['file']}: "
              f"{result['bytes'] / 2**20:.2f} MB (float {result['float_bytes'] / 2**20:.2f} MB)")
    else:
        print(f"exported {cfg.arch} ({result['format']}, input {shape}, "
              f"BatchNorm {'folded' if result['folded_bn'] else 'kept'}) to {result['file']}")
    if ops is not None:
        print("graph: " + ", ".join(f"{n} {op}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1])))
    if result["max_abs_diff"] is not None and not result.get("quantized"):
        print(f"reloaded and compared with the checkpoint network: max |logit difference| "
              f"{result['max_abs_diff']:.2e} (OK)")
    if result.get("quantized"):
        simulated = "simulated_top1" in result  # a QAT checkpoint: checked against the network it was trained as
        print(f"reloaded and compared with the {'simulated INT8 (QAT)' if simulated else 'float'} model on "
              f"{result['check_split']} (held out from calibration): top-1 agreement "
              f"{100 * result['top1_agreement']:.2f}% (OK: at least {100 * result['min_top1_agreement']:.0f}% "
              f"needed), top-1 float {result['float_top1']:.2f}% / "
              + (f"simulated {result['simulated_top1']:.2f}% / " if simulated else "")
              + f"INT8 {result['int8_top1']:.2f}%, max |logit difference| {result['max_abs_diff']:.3f} (largest "
              f"reference logit {result['max_abs_logit']:.2f}); on the calibration images themselves: agreement "
              f"{100 * result['calib_agreement']:.2f}%")
    return 0


def main(argv=None):
    return cli.run_entry_point("export", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
