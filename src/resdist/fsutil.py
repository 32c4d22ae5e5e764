"""Files left by a process that was killed midway: its private ``*.partial`` names carry its pid, so a later
process can tell an abandoned one (remove it) from one still being written (leave it)."""
import os
import re
import shutil


def pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


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
