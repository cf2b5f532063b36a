"""Every lever screened on validation, side by side: one table and one forest plot.

Reads each results file that ``benchmarks/quality.py`` wrote to --in-dir (the screenings of
docs/benchmark-protocol.md, benchmarks/results/levers) and, as the reference row, the full
validation run (benchmarks/results/quality_validation.json). Per file, at the goals' label
fraction (10 %), each difference per seed with its mean and 95 % t-interval:

    federated - scratch           in_federation: the first goal's difference
    federated - local_only        in_federation: the second goal's
    local_only - scratch          in_federation: does pretraining alone help? (from the jobs)
    unseen: federated - scratch   the unseen site (reported, not a goal)

and whether the screening passes (the goals' rules, as the file itself judged them). A lever
is named by the options its command adds to the screening's common ones. A file without
federated and scratch (a control such as federated_bf16) is listed apart with its own
differences.

    python benchmarks/levers.py [--in-dir DIR] [--reference FILE] [--out-dir DIR]

Writes summary.md, summary.json and summary.png to --out-dir (default: --in-dir). Nothing is
run: every number is the files' own, so a re-run over the same files writes the same summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from simulations.forest_plot import draw_forest
from simulations.paired_stats import MIN_GAIN_POINTS, summary

RESULTS = Path(__file__).parent / "results"
SUMMARY = "summary"
#: The options every screening shares (docs/benchmark-protocol.md), left out of a lever's name.
COMMON = {"--role": 1, "--tasks": 1, "--label-fractions": 1, "--variants": 1, "--name": 1,
          "--out-dir": 1, "--work-dir": 1}
#: The screenings' label fraction; a lever that uses another keeps its --label-fractions in its name.
SCREEN_FRACTION = "0.1"
#: (key, heading): the columns of the table and the panels of the plot.
COLUMNS = (("federated_minus_scratch", "federated - scratch"),
           ("federated_minus_local_only", "federated - local_only"),
           ("local_only_minus_scratch", "local_only - scratch"),
           ("unseen_federated_minus_scratch", "unseen: federated - scratch"))


def lever_name(command: str) -> str:
    """The options a screening's command adds to the common ones ("the defaults" when none)."""
    words, kept, i = command.split()[2:], [], 0   # after "python benchmarks/quality.py"
    while i < len(words):
        if words[i] == "--label-fractions" and words[i + 1:i + 2] != [SCREEN_FRACTION]:
            kept += words[i:i + 2]
            i += 2
            continue
        skip = COMMON.get(words[i])
        if skip is None:
            kept.append(words[i])
        i += 1 + (skip or 0)
    return " ".join(kept) or "the defaults"


def dice_difference(jobs: list[dict[str, Any]], *, setting: str, fraction: float,
                    first: str, second: str) -> dict[str, Any] | None:
    """Per seed, ``first``'s segmentation Dice minus ``second``'s (points), as a summary."""
    dice = {(j["variant"], j["seed"]): 100 * j["metrics"]["dice_mean"] for j in jobs
            if j["setting"] == setting and j["task"] == "segmentation"
            and j["fraction"] == fraction and "dice_mean" in j["metrics"]}
    seeds = sorted({seed for _, seed in dice})
    per_seed = [dice[(first, s)] - dice[(second, s)] for s in seeds
                if (first, s) in dice and (second, s) in dice]
    return summary(per_seed) if per_seed else None


