#!/usr/bin/env python
"""Publish a trained CIFAR-10 plain student on MindSpore Hub: its checkpoint, MindIR, ONNX and INT8 ONNX files in
hub/assets/ and a model card in hub/mshub_res/assets/<publisher>/<version>/<model>.md, laid out as the Hub
repository's validator expects (YAML header between two `---` lines; sections Introduction, Usage, Citation).

    python scripts/make_hub_card.py --ckpt_file RUN/final.ckpt --arch plain20 --model_name plain20_rd_cifar10 \\
        --eval_json RUN/final_eval_cifar10.json --trained_with "bash scripts/run_cifar10_study.sh ..." \\
        --data_path ../shared/data/cifar-10-batches-bin --repo_link https://github.com/OWNER/REPO

The accuracy on the card is the one in --eval_json (written by eval.py), with its split named in the card. The
INT8 ONNX file is made by `export.py --quantize int8` (calibrated on --data_path's training split) and its
accuracy measured by `eval.py --onnx` on the held-out data_batch_5 of --data_path. With --int8_ckpt it is exported
from a quantization-aware fine-tuned copy of --ckpt_file (`train.py --qat true --pretrained_ckpt CKPT`) instead.
asset-link entries point at hub/assets/ in --repo_link's main branch; set --repo_link to where you publish.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIXES = ("ckpt", "mindir", "onnx", "int8.onnx")
CALIB_METHODS = {"minmax": "MinMax", "percentile": "percentile", "entropy": "entropy (KL)"}  # as the card says
EVAL_KEYS = ("top1", "split", "num_samples", "arch", "dataset", "model_kind", "model_sha256")


class PublishError(Exception):
    """Bad input to publishing: one line, nothing written."""


CARD = """---
model-name: {model}
backbone-name: {arch}
module-type: cv-classification
fine-tunable: True
input-shape: [1, 3, 32, 32]
model-version: {version}
train-dataset: cifar10
accuracy: {accuracy}
author: {author}
update-time: {date}
repo-link: {repo}
user-id: {user}
used-for: inference
train-backend: cpu
infer-backend: cpu
mindspore-version: {ms_version}
license: Apache2.0
summary: {arch_title} without shortcuts {trained_how}
asset:
{assets}
---

## Introduction

A {arch_title} network **without shortcuts** ("plain": the ResNet with every shortcut addition removed, so nothing
but convolutions, ReLU, pooling and a classifier at inference), {introduction}

Accuracy {accuracy}% top-1 is measured on {split}, {samples} images, not on the official CIFAR-10 test set. How it
was trained, on this project's 2-core CPU machine (the paper trains for 200 epochs on all 50,000 training images):

    {trained_with}

and evaluated with

    {evaluated_with}
{choosing}
## Usage

```python
import mindspore_hub as mshub
import mindspore as ms
import numpy as np

net = mshub.load("{publisher}/{version}/{model}")   # or, from a clone of the repository:
# from mindspore_hub_conf import create_network; net = create_network("{model}", ckpt_file="{ckpt_name}")
images = ms.Tensor(np.zeros((1, 3, 32, 32), np.float32))  # normalised with the CIFAR-10 mean and std
logits = net(images)
```

The MindIR and ONNX files have BatchNorm folded into the convolutions (`python export.py`); the ONNX file runs in
onnxruntime and converts to an Ascend `.om` with `bash scripts/run_convert_om.sh`, the MindIR to a MindSpore Lite
`.ms` with `bash scripts/run_convert_lite.sh`.

INT8: `{model}.int8.onnx` ({int8_how}: QDQ, per-channel int8 weights, uint8 in the
first convolution, {activations} activations, {calib_method} calibration on 512 training images) scores
{int8_accuracy}% top-1 on the same {samples} images. The first convolution's weights are uint8 because there, on
the full-range image, onnxruntime's int8 kernels saturate on x86 CPUs without VNNI.{int8_origin}

## Citation

