"""What a dataset folder holds, as a stable JSON report: layout, sites, subjects, modalities, problems."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from client.data.adapter import DataProblem, DataProblemError, StudyRecord, get_adapter
from client.data.detect import detect_layout
from client.data.readers import read_volume
from shared.modalities import CANONICAL_MODALITIES

__all__ = ["InspectReport", "check_files", "inspect_dataset", "render_text"]

SCHEMA_ID = "fedmm.data-inspect/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteEntry(_Frozen):
    """One institution (``site`` null: the dataset records none for these subjects)."""

    site: str | None
    subjects: int
    studies: int


class SubjectEntry(_Frozen):
    """One patient: studies, modalities found, modalities other subjects have and this lacks."""

    subject: str
    site: str | None
    studies: list[str]
    modalities: list[str]
    missing: list[str] = Field(description="dataset modalities this subject has in none of its studies")
    labelled: bool = Field(description="at least one of its studies has a segmentation")


class LabelEntry(_Frozen):
    """Label availability and the mapping to fedmm's scheme."""

    scheme: str
    labelled_studies: int
    unlabelled_studies: int


class ProblemEntry(_Frozen):
    """A file-level problem: what is wrong and the fix."""

    path: str
    problem: str
    fix: str


class InspectReport(_Frozen):
    """The output of ``fedmm data inspect --format json`` (schema ``fedmm.data-inspect/1``)."""

    schema_id: Literal["fedmm.data-inspect/1"] = "fedmm.data-inspect/1"
    path: str
    layout: str
    detected: bool = Field(description="true when the layout was auto-detected")
    checked_files: bool = Field(description="true when every volume was read (--check)")
    num_subjects: int
    num_studies: int
    modalities: dict[str, int] = Field(description="canonical modality -> studies that have it")
    sites: list[SiteEntry]
    subjects: list[SubjectEntry]
    labels: LabelEntry
    covariates: dict[str, dict[str, int]] = Field(
        description="meta key -> value -> studies (keys partitioners can split by)")
    problems: list[ProblemEntry]


def _order(modalities: Iterable[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(CANONICAL_MODALITIES)}
    return sorted(set(modalities), key=lambda m: (rank.get(m, len(rank)), m))


def check_files(studies: Sequence[StudyRecord]) -> list[DataProblem]:
    """Read every distinct volume once; one problem per file that does not read."""
    problems: list[DataProblem] = []
    seen: set[Path] = set()
    for record in studies:
        paths = [*record.images.values(), *([record.label] if record.label is not None else [])]
        for path in paths:
            if path in seen or (path == record.label and path.is_dir()):
                continue  # PNG masks need their image's grid; they are read with the study
            seen.add(path)
            try:
                read_volume(path)
            except DataProblemError as err:
                problems.append(err.problem)
    return problems


def inspect_dataset(root: Path, *, layout: str = "auto", check: bool = False) -> InspectReport:
    """Discover ``root`` in ``layout`` (or the detected one) and summarise it.

    Args:
        root: the dataset's folder (or a manifest CSV).
        layout: a registered layout name, or ``"auto"``.
        check: also read every volume, reporting unreadable files (slow on large data).

    Raises:
        ValueError: unknown layout, undetectable folder, or nothing usable in it.
    """
    root = Path(root).expanduser().resolve()
    detected = layout == "auto"
    name = detect_layout(root) if detected else layout
    adapter = get_adapter(name)
    discovery = adapter.discover(root)
    studies = discovery.studies
    problems = [*discovery.problems, *(check_files(studies) if check else [])]
    all_modalities = _order(m for s in studies for m in s.images)
    by_subject: dict[str, list[StudyRecord]] = defaultdict(list)
    for record in studies:
        by_subject[record.subject].append(record)
    subjects = []
    for subject, records in sorted(by_subject.items()):
        have = _order(m for r in records for m in r.images)
        subjects.append(SubjectEntry(
            subject=subject, site=records[0].site, studies=[r.study_id for r in records],
            modalities=have, missing=[m for m in all_modalities if m not in have],
            labelled=any(r.label is not None for r in records),
        ))
    site_subjects = Counter(s.site for s in subjects)
    site_studies = Counter(r.site for r in studies)
    covariates: dict[str, Counter[str]] = defaultdict(Counter)
    for record in studies:
        for key, value in record.meta.items():
            covariates[key][value] += 1
    labelled = sum(r.label is not None for r in studies)
    return InspectReport(
        path=str(root), layout=name, detected=detected, checked_files=check,
        num_subjects=len(subjects), num_studies=len(studies),
        modalities={m: sum(m in r.images for r in studies) for m in all_modalities},
        sites=[SiteEntry(site=site, subjects=n, studies=site_studies[site])
               for site, n in sorted(site_subjects.items(), key=lambda kv: (-kv[1], str(kv[0])))],
        subjects=subjects,
        labels=LabelEntry(scheme=str(getattr(adapter, "label_scheme", "as written")),
                          labelled_studies=labelled, unlabelled_studies=len(studies) - labelled),
        covariates={k: dict(sorted(v.items())) for k, v in sorted(covariates.items())},
        problems=[ProblemEntry(path=str(p.path), problem=p.problem, fix=p.fix) for p in problems],
    )


def render_text(report: InspectReport, *, max_rows: int = 20) -> str:
    """A human summary of a report (the JSON form is the stable interface)."""
    lines = [
        f"{report.path}",
        f"  layout      {report.layout}{' (detected)' if report.detected else ''}",
        f"  subjects    {report.num_subjects}   studies {report.num_studies}",
        "  modalities  " + ", ".join(f"{m} {n}" for m, n in report.modalities.items()),
        f"  labels      {report.labels.labelled_studies} labelled, "
        f"{report.labels.unlabelled_studies} without; {report.labels.scheme}",
        f"  sites       {len(report.sites)}",
    ]
    for site in report.sites[:max_rows]:
        lines.append(f"    {site.site or '(not recorded)':<24} {site.subjects:>5} subjects "
                     f"{site.studies:>5} studies")
    incomplete = [s for s in report.subjects if s.missing]
    lines.append(f"  subjects missing a modality: {len(incomplete)}")
    for subject in incomplete[:max_rows]:
        lines.append(f"    {subject.subject:<24} has {','.join(subject.modalities)}; "
                     f"missing {','.join(subject.missing)}")
    for key, values in report.covariates.items():
        shown = ", ".join(f"{v} {n}" for v, n in list(values.items())[:8])
        more = f", ... ({len(values)} values)" if len(values) > 8 else ""
        lines.append(f"  covariate   {key}: {shown}{more}")
    lines.append(f"  problems    {len(report.problems)}")
    for problem in report.problems[:max_rows]:
        lines.append(f"    {problem.path}: {problem.problem} Fix: {problem.fix}")
    if len(report.problems) > max_rows:
        lines.append(f"    ... and {len(report.problems) - max_rows} more (--format json lists all)")
    return "\n".join(lines)
