"""Export a trained network for deployment (what ``export.py`` runs).

MINDIR  MindSpore and MindSpore Lite (``converter_lite --fmk=MINDIR`` makes the mobile ``.ms`` file)
ONNX    onnxruntime, and Ascend's ATC with ``--framework=5`` (the ``.om`` file), opset 11
MNN     Alibaba's mobile inference engine MNN (phones, edge devices): the ONNX export converted by MNN's converter,
        which, unlike ATC and converter_lite, installs here (``pip install -e '.[mnn]'``), so the ``.mnn`` file is
        loaded back by MNN's runtime and checked like the others
AIR     Ascend's ATC with ``--framework=1``; MindSpore writes AIR only on Ascend, and newer versions drop it

The exported graph is the inference network with BatchNorm folded into the convolutions (``fold``), so a plain
network deploys as convolutions with bias, ReLU, pooling and the classifier, and no shortcut addition. The file
is written under a temporary name and renamed, so a failure never leaves a half-written file under the final name,
and an existing file is replaced only with ``--overwrite``. After writing, the file is loaded back (MindIR by
MindSpore, ONNX by onnxruntime if installed, MNN by MNN) and its logits compared with the checkpoint network's.
"""
import logging
import os
import re
import shutil
import tempfile

import numpy as np

from .. import checkpoint as ckpt_io
from ..build import build_network, identity
from ..data import calibration_images, held_out_images, native_image_size
from ..errors import ConfigError, UserError
from ..fsutil import remove_abandoned
from ..models.fold import fold_batchnorm
from .exported import RECORD_PREFIX, graph_ops, load_exported

logger = logging.getLogger("resdist")
SUFFIX = {"MINDIR": ".mindir", "ONNX": ".onnx", "MNN": ".mnn", "AIR": ".air"}
TOLERANCE = 1e-4  # max |logit difference| between the exported file and the checkpoint network, float32, per
                  # unit of the logits' scale (max |logit|, at least 1): float32 rounding grows with the values
MAX_INPUT_BYTES = 256 * 2 ** 20  # the float32 input batch; larger is a typo, not a deployable model


class ExportCheckError(UserError):
    """The exported file did not pass its after-write check; nothing was written under the final name."""


def input_shape(cfg):
    height = cfg.height or native_image_size(cfg.dataset) or cfg.image_size
    shape = (cfg.export_batch_size, 3, height, cfg.width or height)
    size = 4 * int(np.prod(shape, dtype=np.int64))  # bytes of float32
    if size > MAX_INPUT_BYTES:
        raise ConfigError(f"an exported input of shape {list(shape)} (--batch_size x 3 x --height x --width) is "
                          f"{size / 2 ** 30:.1f} GiB of float32, above {MAX_INPUT_BYTES // 2 ** 20} MiB; export a "
                          f"smaller batch or image size")
    return shape


def output_path(cfg):
    """``file_name`` (default: beside the model it comes from) with the format's suffix: .mindir, .onnx, .air, or
    .int8.onnx for --quantize int8."""
    source = cfg.onnx_file or cfg.ckpt_file
    default = cfg.arch if cfg.ckpt_file else os.path.splitext(os.path.basename(source))[0]
    base = cfg.file_name or os.path.join(os.path.dirname(os.path.abspath(source)), default)
    suffix = (".int8" if cfg.quantize == "int8" else "") + SUFFIX[cfg.file_format]
    for known in (".int8.onnx", ".int8.mnn") + tuple(SUFFIX.values()):  # `--file_name net.onnx` means net
        if base.lower().endswith(known):
            base = base[:-len(known)]
            break
    return base + suffix


def check_output(path, overwrite):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a folder; pass a --file_name that names a file (e.g. {path}/model)")
    if os.path.basename(path).startswith("."):  # `--file_name DIR/` would make the hidden DIR/.mindir
        raise ConfigError(f"--file_name gives no file name (the output would be {path}); pass e.g. DIR/plain20")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"{path} exists; pass --overwrite to replace it, or another --file_name")
    if not os.path.isdir(folder):
        raise ConfigError(f"output folder {folder} does not exist; create it or choose another --file_name")
    probe = os.path.join(folder, f".resdist_write_probe.{os.getpid()}")
    try:  # actually writing is the only test that holds for root too
        open(probe, "wb").close()
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(f"output folder {folder} is not writable ({exc.strerror}); choose another --file_name") \
            from None
    remove_abandoned_staging(path)


