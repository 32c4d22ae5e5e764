"""Writing files so that a kill, a full disk or a read-only folder never leaves a half-written file under its
final name: every writer stages under a private name beside the target (``NAME.<pid>.partial``) and publishes
with one rename (``published``; ``write_json`` and ``write_text`` on top of it). The pid in the private name lets
a later process tell an abandoned staging (its writer is gone: ``remove_abandoned``) from one being written."""
import json
import os
import re
import shutil
from contextlib import contextmanager


def staging_name(path, suffix=".partial"):
    """The private name beside ``path`` a writer stages it under (``PATH.<pid>.partial``)."""
    return f"{path}.{os.getpid()}{suffix}"


@contextmanager
def published(path, replace_folder=False):
    """``with published(path) as staging:`` write a file or a folder at ``staging``; when the block ends without
    an error it becomes ``path`` in one rename (an existing folder is replaced only if ``replace_folder``), else
    it is removed and ``path`` is left as it was. An OSError names ``path`` and says the old version is kept."""
    staging = staging_name(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield staging
        if replace_folder and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    except OSError as exc:
        raise OSError(f"could not write {path} ({exc.strerror or exc}); is the disk full or the folder "
                      f"read-only? The previous version, if any, is kept") from None
    finally:
        if os.path.isdir(staging) and not os.path.islink(staging):
            shutil.rmtree(staging, ignore_errors=True)
        elif os.path.lexists(staging):
            os.remove(staging)


def write_text(path, text):
    with published(path) as staging, open(staging, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path, obj):
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_abandoned_staging(path):
    """Remove what writers of ``path`` that were killed midway left (``staging_name(path)`` of a dead pid)."""
    folder, name = os.path.split(os.path.abspath(path))
    return remove_abandoned(folder, re.escape(name) + r"\.(\d+)\.partial$")


def remove_abandoned(folder, pattern):
    """Remove the entries of ``folder`` whose name matches ``pattern`` (a regex whose group 1 is the writer's
    pid) and whose writer no longer runs. Returns their names."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for entry in sorted(os.listdir(folder)):
        match = re.match(pattern, entry)
        if match and not pid_running(int(match.group(1))):
            path = os.path.join(folder, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(entry)
    return removed
