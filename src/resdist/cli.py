"""What train.py and eval.py share: CPU kernel choice first, config parsing, and one readable error line
(exit code 2) for every bad input instead of a traceback."""
import sys

from . import runtime  # imports no MindSpore


def run_entry_point(scope, doc, body, argv=None):
    """Parse the command line for ``scope`` ("train"/"eval"/"export") and call ``body(cfg, cpu_note)``; its
    return value (None: 0) is the exit status.

    ``cpu_note`` says which CPU runtime settings were made (for the log)."""
    isa_note = runtime.prefer_fast_cpu_kernels()  # before anything imports MindSpore
    from .config import parse_args
    from .errors import ConfigError, UserError

    try:
        cfg, args = parse_args(argv, scope, doc.strip())
        from .models import is_model, list_models
        if args.list_models:
            print("\n".join(list_models()))
            return 0
        if not is_model(cfg.arch):
            raise ConfigError(f"unknown arch '{cfg.arch}'; known: {', '.join(list_models())}")
        dispatch_note = runtime.prefer_blocking_host_dispatch(cfg.device_target)  # before any op runs
        code = body(cfg, f"{isa_note}; {dispatch_note}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be written or read (disk full, permissions)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code or 0