def load_checkpoint_network(cfg, state=None):
    """The network of ``cfg.arch`` with ``cfg.ckpt_file`` loaded (its recorded arch/variant/stem checked);
    ``state``: the file already read."""
    state = ckpt_io.read(cfg.ckpt_file) if state is None else state
    num_classes = ckpt_io.classifier_classes(state, cfg.ckpt_file)
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise ConfigError(f"num_classes={cfg.num_classes} but checkpoint {cfg.ckpt_file} has a {num_classes}-class "
                          f"classifier")
    net = build_network(cfg, cfg.arch, num_classes)
    ckpt_io.load_network(net, state, "checkpoint", cfg.ckpt_file, cfg.arch, identity(cfg, cfg.arch))
    net.set_train(False)
    return net


# the file names ms.export accepts (MindSpore 2.10 refuses others with a ValueError): no space, no non-ASCII
EXPORTABLE_PATH = re.compile(r"^[0-9a-zA-Z@_\-.:/\\]+$")


TEMP_PREFIX = "resdist-export-"  # + "<pid>-": a private folder under the system's temporary folder (_Staging)


def remove_abandoned_staging(path):
    """Remove the private folders an export killed midway left: beside ``path`` (``.NAME.<pid>.*.partial``) and
    under the system's temporary folder (``resdist-export-<pid>-*``), where their process no longer runs; a
    running export's folders are left alone."""
    folder, name = os.path.split(os.path.abspath(path))
    remove_abandoned(folder, re.escape(f".{name}.") + r"(\d+)\..*\.partial$")
    remove_abandoned(tempfile.gettempdir(), re.escape(TEMP_PREFIX) + r"(\d+)-")


class _Staging:
    """A new private folder beside the output: files are written there and moved into place by a rename once
    they passed their check (same file system), so a failure never leaves a file under the final name, and
    MindSpore's export, which chmods the folder it writes into, never touches the user's folder. Where that
    folder's path has characters ms.export refuses (a space, non-ASCII), MindSpore writes into a private folder
    under the system's temporary folder instead, and the file is copied beside the output before the rename."""

    def __init__(self, path):
        self.path = path
        self.folder = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".partial",
                                       dir=os.path.dirname(os.path.abspath(path)))
        self.export_folder = self.folder
        if not EXPORTABLE_PATH.match(self.folder):
            self.export_folder = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
            if not EXPORTABLE_PATH.match(self.export_folder):
                self.__exit__()
                raise ConfigError(f"MindSpore cannot export to {path} or to the temporary folder {self.export_folder}"
                                  f" (their paths have spaces or non-ASCII characters); set TMPDIR to a folder "
                                  f"whose path has none")

    def __enter__(self):
        return self

    def publish(self, written):
        if os.path.dirname(written) != self.folder:  # written outside the output's file system
            local = os.path.join(self.folder, os.path.basename(written))
            shutil.copy2(written, local)
            written = local
        if os.path.exists(self.path):  # --overwrite; exported files are read-only
            os.chmod(self.path, 0o600)
        os.replace(written, self.path)

    def __exit__(self, *exc):
        for folder in {self.folder, self.export_folder}:
            shutil.rmtree(folder, ignore_errors=True)


def export_record(cfg, num_classes):
    """What an exported file records about its network (in MindIR's user_info, ONNX's metadata_props), so that
    eval.py can refuse to evaluate it as another network or on another data set."""
    record = {**identity(cfg, cfg.arch), "num_classes": str(num_classes), "dataset": cfg.dataset,
              "source_sha256": ckpt_io.file_sha256(cfg.ckpt_file)}
    return {RECORD_PREFIX + key: value for key, value in record.items()}


def record_onnx(path, record):
    """Write ``record`` into an ONNX file's metadata_props (with the onnx package; without it, say so)."""
    try:
        import onnx
    except ImportError:
        logger.warning("the onnx package is not installed (pip install -e '.[onnx]'): %s records no network, so "
                       "eval.py can check only its input and output shapes", os.path.basename(path))
        return
    model = onnx.load(path)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **record})
    onnx.save(model, path)