```bibtex
@inproceedings{{li2020residual,
  title     = {{Residual Distillation: Towards Portable Deep Neural Networks without Shortcuts}},
  author    = {{Li, Guilin and Zhang, Junlei and Wang, Yunhe and Liu, Chuanjian and Tan, Matthias and Lin, Yunfeng
               and Zhang, Wei and Feng, Jiashi and Zhang, Tong}},
  booktitle = {{Advances in Neural Information Processing Systems}},
  year      = {{2020}}
}}
```
"""


# What the card says of how the model was trained, by the procedure its checkpoint records: (summary, introduction)
TRAINED_HOW = {
    "rd": ("trained by Residual Distillation from a ResNet teacher",
           "trained on CIFAR-10 with Residual Distillation\n(Li et al., NeurIPS 2020) from a ResNet teacher: during "
           "training, the student's early-stage features also run\nthrough the frozen teacher's later stages, whose "
           "shortcuts carry gradient into the student. Only the student is\npublished."),
    "plain": ("trained alone, without a teacher",
              "trained on CIFAR-10 alone, with the cross-entropy\nand no teacher: the baseline that Residual "
              "Distillation (Li et al., NeurIPS 2020) sets out to improve on."),
    "kd": ("trained by knowledge distillation from a ResNet teacher",
           "trained on CIFAR-10 with knowledge distillation\n(Hinton et al.) from a ResNet teacher's softened "
           "outputs. Only the student is published."),
    "fd": ("trained by feature distillation from a ResNet teacher",
           "trained on CIFAR-10 with feature distillation\nfrom a ResNet teacher (the margin-based partial L2 of "
           "Heo et al.), without Residual Distillation's mixed\npaths. Only the student is published."),
}


def trained_how(state, path):
    """The card's claims about training, from the checkpoint's own record (procedure, dataset)."""
    procedure, dataset = state.get("procedure"), state.get("dataset")
    if not isinstance(procedure, str) or not isinstance(dataset, str):
        raise PublishError(f"--ckpt_file {path} does not record how it was trained (procedure, dataset): publish a "
                           f"checkpoint train.py wrote (final.ckpt or best.ckpt), whose record the card states")
    if dataset != "cifar10":
        raise PublishError(f"--ckpt_file {path} was trained on {dataset}, not cifar10: the card publishes CIFAR-10 "
                           f"models")
    if procedure not in TRAINED_HOW:
        raise PublishError(f"--ckpt_file {path} records procedure {procedure!r}; the card describes "
                           f"{', '.join(TRAINED_HOW)}")
    summary, introduction = TRAINED_HOW[procedure]
    if isinstance(state.get("dirac"), str):  # train.py --dirac true records it (older checkpoints do not)
        introduction += ("\nIts convolutions were Dirac-parametrised in training (W_eff = diag(alpha) * delta + "
                         "diag(beta) * W, as in\nDiracNets and the authors' code) and are folded into ordinary "
                         "convolutions in every file here.")
    return summary, introduction


def read_eval_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except FileNotFoundError:
        raise PublishError(f"--eval_json {path} does not exist; write it with eval.py --ckpt_file CKPT "
                           f"--output_json {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"--eval_json {path} is not eval.py's JSON ({exc.__class__.__name__}); write it again "
                           f"with eval.py") from None
    missing = [k for k in EVAL_KEYS if not isinstance(result, dict) or k not in result]
    if missing:
        raise PublishError(f"--eval_json {path} lacks {', '.join(missing)}: write it with this project's eval.py "
                           f"(which records the evaluated file's sha256)")
    return result


def read_choosing(path):
    """The text of the card's "Which model to choose" section (Markdown, --choosing), checked not to break the
    card's layout: no `---` line (the header's fence) and no heading of its own. "" without --choosing."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"--choosing {path} cannot be read ({exc.__class__.__name__}); pass a UTF-8 Markdown "
                           f"file") from None
    if not text:
        raise PublishError(f"--choosing {path} is empty; write the comparison in it, or leave --choosing out")
    bad = [line for line in text.splitlines() if line.startswith(("---", "#"))]
    if bad:
        raise PublishError(f"--choosing {path} has a line starting with '---' or '#' ({bad[0][:40]!r}): the card "
                           f"gives the section its heading and its header ends at a '---' line; use plain "
                           f"paragraphs, lists and tables")
    return f"\n## Which model to choose\n\n{text}\n"


