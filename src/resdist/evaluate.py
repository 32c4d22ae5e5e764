"""Top-1 / top-5 accuracy of a network over a dataset, and ``run_eval`` (what eval.py runs): a checkpoint, or an
exported MindIR / ONNX file, evaluated on a data set's validation split."""
import logging
import os
import time

import numpy as np

from .data import checked


def evaluate(net, dataset, predict=None):
    """Returns {"top1", "top5" (percent), "num_samples", "seconds"}. ``net`` (a Cell) is put in eval mode; or
    ``predict`` maps numpy images to numpy logits (an exported model, see ``export.load_exported``)."""
    if predict is None:
        net.set_train(False)
    correct1 = correct5 = seen = 0
    start = time.time()
    for images, labels in checked(dataset.create_tuple_iterator(num_epochs=1), "evaluation data"):
        logits = net(images).asnumpy() if predict is None else predict(images.asnumpy())
        labels = labels.asnumpy()
        k = min(5, logits.shape[1])
        topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        correct1 += int((logits.argmax(1) == labels).sum())
        correct5 += int((topk == labels[:, None]).any(1).sum())
        seen += len(labels)
    if seen == 0:
        raise ValueError("the evaluation data set is empty")
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "num_samples": seen,
            "seconds": round(time.time() - start, 2)}


def run_eval(cfg, cpu_note=""):
    """Evaluate ``cfg.ckpt_file`` (or ``cfg.mindir`` / ``cfg.onnx``) on the validation split; print and write JSON."""
    from . import checkpoint as ckpt_io
    from . import runtime
    from .build import build_dataset, build_network, identity, write_json
    from .config import ConfigError

    runtime.setup_logging()
    log = logging.getLogger("resdist")
    sources = [s for s in (cfg.ckpt_file, cfg.mindir, cfg.onnx) if s]
    if len(sources) != 1:
        raise ConfigError("pass exactly one of --ckpt_file PATH, --mindir PATH, --onnx PATH")
    source = sources[0]
    log.info("CPU runtime: %s", cpu_note)
    runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cpu_threads=cfg.cpu_threads)
    net = predict = None
    if cfg.ckpt_file:
        state = ckpt_io.read(cfg.ckpt_file)  # before the data: a bad checkpoint should fail fast
    else:
        from .exported import load_exported

        predict, _ = load_exported(source)
    dataset, info = build_dataset(cfg, "val")
    if cfg.num_classes and cfg.num_classes != info["num_classes"]:
        raise ConfigError(f"num_classes={cfg.num_classes} but {cfg.dataset} has {info['num_classes']} classes")
    if cfg.ckpt_file:
        net = build_network(cfg, cfg.arch, info["num_classes"])
        ckpt_io.load_network(net, state, "checkpoint", cfg.ckpt_file, cfg.arch, identity(cfg, cfg.arch))
    kind = "checkpoint" if cfg.ckpt_file else ("MindIR (MindSpore)" if cfg.mindir else "ONNX (onnxruntime)")
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
