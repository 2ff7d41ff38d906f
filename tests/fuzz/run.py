"""Fuzz one harness by hand: ``python -m tests.fuzz.run HARNESS --seconds N``.

With atheris installed (the ``test`` extra), the harness runs under
libFuzzer with coverage instrumentation of the modules it exercises,
starting from the seed corpus (copied to a scratch directory, so the
committed corpus does not grow).  The runner reports executions, the
coverage (libFuzzer's ``cov`` edges and ``ft`` features) at start and
end, and the crashes: each crashing input is written to
``--crashes DIR/HARNESS/`` (default ``fuzz-crashes/``) with its traceback
next to it.  libFuzzer stops at the first crash; fix it, add the
regression test, run again.

``--replay`` runs the deterministic mode of the trial suite instead (the
corpus plus ``--mutations`` seeded mutants, no atheris), reporting every
crash rather than stopping at the first.

Run one harness at a time and under ``nice``: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

__all__ = ["main", "corpus", "replay", "Crash"]

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


class Crash:
    """One input that made a harness fail, and how."""

    def __init__(self, data: bytes, error: BaseException) -> None:
        self.data = data
        self.error = error
        self.traceback = "".join(traceback.format_exception(error))

    @property
    def signature(self) -> str:
        """Exception type and the innermost project frame: groups duplicates."""
        tb = self.error.__traceback__
        where = "?"
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if "/tests/" not in filename:
                where = f"{os.path.basename(filename)}:{tb.tb_lineno}"
            tb = tb.tb_next
        return f"{type(self.error).__name__} at {where}"


def corpus(name: str) -> list[bytes]:
    """The seed inputs of harness ``name``, in file-name order."""
    directory = os.path.join(CORPUS_DIR, name)
    out = []
    for entry in sorted(os.listdir(directory)):
        with open(os.path.join(directory, entry), "rb") as f:
            out.append(f.read())
    return out


def replay(name: str, mutations: int, seed: int = 8,
           time_limit: float | None = None) -> tuple[int, list[Crash]]:
    """Run the corpus and ``mutations`` seeded mutants; ``(executions, crashes)``.

    Stops early (still deterministic in which inputs it runs, in order)
    when ``time_limit`` seconds have passed.
    """
    from tests.fuzz.harnesses import HARNESSES
    from tests.fuzz.mutate import mutations as mutants
    harness = HARNESSES[name]
    harness.prepare()
    seeds = corpus(name)
    crashes: list[Crash] = []
    start = time.monotonic()
    runs = 0
    for data in [*seeds, *mutants(seeds, mutations, seed)]:
        if time_limit is not None and time.monotonic() - start > time_limit:
            break
        runs += 1
        try:
            harness.run(data)
        except Exception as e:  # noqa: BLE001 - everything unexpected is a crash
            crashes.append(Crash(data, e))
    return runs, crashes


def _save(crashes: list[Crash], directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    seen = set()
    for n, crash in enumerate(crashes):
        if crash.signature in seen:
            continue
        seen.add(crash.signature)
        path = os.path.join(directory, f"crash-{n}")
        with open(path, "wb") as f:
            f.write(crash.data)
        with open(path + ".txt", "w") as f:
            f.write(crash.traceback)


# -- atheris ---------------------------------------------------------------------

_STATS = re.compile(r"#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+)")


#: The atheris process.  Atheris instruments only the modules imported
#: inside ``instrument_imports``, so the child starts from ``-c``, not
#: ``-m tests.fuzz.run`` (importing the ``tests`` package imports creds),
#: and imports every submodule of the harness's packages there first
#: (creds imports its object types lazily, at the first registry).
_CHILD = """
import importlib
import pkgutil
import sys
import atheris
name, modules = sys.argv[1], sys.argv[2].split(",")
with atheris.instrument_imports(include=modules):
    for top in modules:
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), top + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    from tests.fuzz.harnesses import HARNESSES
    harness = HARNESSES[name]
    harness.prepare()