def _write_checked(deployed, images, reference, file_format, folder, record):
    """Export ``deployed`` into ``folder`` with ``record`` and compare the written file's logits on ``images``
    with ``reference`` (the checkpoint network's). Returns (path, max |logit difference| or None where it cannot
    be run here)."""
    import mindspore as ms

    base = os.path.join(folder, "model")
    options = {"custom_func": lambda proto: proto.user_info.update(record)} if file_format == "MINDIR" else {}
    ms.export(deployed, ms.Tensor(images), file_name=base, file_format=file_format, **options)
    written = base + SUFFIX[file_format]
    if not os.path.isfile(written):
        raise OSError(f"MindSpore wrote no {written}")
    if file_format == "AIR":
        return written, None
    if file_format == "ONNX":
        record_onnx(written, record)
    return written, _checked(written, file_format, images, reference)


def _checked(written, file_format, images, reference):
    """The written file's logits on ``images`` against ``reference`` (the checkpoint network's): the max |difference|,
    or None where no runtime for the file is installed (the check is skipped, and the log says so)."""
    try:
        diff = float(np.abs(load_exported(written).predict(images) - reference).max())
    except ConfigError as exc:  # no onnxruntime: the file is written, the check is skipped
        logger.warning("%s; the exported file was not checked", exc)
        return None
    tolerance = TOLERANCE * max(1.0, float(np.abs(reference).max()))
    if diff > tolerance:
        raise ExportCheckError(f"the exported {file_format} file's logits differ from the checkpoint network's by "
                               f"{diff:.2e}, above the tolerance {tolerance:.2g} ({TOLERANCE:g} x the logits' "
                               f"scale); nothing was written")
    return diff


def _write_mnn(deployed, images, reference, staging, record):
    """An MNN model: the ONNX export (checked), converted by MNN's converter, then loaded back by MNN's runtime
    and checked against the checkpoint network as every export is. Returns (path, max |logit difference|)."""
    from . import mnn

    onnx_path, _ = _write_checked(deployed, images, reference, "ONNX", staging.export_folder, record)
    written = os.path.join(staging.folder, "model.mnn")
    mnn.convert_onnx(onnx_path, written, record)
    return written, _checked(written, "MNN", images, reference)


def _checkpoint_inputs(cfg, state=None):
    """(the checkpoint network as deployed, BatchNorm folded if asked; probe images; its logits on them; the
    record the exported file carries). ``state``: the checkpoint already read."""
    import mindspore as ms

    if not cfg.ckpt_file:
        raise ConfigError("no checkpoint given: pass --ckpt_file PATH (a best.ckpt from train.py)")
    net = load_checkpoint_network(cfg, state)
    images = np.random.default_rng(0).standard_normal(input_shape(cfg)).astype(np.float32)
    reference = net(ms.Tensor(images)).asnumpy()
    return (fold_batchnorm(net) if cfg.fold_bn else net), images, reference, export_record(cfg, reference.shape[1])


def check_qat_settings(cfg, state):
    """A checkpoint of quantization-aware training (``train.py --qat true``) records the INT8 scheme it was trained
    for; its INT8 model is checked against that simulated network, so it must be made with the same scheme.
    Returns the record, or None for any other model (``state``: the checkpoint read, or None)."""
    if state is None:
        return None
    trained_for = ckpt_io.meta_value(state, "quantization_aware")
    if not isinstance(trained_for, str):
        return None
    other = [f"--{key} {cfg[key]}" for key, value in (("calib_method", "minmax"), ("quant_activations", "uint8"),
                                                       ("first_conv_weights", "uint8")) if cfg[key] != value]
    if cfg.file_format != "ONNX" or other:
        raise ConfigError(f"{cfg.ckpt_file} was fine-tuned for onnxruntime's INT8 ({trained_for}) and is checked "
                          f"against that simulated network: export it with --file_format ONNX and the default "
                          f"calib_method, quant_activations and first_conv_weights, not "
                          f"{', '.join(other or ['--file_format ' + cfg.file_format])}")
    return trained_for


def simulated_int8(deployed, calib, batch=64):
    """predict(images) of ``deployed`` (the folded checkpoint network) as quantization-aware training simulated
    it, with ranges measured on ``calib`` as onnxruntime's MinMax calibration measures them."""
    import mindspore as ms

    from ..models.qat import measure_ranges, quantization_aware

    simulated = quantization_aware(deployed)  # folding a folded network changes nothing: no BatchNorm is left
    measure_ranges(simulated, calib)

    def predict(images):
        return np.concatenate([simulated(ms.Tensor(images[i:i + batch])).asnumpy()
                               for i in range(0, len(images), batch)])
    return predict