def read_row(path: Path, *, reference: bool = False) -> dict[str, Any]:
    """One results file of quality.py as a row of the summary."""
    try:
        doc = json.loads(path.read_text())
        goals, paired, jobs = doc["goals"], doc["paired_dice_points"], doc["jobs"]
        fraction = goals["label_fraction"]
        command = doc["command"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise SystemExit(f"Expected {path} to be a results file of benchmarks/quality.py (with "
                         f"goals, paired_dice_points, jobs and command); reading it failed: "
                         f"{err!r}. Move other files out of that folder, or regenerate it with "
                         f"the command printed in its .md.") from err
    key = str(fraction)
    in_fed, unseen = paired.get("in_federation", {}).get(key, {}), paired.get("unseen_site", {}).get(key, {})
    differences = {
        "federated_minus_scratch": in_fed.get("federated_minus_scratch"),
        "federated_minus_local_only": in_fed.get("federated_minus_local_only"),
        "local_only_minus_scratch": dice_difference(jobs, setting="in_federation", fraction=fraction,
                                                    first="local_only", second="scratch"),
        "unseen_federated_minus_scratch": unseen.get("federated_minus_scratch"),
    }
    return {"file": path.name, "lever": "full validation run (reference)" if reference
            else lever_name(command), "command": command, "commit": doc.get("git_commit", "")[:7],
            "minutes": round(doc.get("seconds", {}).get("total", 0.0) / 60, 1),
            "label_fraction": fraction, "passes": goals.get("all_goals_hold") is True,
            "differences": differences, "other_differences": {
                name: d for name, d in in_fed.items() if name not in differences}}


def collect(in_dir: Path, reference: Path | None) -> dict[str, Any]:
    """The reference row, the levers (best federated - scratch mean first) and the controls."""
    files = sorted(p for p in in_dir.glob("*.json") if p.stem != SUMMARY)
    if not files:
        raise SystemExit(f"Expected results files of benchmarks/quality.py in {in_dir}, found "
                         f"none. Pass --in-dir the folder the screenings wrote (--out-dir of "
                         f"quality.py).")
    rows = [read_row(p) for p in files]
    levers = [r for r in rows if r["differences"]["federated_minus_scratch"] is not None]
    levers.sort(key=lambda r: -r["differences"]["federated_minus_scratch"]["mean"])
    return {"reference": read_row(reference, reference=True) if reference else None,
            "levers": levers,
            "controls": [r for r in rows if r["differences"]["federated_minus_scratch"] is None],
            "goal_min_gain_points": MIN_GAIN_POINTS}


def cell(d: dict[str, Any] | None) -> str:
    if d is None:
        return "n/a"
    interval = f" [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]" if d["ci95"] else ""
    return f"{d['mean']:+.1f}{interval}"


def markdown(doc: dict[str, Any]) -> str:
    head = "| lever (options added) | " + " | ".join(h for _, h in COLUMNS) + " | passes | file, commit |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in ([doc["reference"]] if doc["reference"] else []) + doc["levers"]:
        lines.append(f"| `{r['lever']}` | " + " | ".join(cell(r["differences"][k]) for k, _ in COLUMNS)
                     + f" | {'yes' if r['passes'] else 'no'} | {r['file']}, {r['commit']} |")
    passing = [r["lever"] for r in doc["levers"] if r["passes"]]
    text = (f"# Levers screened on validation\n\n`{doc['command']}`\n\n"
            f"Each row is one results file of `benchmarks/quality.py`, written by the command "
            f"printed in its .md. Dice points, in_federation unless marked unseen, at "
            f"{float(SCREEN_FRACTION):.0%} labels (or the --label-fractions a lever names): the "
            f"mean over seeds and its 95 % t-interval. A screening passes when federated - "
            f"scratch lies above 0 with a mean of at least {doc['goal_min_gain_points']:g} and "
            f"federated - local_only lies above 0 (docs/benchmark-protocol.md). Levers, best "
            f"federated - scratch first; the plot is summary.png.\n\n"
            + "\n".join(lines) + "\n\n"
            + (f"Passing: {', '.join(passing)}.\n" if passing else
               f"No lever passes ({len(doc['levers'])} screened).\n"))
    if doc["controls"]:
        text += "\n## Controls (no federated - scratch)\n\n" + "\n".join(
            f"- `{r['lever']}` ({r['file']}, {r['commit']}): " + ", ".join(
                f"{name.replace('_minus_', ' - ')} {cell(d)}" for name, d in r["other_differences"].items())
            for r in doc["controls"]) + "\n"
    return text


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ([doc["reference"]] if doc["reference"] else []) + doc["levers"]
    fig, axes = plt.subplots(1, len(COLUMNS), sharey=True, dpi=100,
                             figsize=(4 * len(COLUMNS), 0.45 * len(rows) + 1.6))
    for i, (ax, (key, heading)) in enumerate(zip(axes, COLUMNS, strict=True)):
        draw_forest(ax, [r["differences"][key] for r in rows],
                    marks=(0.0, doc["goal_min_gain_points"]) if i == 0 else (0.0,))
        ax.set_title(heading, fontsize=9)
        ax.set_xlabel("Dice points")
    axes[0].set_yticks(range(len(rows)), [r["lever"] for r in rows], fontsize=7)
    fig.suptitle("Levers on validation: seeds (grey), mean and 95 % t-interval (blue); "
                 "dashed: the goal's 3-point mean", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-dir", type=Path, default=RESULTS / "levers")
    parser.add_argument("--reference", type=Path, default=RESULTS / "quality_validation.json",
                        help="the full validation run, shown first ('none' to leave it out)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: --in-dir")
    args = parser.parse_args(argv)
    reference = None if str(args.reference) == "none" else args.reference
    if reference is not None and not reference.is_file():
        parser.error(f"--reference: expected the full validation run's results file, found no "
                     f"{reference}; pass its path, or 'none'")
    doc = collect(args.in_dir, reference)
    doc["command"] = " ".join(["python benchmarks/levers.py", *(argv if argv is not None else sys.argv[1:])])
    out = args.out_dir or args.in_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{SUMMARY}.json").write_text(json.dumps(doc, indent=2))
    text = markdown(doc)
    (out / f"{SUMMARY}.md").write_text(text)
    plot(doc, out / f"{SUMMARY}.png")
    print(text)
    print(f"saved {out / (SUMMARY + '.md')}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
