"""Featurising a corpus: worker processes, a progress display and a resumable chunked cache.

A cold data set's records (:func:`omnissl_molecule.readers.iter_records`) are cut into chunks
of ``CHUNK_SIZE`` records in file order; each chunk is featurised in worker processes (pieces
of ``PIECE_SIZE`` records, so the progress display moves smoothly) and written to
``<cache>.partial/`` as soon as it is complete. A run killed half-way resumes from the chunks
already written; once every chunk is there they are merged into the cache folder. Every
record is processed by the same pure function with the same ETKDG seed, and results are
reassembled in input order, so the cache is byte for byte the same whatever the number of
workers and however many times the run was interrupted.

Worker processes are forked on Linux (they inherit the loaded RDKit and omnissl instead of
importing them again, as PyTorch's DataLoader workers do) and spawned elsewhere.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

from omnissl import skip_or_raise
from omnissl.errors import DataError
from omnissl_molecule.cache import FLOAT_FIELDS, MoleculeRows, merge_caches, write_cache
from omnissl_molecule.features import MoleculeArrays, featurize
from omnissl_molecule.progress import Progress
from omnissl_molecule.readers import RawRecord, call_rdkit, iter_records, parse_record

CHUNK_SIZE = 256  # records per cache chunk: the most a killed first run loses per worker
PIECE_SIZE = 32   # records per task sent to a worker process
NAMES_SHOWN = 5   # molecules named in a summary warning


@dataclass
class Outcome:
    """What became of one record: featurised, skipped (``reason``) or over ``max_atoms``.

    It names its record by ``where``, ``file`` and ``row`` (as :class:`RawRecord` does) rather
    than carrying it, so a worker does not send an SDF record's text back.
    """

    where: str
    file: int
    row: int
    status: Literal["ok", "skip", "too_large"]
    reason: str = ""
    arrays: MoleculeArrays | None = None
    labels: tuple[float, ...] = ()
    embed_failed: bool = False
    scaffold: str = ""


def featurize_record(record: RawRecord, settings: dict[str, Any]) -> Outcome:
    """Parse, check and featurise one record (runs in a worker process; warns about nothing)."""
    outcome = partial(Outcome, record.where, record.file, record.row)
    parsed = parse_record(record, settings["label_column"], settings["hydrogens"])
    if parsed.mol is None:
        return outcome("skip", parsed.error)
    infinite = [(name, value) for name, value in zip(settings["label_column"], parsed.labels) if math.isinf(value)]
    if infinite:
        name, value = infinite[0]
        return outcome("skip", f"its label is {value} in {name!r} (not a finite number; leave the value empty "
                               f"for an unlabelled molecule)")
    mol = parsed.mol
    bad_atom = non_finite_atom(mol)
    if bad_atom is not None:
        return outcome("skip", f"its coordinates are not finite numbers (atom {bad_atom + 1})")
    if settings["largest_fragment"] and len(Chem.GetMolFrags(mol)) > 1:
        mol, reason = call_rdkit(rdMolStandardize.LargestFragmentChooser().choose, mol)
        if mol is None:
            return outcome("skip", f"RDKit could not pick its largest fragment: {reason or 'no reason given'}")
    heavy = mol.GetNumHeavyAtoms()
    count = heavy + sum(a.GetTotalNumHs() for a in mol.GetAtoms()) if settings["hydrogens"] else heavy
    if count > settings["max_atoms"] or heavy == 0:
        return outcome("too_large")
    result, reason = call_rdkit(featurize, mol, settings["hydrogens"], settings["conformer_seed"])
    if result is None:
        return outcome("skip", f"RDKit could not featurise it: {reason or 'no reason given'}")
    arrays, failed = result
    bad = [name for name in FLOAT_FIELDS if not np.isfinite(getattr(arrays, name)).all()]
    if bad:  # say, file coordinates beyond float32's range
        return outcome("skip", f"its {' and '.join(bad)} are not finite after featurisation (coordinates too large?)")
    scaffold, _ = call_rdkit(scaffold_smiles, mol)
    return outcome("ok", arrays=arrays, labels=parsed.labels, embed_failed=failed, scaffold=scaffold or "")


def scaffold_smiles(mol: Chem.Mol) -> str:
    """The Bemis-Murcko scaffold (ring systems and the linkers between them) as SMILES, without
    chirality; "" for an acyclic molecule."""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.RemoveHs(mol), includeChirality=False)


def featurize_piece(records: list[RawRecord], settings: dict[str, Any]) -> list[Outcome]:
    """:func:`featurize_record` of each record, in order (one task of a worker process)."""
    return [featurize_record(record, settings) for record in records]


def non_finite_atom(mol: Chem.Mol) -> int | None:
    """Index of the first atom whose conformer coordinates (from the file) are NaN or infinite, else None."""
    for conformer in mol.GetConformers():
        finite = np.isfinite(np.asarray(conformer.GetPositions(), dtype=np.float64)).all(axis=1)
        if not finite.all():
            return int(np.flatnonzero(~finite)[0])
    return None


@dataclass
class CorpusReport:
    """What featurisation found, in record order; saved with each chunk and in the cache's info."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    no_conformer: list[str] = field(default_factory=list)  # "where (SMILES)" of each ETKDG failure
    molecules: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def featurize_corpus(files: Sequence[Path], settings: dict[str, Any], folder: Path, workers: int | None,
                     strict: bool) -> None:
    """Featurise every record of ``files`` into the cache ``folder`` (see the module docstring).

    Args:
        files: the molecule files, in the data set's order.
        settings: the featurisation settings (the cache key's).
        folder: the cache folder to create; chunks go to ``<folder>.partial/``.
        workers: worker processes; None: one per available CPU core; 1: this process only.
        strict: raise at the first unusable record instead of skipping it.
    Raises:
        DataError: no record gave a molecule, ``strict`` met a bad record, or a worker died.
    """
    chunks = folder.with_name(folder.name + ".partial")
    records = partial(iter_records, files, settings["smiles_column"], settings["label_column"])
    total = sum(1 for _ in records())
    n_chunks = math.ceil(total / CHUNK_SIZE)
    done = [i for i in range(n_chunks) if (chunks / chunk_name(i)).is_dir()]
    processes = max(1, min(workers or available_cpus(), math.ceil(total / PIECE_SIZE)))
    resumed = f"; resuming, {len(done)} of {n_chunks} chunks already done" if done else ""
    print(f"featurising {total} molecule records of {len(files)} files with {processes} "
          f"process{'es' if processes > 1 else ''} into {folder}{resumed}", file=sys.stderr, flush=True)
    progress = Progress(total, sum(chunk_records(i, total) for i in done))
    writer = ChunkWriter(chunks, settings, strict, progress)
    pool = _executor(processes)
    finished = False
    try:
        pending: deque[tuple[int, list[Any] | None]] = deque()
        for index, chunk in enumerate(batched(records(), CHUNK_SIZE)):
            if index in done:
                pending.append((index, None))
            else:
                pending.append((index, [pool.submit(featurize_piece, piece, settings)
                                        for piece in batched(chunk, PIECE_SIZE)]))
            while len(pending) > max(1, processes):  # a bounded queue: records stream from disk
                writer.finish(*pending.popleft())
        while pending:
            writer.finish(*pending.popleft())
        finished = True
    except BrokenProcessPool as exc:
        raise DataError(f"a featurisation worker process died (killed, or out of memory?) while featurising "
                        f"{', '.join(map(str, files))}; the chunks already done are kept under {chunks}: run "
                        f"again to resume, or set data.workers=1") from exc
    finally:
        pool.shutdown(wait=finished, cancel_futures=not finished)  # interrupted: stop queued pieces now
        progress.close()
    report = writer.report
    _warn_summary(report, files, settings)
    if report.molecules == 0:
        shutil.rmtree(chunks, ignore_errors=True)
        raise DataError(f"no readable molecule in {', '.join(map(str, files))}: {len(report.skipped)} unreadable "
                        f"records, {len(report.too_large)} over data.max_atoms={settings['max_atoms']}; check "
                        f"data.smiles_column, the file format, or raise data.max_atoms")
    if folder.exists():  # another process (a second rank, say) featurised the same files first
        return
    info = {"files": [str(p) for p in files], "settings": settings, **report.as_json()}
    merge_caches(folder, [chunks / chunk_name(i) for i in range(n_chunks)], info)
    shutil.rmtree(chunks, ignore_errors=True)