def export(cfg):
    """Export as ``cfg`` says; returns {"file", "format", "input_shape", "ops", "max_abs_diff" (or None), ...}."""
    if cfg.quantize == "int8":
        return export_int8(cfg)
    if cfg.onnx_file:
        raise ConfigError("onnx_file is the float model that --quantize int8 quantizes; to export a checkpoint "
                          "pass --ckpt_file only")
    if cfg.file_format == "AIR" and cfg.device_target != "Ascend":
        raise ConfigError("AIR export needs MindSpore on an Ascend device (and newer MindSpore versions drop it); "
                          "here export ONNX and convert it with ATC --framework=5: "
                          "bash scripts/run_convert_om.sh MODEL.onnx SOC_VERSION")
    if cfg.file_format == "MNN":
        from .mnn import require_mnn

        require_mnn()  # before anything is exported
    path = output_path(cfg)
    check_output(path, cfg.overwrite)
    deployed, images, reference, record = _checkpoint_inputs(cfg)
    with _Staging(path) as staging:
        if cfg.file_format == "MNN":
            written, diff = _write_mnn(deployed, images, reference, staging, record)
        else:
            written, diff = _write_checked(deployed, images, reference, cfg.file_format, staging.export_folder,
                                           record)
        ops = graph_ops(written) if cfg.file_format in ("MINDIR", "ONNX") else None
        staging.publish(written)
    return {"file": path, "format": cfg.file_format, "input_shape": list(images.shape), "max_abs_diff": diff,
            "ops": None if ops is None else {op: ops.count(op) for op in sorted(set(ops))},
            "folded_bn": bool(cfg.fold_bn)}


def disagreement(cfg, agreement, check_split, trained_for):
    """The refusal of an INT8 model that agrees too little with its reference: the float model, or the simulated
    INT8 network a QAT checkpoint was trained as (whose disagreement is a fault of the simulation, not the user)."""
    from .quantize import MIN_TOP1_AGREEMENT

    if trained_for:
        reference, hint = ("that of the simulated INT8 network the checkpoint was trained as (QAT)",
                           "The simulation models onnxruntime's quantization: report this with the command line")
    elif cfg.first_conv_weights == "uint8":
        reference, hint = ("the float model's", "Try --calib_method percentile (a Dirac-parametrised student needs "
                           "it: docs/deployment.md, INT8) or more --calib_size")
    else:
        reference, hint = ("the float model's", "On an x86 CPU without VNNI pass --first_conv_weights uint8 (int8 "
                           "weights there saturate its integer kernels)")
    return (f"the INT8 model's top-1 class agrees with {reference} on only {100 * agreement:.1f}% of {check_split} "
            f"(held out from calibration; at least {100 * MIN_TOP1_AGREEMENT:.0f}% needed); nothing was written. "
            f"{hint}")


