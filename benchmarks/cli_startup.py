"""Wall time of omnissl's listing commands, each in a fresh process, beside `python -c "import mne"`.

``omnissl --help``, ``omnissl plugins`` and ``omnissl recipes`` build (or, for ``--help``, skip)
the plugin registry and print; plugins register their components with
:func:`omnissl.plugins.lazy`, so none of them imports a field library (MNE, RDKit, MONAI,
torchaudio, nibabel) or torch. The peer is the import of one such library, MNE, which is what
every listing paid (among others) when plugins imported their components at registration;
``import torch`` is what ``import omnissl`` cost before its torch-backed names became lazy;
``python -c pass`` is the interpreter's own floor, and "every plugin's components" imports
what registration imported before (the cost a listing no longer pays).

Each round runs every command once, in a fresh subprocess, in turn (so a change of load on
a shared machine hits all of them alike); the table shows the median and minimum of
``--runs`` rounds. The load average is printed: on a loaded 2-core machine every number is
several times the quiet one.

    python benchmarks/cli_startup.py [--runs 5]

The last line is the ratio of the slowest listing to the peer, and whether every listing
finished under the 1.5 s target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 1.5
COMPONENT_MODULES = ("omnissl_image.datasets", "omnissl_eeg.datasets", "omnissl_molecule.datasets",
                     "omnissl_splat.datasets", "omnissl_ct.datasets", "omnissl_audio.datasets",
                     "omnissl.encoders", "omnissl.objectives")


def omnissl_command() -> list[str]:
    script = shutil.which("omnissl", path=os.path.dirname(sys.executable)) or shutil.which("omnissl")
    return [script] if script else [sys.executable, "-m", "omnissl"]


def wall_time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds; each command runs once per round")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = omnissl_command()
    rows = {
        "omnissl --help": cli + ["--help"],
        "omnissl plugins": cli + ["plugins"],
        "omnissl recipes": cli + ["recipes"],
        "peer: python -c 'import mne'": [sys.executable, "-c", "import mne"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
        "every plugin's components (eager)": [sys.executable, "-c", "import " + ", ".join(COMPONENT_MODULES)],
    }
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, command in rows.items():
            times[name].append(wall_time(command, env))
    load_after = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{args.runs} fresh processes per command, interleaved; {' '.join(cli)}")
    width = max(len(name) for name in rows)
    for name, values in times.items():
        print(f"  {name:<{width}}  median {statistics.median(values):6.2f} s   min {min(values):6.2f} s")
    listings = ("omnissl --help", "omnissl plugins", "omnissl recipes")
    slowest = max(listings, key=lambda name: statistics.median(times[name]))
    worst = statistics.median(times[slowest])
    peer = statistics.median(times["peer: python -c 'import mne'"])
    verdict = "met" if worst < TARGET_S else "not met"
    print(f"ratio slowest listing ({slowest}) / import mne, median wall time: {worst / peer:.2f} "
          f"({worst:.2f} s vs {peer:.2f} s; target every listing < {TARGET_S} s: {verdict})")


if __name__ == "__main__":
    main()