def chunk_name(index: int) -> str:
    """The folder of chunk ``index``; the chunk size is part of it, so chunks of another size never mix."""
    return f"chunk-{index:06d}-of-{CHUNK_SIZE}"


def chunk_records(index: int, total: int) -> int:
    return min(CHUNK_SIZE, total - index * CHUNK_SIZE)


class ChunkWriter:
    """Collects each chunk's outcomes in input order, warns about its bad records (or raises when
    ``strict``), writes it under ``folder``, and adds it to :attr:`report`.

    Args:
        folder: the ``<cache>.partial`` folder of chunks.
        settings: the featurisation settings.
        strict: raise at the first unusable record.
        progress: advanced as pieces come back.
    """

    def __init__(self, folder: Path, settings: dict[str, Any], strict: bool, progress: Progress):
        self.folder, self.settings, self.strict, self.progress = folder, settings, strict, progress
        self.report = CorpusReport()

    def finish(self, index: int, futures: list[Any] | None) -> None:
        """Collect chunk ``index`` from its pieces' ``futures``, or, when None, read back what an
        interrupted run wrote of it."""
        folder = self.folder / chunk_name(index)
        if futures is None:
            self._add(CorpusReport(**json.loads((folder / "info.json").read_text())["report"]), replay=True)
            return
        chunk = CorpusReport()
        kept: list[Outcome] = []
        for future in futures:
            outcomes = future.result()
            self.progress.update(len(outcomes))
            for outcome in outcomes:
                if outcome.status == "skip":
                    skip_or_raise(chunk.skipped, outcome.where, outcome.reason, self.strict)
                elif outcome.status == "too_large":
                    chunk.too_large.append(outcome.where)
                else:
                    kept.append(outcome)
                    if outcome.embed_failed:
                        chunk.no_conformer.append(f"{outcome.where} ({outcome.arrays.smiles})")
        chunk.molecules = len(kept)
        targets = np.array([o.labels for o in kept], dtype=np.float64)
        rows = MoleculeRows(targets=targets.reshape(len(kept), len(self.settings["label_column"])),
                            source_file=np.array([o.file for o in kept], dtype=np.int32),
                            source_row=np.array([o.row for o in kept], dtype=np.int64),
                            scaffolds=[o.scaffold for o in kept])
        write_cache(folder, [o.arrays for o in kept], rows, {"chunk": index, "report": chunk.as_json()})
        self._add(chunk, replay=False)

    def _add(self, chunk: CorpusReport, replay: bool) -> None:
        if replay:  # the skip warnings of a chunk an interrupted run wrote, again (or the strict error)
            for where, reason in chunk.skipped:
                skip_or_raise(self.report.skipped, where, reason, self.strict)
        else:
            self.report.skipped += chunk.skipped
        self.report.too_large += chunk.too_large
        self.report.no_conformer += chunk.no_conformer
        self.report.molecules += chunk.molecules