atheris.Setup([sys.argv[0], *sys.argv[3:]], harness.run)
atheris.Fuzz()
"""


def _fuzz(name: str, seconds: int, crashes: str, jobs_args: list[str]) -> int:
    work = tempfile.mkdtemp(prefix=f"vncd-fuzz-{name}-")
    try:
        shutil.copytree(os.path.join(CORPUS_DIR, name), os.path.join(work, "corpus"))
        crash_dir = os.path.join(os.path.abspath(crashes), name)
        os.makedirs(crash_dir, exist_ok=True)
        before = set(os.listdir(crash_dir))
        from tests.fuzz.harnesses import HARNESSES
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        args = [sys.executable, "-c", _CHILD, name, ",".join(HARNESSES[name].modules),
                f"-max_total_time={seconds}", f"-artifact_prefix={crash_dir}/",
                "-rss_limit_mb=2048", "-timeout=20", "-max_len=16384",
                "-print_final_stats=1", *jobs_args, os.path.join(work, "corpus")]
        started = time.monotonic()
        proc = subprocess.run(args, stderr=subprocess.PIPE, text=True, errors="replace", cwd=root)
        elapsed = time.monotonic() - started
        log = proc.stderr
        with open(os.path.join(crash_dir, "last-run.log"), "w") as f:
            f.write(log)
        stats = _STATS.findall(log)
        inited = next((s for s in stats if s[1] == "INITED"), stats[0] if stats else None)
        last = stats[-1] if stats else None
        execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        found = sorted(f for f in set(os.listdir(crash_dir)) - before
                       if f.startswith(("crash-", "timeout-", "oom-", "leak-")))
        print(f"harness     {name}")
        print(f"seconds     {elapsed:.0f}")
        print(f"executions  {execs[-1] if execs else (last[0] if last else '?')}")
        if inited and last:
            print(f"coverage    cov {inited[2]} -> {last[2]}, ft {inited[3]} -> {last[3]}")
        print(f"corpus      {len(os.listdir(os.path.join(work, 'corpus')))} inputs at the end")
        print(f"crashes     {len(found)} in {crash_dir}" + (f": {', '.join(found)}" if found else ""))
        if proc.returncode not in (0,) and not found:
            print(log[-3000:], file=sys.stderr)
        return 1 if found or proc.returncode else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz.harnesses import HARNESSES
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run",
                                     description="Fuzz one vncd harness by hand.")
    parser.add_argument("harness", choices=sorted(HARNESSES))
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (atheris)")
    parser.add_argument("--crashes", default="fuzz-crashes",
                        help="where crashing inputs go (one subdirectory per harness)")
    parser.add_argument("--replay", action="store_true",
                        help="deterministic corpus + seeded mutations, no atheris")
    parser.add_argument("--mutations", type=int, default=2000,
                        help="mutants in --replay mode")
    parser.add_argument("--seed", type=int, default=8, help="RNG seed in --replay mode")
    args = parser.parse_args(argv)
    if args.replay:
        started = time.monotonic()
        runs, crashes = replay(args.harness, args.mutations, args.seed)
        print(f"{args.harness}: {runs} inputs in {time.monotonic() - started:.1f} s,"
              f" {len(crashes)} crashes")
        by_kind: dict[str, Crash] = {}
        for crash in crashes:
            by_kind.setdefault(crash.signature, crash)
        for signature, crash in by_kind.items():
            print(f"--- {signature}\n{crash.data[:200]!r}\n{crash.traceback}")
        if crashes:
            _save(crashes, os.path.join(args.crashes, args.harness))
        return 1 if crashes else 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install -e '.[test]'); use --replay",
              file=sys.stderr)
        return 2
    return _fuzz(args.harness, args.seconds, args.crashes, [])


if __name__ == "__main__":
    sys.exit(main())