def export_int8(cfg):
    """An INT8 ONNX model (``deploy.quantize``) of ``ckpt_file``, or of the float ONNX file ``onnx_file``,
    calibrated on ``calib_data``'s training split; written only once it agrees with the float model
    (MIN_TOP1_AGREEMENT) on as many held-out images of its validation split."""
    from . import quantize

    quantize.require_onnx()
    if cfg.file_format not in ("ONNX", "MNN"):
        raise ConfigError("--quantize int8 writes an INT8 ONNX or MNN model: pass --file_format ONNX or MNN "
                          "(MindSpore Lite makes its own INT8 model from a MindIR: bash scripts/run_convert_lite.sh "
                          "MODEL.mindir --quant int8 --calib_dir DIR)")
    if cfg.file_format == "MNN":
        from .mnn import MNN_METHODS, require_mnn

        require_mnn()
        if cfg.onnx_file:
            raise ConfigError("--file_format MNN --quantize int8 quantizes a checkpoint: pass --ckpt_file")
        if cfg.calib_method not in MNN_METHODS:
            raise ConfigError(f"MNN's quantizer calibrates with {' or '.join(MNN_METHODS)}, not "
                              f"--calib_method {cfg.calib_method}")
    if bool(cfg.ckpt_file) == bool(cfg.onnx_file):
        raise ConfigError("--quantize int8 takes exactly one model: --ckpt_file PATH (a checkpoint) or --onnx_file "
                          "PATH (a float ONNX file from export.py)")
    if not cfg.calib_data:
        raise ConfigError("--quantize int8 needs calibration images: pass --calib_data DIR, the training data set "
                          "folder (with --dataset cifar10|cifar100|imagefolder)")
    from ..data import check_dataset

    try:  # before anything is exported
        check_dataset(cfg.dataset, cfg.calib_data, cfg.val_split)
    except UserError as exc:
        raise ConfigError(f"calibration data (--calib_data {cfg.calib_data}): {exc}") from None
    state = ckpt_io.read(cfg.ckpt_file) if cfg.ckpt_file else None  # read once (a plain-50's is ~100 MB)
    trained_for = check_qat_settings(cfg, state)
    path = output_path(cfg)
    check_output(path, cfg.overwrite)
    if cfg.onnx_file:  # a quantized or foreign file is refused here
        model, _, shape, num_classes = quantize.read_float_onnx(cfg.onnx_file)
        record = {p.key: p.value for p in model.metadata_props if p.key.startswith(RECORD_PREFIX)}
    else:
        deployed, images, reference, record = _checkpoint_inputs(cfg, state)
        del state
        shape, num_classes = list(images.shape), reference.shape[1]
    calib, split = calibration_images(cfg.dataset, cfg.calib_data, shape, num_classes, cfg.calib_size,
                                               cfg.val_split)
    held_out, held_out_labels, check_split = held_out_images(cfg.dataset, cfg.calib_data, shape,
                                                                      cfg.calib_size, cfg.val_split)
    with _Staging(path) as staging:
        float_path, float_check = cfg.onnx_file, None
        if cfg.file_format == "MNN":
            from ..data import normalisation
            from . import mnn

            float_path, float_check = _write_mnn(deployed, images, reference, staging, record)
            int8_path = os.path.join(staging.folder, "model.int8.mnn")
            mnn.quantize(float_path, int8_path, calib, *normalisation(cfg.dataset), cfg.calib_method)
            first_conv = None  # MNN's quantizer chooses its own weight types
        else:
            if not cfg.onnx_file:
                float_path, float_check = _write_checked(deployed, images, reference, "ONNX",
                                                         staging.export_folder, record)
            int8_path = os.path.join(staging.folder, "model.int8.onnx")
            first_conv = quantize.quantize_onnx(float_path, int8_path, calib, cfg.quant_activations,
                                                cfg.calib_method, cfg.first_conv_weights)
            record_onnx(int8_path, {**record, RECORD_PREFIX + "quantized": "int8"})
        float_predict, int8_predict = load_exported(float_path).predict, load_exported(int8_path).predict
        # the reference: the float model, or for a QAT checkpoint the INT8 network it was trained as
        reference_predict = simulated_int8(deployed, calib) if trained_for else float_predict
        check = quantize.compare_with_float(reference_predict, int8_predict, held_out, held_out_labels)
        check["calib_agreement"] = quantize.compare_with_float(reference_predict, int8_predict,
                                                               calib)["top1_agreement"]
        if trained_for:
            check["simulated_top1"] = check.pop("float_top1")
            check["float_top1"] = 100.0 * float((float_predict(held_out).argmax(1) == held_out_labels).mean())
        ops = graph_ops(int8_path) if cfg.file_format == "ONNX" else None
        result = {"file": path, "format": cfg.file_format, "quantized": "int8", "input_shape": shape,
                  "activations": cfg.quant_activations, "first_conv_weights": first_conv,
                  "calib_method": cfg.calib_method, "calib_split": split, "check_split": check_split,
                  "ops": None if ops is None else {op: ops.count(op) for op in sorted(set(ops))},
                  "float_max_abs_diff": float_check,
                  "float_bytes": os.path.getsize(float_path), "bytes": os.path.getsize(int8_path),
                  "min_top1_agreement": quantize.MIN_TOP1_AGREEMENT, "reference": "simulated INT8 (QAT)"
                  if trained_for else "float", **check}
        if check["top1_agreement"] < quantize.MIN_TOP1_AGREEMENT:
            raise ExportCheckError(disagreement(cfg, check["top1_agreement"], check_split, trained_for))
        staging.publish(int8_path)
    return result
