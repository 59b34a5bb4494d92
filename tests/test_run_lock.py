"""One process per run folder: a second one is refused while the first holds it."""

import subprocess
import sys
import textwrap

import pytest

from jaxirl import runs
from jaxirl.errors import RunFolderError
from jaxirl.pipeline.stages import StageRunner

MANIFEST = runs.Manifest("demo", {"lr": 1}, {})

# Opens the folder (a run, or the pipeline's workdir), says so, and holds it until stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    from jaxirl import runs
    from jaxirl.pipeline.stages import StageRunner
    kind, path = sys.argv[1:]
    if kind == "run":
        held = runs.open_run(path, runs.Manifest("demo", {"lr": 1}, {}), ("out",), resume=True)
    else:
        held = StageRunner(path)
    print("holding", flush=True)
    sys.stdin.read()
""")


def _hold(kind, path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.parametrize("kind", ["run", "pipeline"])
def test_a_second_process_is_refused_and_touches_nothing(tmp_path, kind):
    folder = tmp_path / "w"
    holder = _hold(kind, folder)
    try:
        before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
        with pytest.raises(RunFolderError, match="is in use by another jaxirl process"):
            if kind == "run":
                runs.open_run(folder, MANIFEST, ("out",), resume=True, overwrite=True)
            else:
                StageRunner(folder, overwrite=True)
        # Not even --overwrite moved anything aside.
        assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # Once the holder is gone, the folder opens.
    if kind == "run":
        runs.open_run(folder, MANIFEST, ("out",), resume=True).release()
    else:
        StageRunner(folder).run_folder.release()


def test_the_same_process_reopens_and_the_last_release_unlocks(tmp_path):
    folder = tmp_path / "w"
    first = runs.open_run(folder, MANIFEST, ("out",))
    second = runs.open_run(folder, MANIFEST, ("out",), resume=True)  # re-entrant
    first.release()
    holder = subprocess.run([sys.executable, "-c", HOLDER, "run", str(folder)],
                            input="", capture_output=True, text=True, timeout=60)
    assert holder.returncode != 0 and "is in use by another jaxirl process" in holder.stderr
    second.finish()  # finishing releases
    holder = subprocess.run([sys.executable, "-c", HOLDER, "run", str(folder)],
                            input="", capture_output=True, text=True, timeout=60)
    assert holder.returncode == 0, holder.stderr[-2000:]


def test_a_failed_run_releases_its_folder(tmp_path):
    folder = tmp_path / "w"
    run = runs.open_run(folder, MANIFEST, ("out",))
    with pytest.raises(ValueError), run.cleanup_on_error():
        raise ValueError("bad input")
    assert run.lock is None and not folder.exists()  # nothing written: no trace left
    runs.open_run(folder, MANIFEST, ("out",)).release()
