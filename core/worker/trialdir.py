"""A trial's own folder, made before it starts: `<run folder>/trials/<trial id>/`.

With workdir = "trial" (the default) the trial runs there, and the folder mirrors the model's `cwd` (the grid
file's folder unless set): each entry of it appears in the trial folder, folders and big files as symlinks,
small files (<= COPY_MAX) as copies. An unmodified script then reads its inputs by their relative paths,
and what it writes lands in its own folder: two trials that save `model.pt` never touch each other's. (A
script that writes *into* a linked folder, or over a linked big file, still writes to the original.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

COPY_MAX = 1024 * 1024
LOG_NAME = "gridwatch-output.log"  # the trial's whole output (stdout and stderr), in its folder
LOG_MAX = 64 * 1024 * 1024  # bytes of it kept; the results file keeps the last lines too


def prepare(trial_dir: str, source: str, mirror: bool) -> None:
    folder = Path(trial_dir)
    fresh = not folder.exists()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fresh:
        os.chmod(folder, 0o700)  # the user's alone, whatever the umask
    if not (mirror and fresh):  # a retried trial keeps what its first attempt left, and its links
        return
    src = Path(source).resolve()
    inside = folder.resolve()
    for entry in os.scandir(src):
        target = Path(entry.path)
        if target == inside or target in inside.parents or ".gridwatch.db" in entry.name:
            continue  # the runs folder may be in the grid folder; results files are gridwatch's, not inputs
        dest = folder / entry.name
        try:
            if entry.is_file(follow_symlinks=True) and entry.stat().st_size <= COPY_MAX:
                shutil.copy2(target, dest)
            else:
                dest.symlink_to(target, target_is_directory=entry.is_dir())
        except OSError:
            continue  # unreadable or vanished: the script meets it as it would anyway