def check_inputs(args):
    """Everything publishing could trip on, before anything is written: the name, an existing model, the
    checkpoint and its record of how it was trained, and that the eval JSON measured this very checkpoint, as this
    network, on CIFAR-10."""
    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model, is_model, list_models, model_info

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", args.model_name):
        raise PublishError(f"--model_name {args.model_name!r} must be letters, digits, '_' and '-' (it names "
                           f"files in hub/assets/ and the card)")
    if not is_model(args.arch):
        raise PublishError(f"unknown --arch '{args.arch}'; known: {', '.join(list_models())}")
    if model_info(args.arch).residual:
        raise PublishError(f"--arch {args.arch} has shortcuts; the card publishes a plain student (plainN)")
    existing = [p for p in published_files(args) if os.path.exists(p)]
    if existing and not args.replace:
        raise PublishError(f"{args.model_name} is already published ({', '.join(existing)}); pass --replace to "
                           f"replace it, or choose another --model_name")
    result = read_eval_json(args.eval_json)
    state = ckpt_io.read(args.ckpt_file, "--ckpt_file")
    stem = model_info(args.arch).stem_options("cifar")  # a CIFAR-10 card: 32x32 images
    # its record first, then names and shapes
    ckpt_io.load_network(create_model(args.arch, num_classes=10, **stem), state, "--ckpt_file", args.ckpt_file,
                         args.arch, ckpt_io.network_identity(args.arch, "full", stem.get("stem")))
    result["trained_how"] = trained_how(state, args.ckpt_file)
    result["choosing"] = read_choosing(args.choosing)
    sha256 = ckpt_io.file_sha256(args.ckpt_file)
    if args.int8_ckpt:
        check_int8_ckpt(args, stem, sha256)
    wrong = [f"{key} {result[key]!r} (expected {want!r})" for key, want in
             (("model_sha256", sha256), ("arch", args.arch), ("dataset", "cifar10"),
              ("model_kind", "checkpoint")) if result[key] != want]
    if wrong:
        raise PublishError(f"--eval_json {args.eval_json} did not evaluate --ckpt_file {args.ckpt_file} as "
                           f"{args.arch} on cifar10: {'; '.join(wrong)}")
    return result


def check_int8_ckpt(args, stem, ckpt_sha256):
    """--int8_ckpt must be a quantization-aware checkpoint of the same network, fine-tuned from --ckpt_file itself
    (its record names that file's sha256, ``ckpt_sha256``), exported in the scheme it was trained for."""
    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model

    if not args.int8_trained_with:
        raise PublishError("--int8_ckpt needs --int8_trained_with: the command that fine-tuned it, for the card")
    if (args.calib_method, args.quant_activations) != ("minmax", "uint8"):
        raise PublishError(f"--int8_ckpt was fine-tuned for MinMax ranges and uint8 activations, not "
                           f"--calib_method {args.calib_method} --quant_activations {args.quant_activations}; leave "
                           f"both at their defaults")
    state = ckpt_io.read(args.int8_ckpt, "--int8_ckpt")
    if not ckpt_io.meta_value(state, "quantization_aware"):
        raise PublishError(f"--int8_ckpt {args.int8_ckpt} is not quantization-aware; write one with train.py "
                           f"--qat true --pretrained_ckpt {args.ckpt_file}")
    origin = ckpt_io.meta_value(state, "pretrained_sha256")
    if origin != ckpt_sha256:
        raise PublishError(f"--int8_ckpt {args.int8_ckpt} was not fine-tuned from --ckpt_file {args.ckpt_file} "
                           f"({'its record names another file' if origin else 'it records no starting point'}); "
                           f"fine-tune it again with train.py --qat true --pretrained_ckpt {args.ckpt_file}")
    ckpt_io.load_network(create_model(args.arch, num_classes=10, **stem), state, "--int8_ckpt", args.int8_ckpt,
                         args.arch, ckpt_io.network_identity(args.arch, "full", stem.get("stem")))


