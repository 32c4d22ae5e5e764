"""What eval.py runs: a checkpoint, or an exported MindIR / ONNX / MNN file (the file that will be deployed),
evaluated on a data set's validation split; an exported file is first checked against what the command says."""
import logging
import os

from .. import checkpoint as ckpt_io
from .. import runtime
from ..build import build_dataset, build_network, identity
from ..data import native_image_size
from ..errors import ConfigError
from ..evaluate import evaluate
from ..fsutil import write_json
from ..models import model_info
from .exported import load_exported


def check_exported_fits(model, path, cfg, num_classes):
    """Refuse an exported file that cannot be what the command says: its declared input size against the data
    set's images, its classes against the data set's, and the network export.py recorded in it (or, in a file
    without that record, whether its graph has shortcut additions) against --arch."""

    size = native_image_size(cfg.dataset) or cfg.image_size
    if list(model.input_shape[1:]) != [3, size, size]:
        raise ConfigError(f"{path} takes inputs of shape {model.input_shape}, but {cfg.dataset} gives 3x{size}x{size} "
                          f"images" + ("" if native_image_size(cfg.dataset) else f"; pass --image_size "
                                       f"{model.input_shape[-1]}") + ", or export the network for this input size")
    if model.num_classes != num_classes:
        raise ConfigError(f"{path} has {model.num_classes} classes but {cfg.dataset} has {num_classes}: it was "
                          f"trained for another data set")
    if model.record:
        wrong = [(key, model.record[key], want) for key, want in identity(cfg, cfg.arch).items()
                 if key in model.record and model.record[key] != want]
        if wrong:
            raise ConfigError(f"{path} was exported from {', '.join(f'{k} {r!r}' for k, r, _ in wrong)}, not "
                              f"{', '.join(f'{w!r}' for _, _, w in wrong)} (recorded in the file by export.py); "
                              f"pass {' '.join(f'--{k} {r}' for k, r, _ in wrong)}")
    elif model.residual is not None and model.residual != model_info(cfg.arch).residual:
        raise ConfigError(f"{path} {'has' if model.residual else 'has no'} shortcut additions, so it is not "
                          f"--arch {cfg.arch} ({'plain' if model.residual else 'residual'}); pass the --arch it "
                          f"was exported from")


def run_eval(cfg, cpu_note=""):
    """Evaluate ``cfg.ckpt_file`` (or ``cfg.mindir`` / ``cfg.onnx`` / ``cfg.mnn``) on the validation split; print
    and write JSON."""
    runtime.setup_logging()
    log = logging.getLogger("resdist")
    sources = [s for s in (cfg.ckpt_file, cfg.mindir, cfg.onnx, cfg.mnn) if s]
    if len(sources) != 1:
        raise ConfigError("pass exactly one of --ckpt_file PATH, --mindir PATH, --onnx PATH, --mnn PATH")
    source = sources[0]
    runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cpu_threads=cfg.cpu_threads)
    log.info("CPU runtime: %s", "; ".join(filter(None, (cpu_note, runtime.numpy_note))))
    net = predict = None
    if cfg.ckpt_file:
        state = ckpt_io.read(cfg.ckpt_file)  # before the data: a bad checkpoint should fail fast
    else:
        model = load_exported(source, "mindir" if cfg.mindir else "onnx" if cfg.onnx else "mnn")
        predict = model.predict
    dataset, info = build_dataset(cfg, "val")
    if cfg.num_classes and cfg.num_classes != info["num_classes"]:
        raise ConfigError(f"num_classes={cfg.num_classes} but {cfg.dataset} has {info['num_classes']} classes")
    if cfg.ckpt_file:
        net = build_network(cfg, cfg.arch, info["num_classes"])
        ckpt_io.load_network(net, state, "checkpoint", cfg.ckpt_file, cfg.arch, identity(cfg, cfg.arch))
    else:
        check_exported_fits(model, source, cfg, info["num_classes"])
    kind = "checkpoint" if cfg.ckpt_file else ("MindIR (MindSpore)" if cfg.mindir else
                                               "ONNX (onnxruntime)" if cfg.onnx else "MNN (MNN runtime)")
    log.info("evaluating %s %s (%s) on %s: %d images, %s", kind, source, cfg.arch, cfg.dataset,
             info["num_samples"], info["split"])
    result = evaluate(net, dataset, predict)
    result.update(arch=cfg.arch, model_file=os.path.abspath(source), model_sha256=ckpt_io.file_sha256(source),
                  model_kind=kind, dataset=cfg.dataset, data_path=cfg.data_path, split=info["split"])
    out = cfg.output_json or os.path.splitext(source)[0] + f"_eval_{cfg.dataset}.json"
    write_json(out, result)
    print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  on {result['num_samples']} images "
          f"({info['split']}); written to {out}")
    return result