def _warn_summary(report: CorpusReport, files: Sequence[Path], settings: dict[str, Any]) -> None:
    if report.too_large:
        warnings.warn(f"skipped {len(report.too_large)} molecules with more than data.max_atoms="
                      f"{settings['max_atoms']} atoms (or none), first at {report.too_large[0]}")
    if report.skipped:
        warnings.warn(f"skipped {len(report.skipped)} unreadable or unusable records in "
                      f"{', '.join(map(str, files))}")
    if report.no_conformer:
        warnings.warn(f"ETKDG found no 3-D conformer for {len(report.no_conformer)} molecules; they keep their "
                      f"2-D relations only: {first_few(report.no_conformer)}")


def first_few(names: Sequence[str]) -> str:
    """The first NAMES_SHOWN names, and how many more."""
    more = len(names) - NAMES_SHOWN
    return "; ".join(names[:NAMES_SHOWN]) + (f"; and {more} more" if more > 0 else "")


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` consecutive items (the last one shorter)."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class _Deferred:
    """A task of the in-process executor: run when its result is asked for, as a future's would be."""

    def __init__(self, function: Callable[..., Any], args: tuple):
        self.function, self.args = function, args

    def result(self) -> Any:
        return self.function(*self.args)


class _InProcess:
    """The executor for ``workers: 1`` and small corpora: no worker process at all."""

    def submit(self, function: Callable[..., Any], *args: Any) -> _Deferred:
        return _Deferred(function, args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _executor(processes: int) -> ProcessPoolExecutor | _InProcess:
    if processes == 1:
        return _InProcess()
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_exit_with_parent,
                               initargs=(os.getpid(),))


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone: a parent killed outright (``kill -9``, the OOM
    killer) cannot stop its workers, which would otherwise wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="omnissl-parent-watch", daemon=True).start()
