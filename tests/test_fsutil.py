"""The one atomic-write helper every writer uses: a failed write leaves the old file and no staging behind."""
import json
import os

import pytest

from resdist.fsutil import published, remove_abandoned_staging, staging_name, write_json


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(str(path), {"epoch": 1})
    with pytest.raises(RuntimeError):
        with published(str(path)) as staging:
            with open(staging, "w") as f:
                f.write('{"epoch": 2, "half')
            raise RuntimeError("killed while writing")
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_json_is_published_whole_and_a_folder_replaces_one_only_when_asked(tmp_path):
    write_json(str(tmp_path / "a.json"), {"b": 1, "a": [1, 2]})
    assert (tmp_path / "a.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    folder = tmp_path / "calibration"
    folder.mkdir()
    (folder / "old.bin").write_bytes(b"x")
    with pytest.raises(OSError, match="could not write .*calibration .*previous version, if any, is kept"):
        with published(str(folder)) as staging:  # a non-empty folder is not replaced by default
            os.makedirs(staging)
            (tmp_path / os.path.basename(staging) / "new.bin").write_bytes(b"y")
    assert os.listdir(folder) == ["old.bin"] and not os.path.exists(staging)
    with published(str(folder), replace_folder=True) as staging:
        os.makedirs(staging)
        open(os.path.join(staging, "new.bin"), "wb").close()
    assert os.listdir(folder) == ["new.bin"]


def test_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    (tmp_path / "runs").write_text("a file where a folder should be")
    with pytest.raises(OSError, match="could not write .*x.json .* is the disk full or the folder read-only"):
        write_json(str(tmp_path / "runs" / "x.json"), {})
    assert (tmp_path / "runs").read_text() == "a file where a folder should be"


def test_only_a_dead_writers_staging_is_removed(tmp_path):
    mine = staging_name(str(tmp_path / "out"))  # this process is alive: its staging stays
    open(mine, "w").close()
    dead = tmp_path / "out.999999999.partial"  # no such pid
    dead.write_text("half")
    assert remove_abandoned_staging(str(tmp_path / "out")) == ["out.999999999.partial"]
    assert os.path.exists(mine) and not dead.exists()