def published_files(args):
    folder = os.path.join(args.hub_dir, "mshub_res", "assets", args.publisher, args.version)
    return [os.path.join(args.hub_dir, "assets", f"{args.model_name}.{s}") for s in SUFFIXES] + \
        [os.path.join(folder, f"{args.model_name}.md")]


def run(command, what):
    done = subprocess.run([sys.executable] + command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise PublishError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def make_files(args, result, staging):
    """The four assets and the card, made in ``staging``; returns {staged path: published path}."""
    import mindspore

    from resdist.checkpoint import file_sha256

    base = os.path.join(staging, args.model_name)
    shutil.copyfile(args.ckpt_file, base + ".ckpt")
    for fmt in ("MINDIR", "ONNX"):
        run([os.path.join(ROOT, "export.py"), "--ckpt_file", base + ".ckpt", "--arch", args.arch, "--file_name",
             base, "--file_format", fmt, "--dataset", "cifar10"], f"export.py --file_format {fmt}")
    # export.py writes <file_name>.int8.onnx; from --int8_ckpt under another name, renamed below
    int8_from = ["--ckpt_file", args.int8_ckpt, "--arch", args.arch, "--file_name", os.path.join(staging, "qat")] \
        if args.int8_ckpt else ["--onnx_file", base + ".onnx", "--file_name", base]
    run([os.path.join(ROOT, "export.py")] + int8_from + [
        "--file_format", "ONNX", "--quantize", "int8", "--dataset", "cifar10", "--calib_data", args.data_path,
        "--quant_activations", args.quant_activations, "--calib_method", args.calib_method],
        "export.py --quantize int8")
    if args.int8_ckpt:
        os.replace(os.path.join(staging, "qat.int8.onnx"), base + ".int8.onnx")
    int8_json = os.path.join(staging, "int8_eval.json")
    run([os.path.join(ROOT, "eval.py"), "--onnx", base + ".int8.onnx", "--arch", args.arch, "--dataset", "cifar10",
         "--data_path", args.data_path, "--val_split", "data_batch_5", "--output_json", int8_json],
        "eval.py --onnx (the INT8 model)")
    with open(int8_json, encoding="utf-8") as f:
        int8_accuracy = round(float(json.load(f)["top1"]), 2)

    raw = args.repo_link.rstrip("/") + "/raw/main/hub/assets/"
    assets = "\n".join(f"  - file-format: {suffix.rsplit('.', 1)[-1]}\n"
                       f"    asset-link: {raw}{args.model_name}.{suffix}\n"
                       f"    asset-sha256: {file_sha256(base + '.' + suffix)}"
                       for suffix in SUFFIXES)
    card = CARD.format(model=args.model_name, arch=args.arch, version=args.version,
                       accuracy=round(float(result["top1"]), 2), author=args.author,
                       date=time.strftime("%Y-%m-%d"), repo=args.repo_link, user=args.publisher,
                       ms_version=mindspore.__version__, assets=assets, split=result["split"].replace(":", ""),
                       samples=result["num_samples"], trained_with=args.trained_with,
                       evaluated_with=f"python eval.py --arch {args.arch} --dataset cifar10 --data_path DIR "
                                      f"--ckpt_file hub/assets/{args.model_name}.ckpt",
                       publisher=args.publisher, ckpt_name=f"hub/assets/{args.model_name}.ckpt",
                       arch_title=args.arch.replace("plain", "plain-"), int8_accuracy=int8_accuracy,
                       trained_how=result["trained_how"][0], introduction=result["trained_how"][1],
                       activations=args.quant_activations, calib_method=CALIB_METHODS[args.calib_method],
                       choosing=result["choosing"], **int8_text(args))
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(card)
    staged = [base + "." + s for s in SUFFIXES] + [base + ".md"]
    return dict(zip(staged, published_files(args)))


def int8_text(args):
    """How the card says the INT8 file was made."""
    if not args.int8_ckpt:
        return {"int8_how": "onnxruntime post-training quantization", "int8_origin": ""}
    return {"int8_how": "quantization-aware fine-tuning, then onnxruntime's quantizer",
            "int8_origin": "\nIt is exported from a copy of the published checkpoint fine-tuned for this INT8 "
                           "scheme (its simulated\nrounding in the training graph), with\n\n    "
                           f"{args.int8_trained_with}\n\nso its weights are not the float files'."}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_file", required=True)
    parser.add_argument("--arch", required=True, help="the plain network it is (plain20, plain56, ...)")
    parser.add_argument("--model_name", required=True, help="letters, digits, '_', '-': the files' and card's name")
    parser.add_argument("--eval_json", required=True, help="eval.py's JSON for this very checkpoint (its sha256 "
                                                           "is checked)")
    parser.add_argument("--trained_with", required=True, help="the command that trained it")
    parser.add_argument("--data_path", required=True, help="the CIFAR-10 folder: the INT8 model's calibration "
                                                            "images (training split) and its accuracy (data_batch_5)")
    parser.add_argument("--quant_activations", choices=("uint8", "int8"), default="uint8",
                        help="the INT8 file's activation type (export.py --quant_activations): uint8 is fastest "
                             "for a ResNet in onnxruntime (its additions fuse), int8 can be faster for a plain "
                             "network (docs/performance.md)")
    parser.add_argument("--calib_method", choices=sorted(CALIB_METHODS), default="minmax",
                        help="the INT8 file's activation ranges (export.py --calib_method): percentile for a "
                             "Dirac-parametrised student, which loses more with minmax (docs/deployment.md, INT8)")
    parser.add_argument("--int8_ckpt", default="", metavar="CKPT",
                        help="export the INT8 file from this quantization-aware copy of --ckpt_file (train.py --qat "
                             "true --pretrained_ckpt CKPT, which records what it started from) rather than by "
                             "post-training quantization of --ckpt_file; MinMax ranges, uint8 activations")
    parser.add_argument("--int8_trained_with", default="", metavar="COMMAND",
                        help="with --int8_ckpt: the command that fine-tuned it, stated on the card")
    parser.add_argument("--choosing", default="", metavar="FILE",
                        help="a Markdown file for the card's 'Which model to choose' section: how this model "
                             "compares with the others published (accuracy, size, latency measured, each figure "
                             "from a named run); no headings of its own")
    parser.add_argument("--repo_link", required=True)
    parser.add_argument("--hub_dir", default=os.path.join(ROOT, "hub"), help="where assets/ and mshub_res/ are")
    parser.add_argument("--publisher", default="resdist")
    parser.add_argument("--version", default="1.0")
    parser.add_argument("--author", default="resdist")
    parser.add_argument("--replace", action="store_true", help="replace a model already published under "
                                                               "--model_name (refused otherwise)")
    args = parser.parse_args(argv)
    from resdist.errors import UserError

    staging = None
    try:
        result = check_inputs(args)
        os.makedirs(args.hub_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".publishing-", dir=args.hub_dir)  # same file system: renames
        moves = make_files(args, result, staging)
        for source, target in moves.items():  # only once every file is made
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
    except (PublishError, UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    print("wrote " + ", ".join(moves.values()))
    import importlib.util

    spec = importlib.util.spec_from_file_location("mindspore_hub_conf", os.path.join(ROOT, "mindspore_hub_conf.py"))
    hub_conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub_conf)
    if args.model_name not in hub_conf.PUBLISHED:  # the card's usage code loads the model by this name
        print(f"note: add {args.model_name!r} to PUBLISHED in mindspore_hub_conf.py (its network and "
              f"create_model arguments), so that create_network({args.model_name!r}) and the Hub loader know it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
