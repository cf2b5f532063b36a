"""write_run_report: a finished run's folder -> ``report.html`` (self-contained) + ``report/*.png``."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.config import DataConfig
from simulations.report.adadn_examples import build_example, plot_adadn_examples
from simulations.report.data_preview import is_phantom, write_data_preview
from simulations.report.downstream import Table, downstream_table, format_value
from simulations.report.embeddings import (
    CROPS_PER_SITE,
    embed_sites,
    final_encoder,
    initial_encoder,
    plot_embeddings,
)
from simulations.report.html import (
    Section,
    image_html,
    key_value_html,
    note_html,
    paragraph,
    preformatted,
    render_page,
    table_html,
)
from simulations.report.losses import loss_series, plot_losses
from simulations.report.run_folder import RunFolder
from simulations.report.site_data import OpenedSites, open_sites

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
REPORT_DIR = "report"

Downstream = Mapping[str, Any] | Sequence[Mapping[str, Any]]


class MissingInput(ValueError):
    """A section's inputs are not in the run folder; the message says which."""


def _section(anchor: str, title: str, *, build: Callable[[], str]) -> Section:
    """Build one section; any failure becomes a short note (a report never fails a run)."""
    started = time.perf_counter()
    try:
        body = build()
    except MissingInput as err:
        log.info("Report section %r: %s", title, err)
        body = note_html(f"Not shown: {err}")
    except Exception as err:  # drawing code must not cost the run its report
        log.warning("Report section %r could not be drawn: %s: %s", title, type(err).__name__, err,
                    exc_info=True)
        body = note_html(f"Could not be drawn ({type(err).__name__}: {err}). The log has the details.")
    log.debug("Report section %r took %.2f s", title, time.perf_counter() - started)
    return Section(anchor=anchor, title=title, body=body)


class _ReportBuilder:
    """Holds what several sections share (the run, its config, the opened sites)."""

    def __init__(self, run: RunFolder, *, out: Path, data_root: Path | None,
                 site_dirs: Sequence[str] | None, scratch: Path) -> None:
        self.run = run
        self.out = out
        self.cfg: dict[str, Any] = run.config or {}
        sites_cfg = self.cfg.get("sites") or {}
        self.data_root = Path(data_root) if data_root is not None else (
            Path(sites_cfg["data_root"]) if sites_cfg.get("data_root") else None)
        self.site_dirs = list(site_dirs) if site_dirs is not None else list(sites_cfg.get("site_dirs") or [])
        samples = sites_cfg.get("samples_dir")
        self.samples_dir = Path(samples) if samples and Path(samples).is_dir() else None
        self.scratch = scratch
        self._opened: OpenedSites | None = None

    # ------------------------------------------------------------------ shared inputs
    @property
    def modalities(self) -> list[str]:
        return list((self.cfg.get("data") or {}).get("modalities") or DataConfig().modalities)

    def opened(self) -> OpenedSites:
        """The run's sites, opened once (raises MissingInput when that is impossible)."""
        if self._opened is None:
            if self.data_root is None or not self.site_dirs:
                raise MissingInput("the data root and site folders are unknown (not given and not in "
                                   "the run's config)")
            if not isinstance(self.cfg.get("data"), Mapping):
                raise MissingInput("the run's data settings are missing (model_card.json, "
                                   "server_state.json and metrics.json have no config)")
            self._opened = open_sites(self.run, data_root=self.data_root, site_dirs=self.site_dirs,
                                      data=DataConfig.model_validate(self.cfg["data"]),
                                      seed=int(self.cfg.get("seed", 0)), scratch=self.scratch,
                                      samples_dir=self.samples_dir)
            if not self._opened.sites:
                raise MissingInput("no site's data could be opened: " + " ".join(self._opened.notes))
        return self._opened

    def _site_notes(self, extra: Sequence[str] = ()) -> str:
        notes = [*(self._opened.notes if self._opened else ()), *extra]
        return "".join(note_html(n) for n in notes)

    # ------------------------------------------------------------------ sections
    def losses(self) -> str:
        if self.run.metrics is None:
            raise MissingInput("metrics.json is missing or unreadable")
        series = loss_series(self.run.metrics)
        png = plot_losses(series, self.out / "losses.png")
        eval_fraction = (self.cfg.get("data") or {}).get("eval_fraction")
        held = (f"{100 * eval_fraction:g} % of its studies" if isinstance(eval_fraction, int | float)
                else "its eval split")
        caption = (f"Left: mean loss of each site's local training steps in a round. Right: the loss "
                   f"of the round's aggregated encoder on each site's held-out studies ({held}), "
                   f"the same crops every round. Black dashed: the server's example-weighted mean. "
                   f"Lower is better; the two panels differ in augmentation, so compare trends, not levels.")
        mapping = Table(headers=("label", "Flower node id"),
                        rows=tuple((label, node) for node, label in series.labels.items()))
        return (image_html(png, alt="pretext loss per site and round", caption=caption)
                + paragraph("Sites here are Flower node ids, numbered site 1..N in ascending node-id "
                            "order. The server never learns which data folder a node reads, so "
                            "'site k' here is not necessarily folder site-(k-1) in the figures below.")
                + table_html(mapping))

    def data_preview(self) -> str:
        if self.data_root is None:
            raise MissingInput("the data root is unknown (not given and not in the run's config)")
        sites = () if is_phantom(self.data_root) else self.opened().sites
        caption = write_data_preview(self.out / "data_preview.png", data_root=self.data_root,
                                     sites=sites, modalities=self.modalities)
        return (image_html(self.out / "data_preview.png", alt="data preview, sites x modalities",
                           caption=caption) + paragraph(f"Data root: {self.data_root}"))

    def adadn(self) -> str:
        pool = self.run.pool
        if pool is None or not pool.modalities:
            raise MissingInput("server_state.json holds no statistics pool (round 0 did not finish, "
                               "or every site withheld its statistics)")
        opened = self.opened()
        released = {self.site_dirs[s.index]: self.run.released_stats(s.index) for s in opened.sites}
        examples, notes = [], []
        for site in opened.sites:
            try:
                examples.append(build_example(site, pool=pool, modalities=self.modalities,
                                              released=released))
            except ValueError as err:
                notes.append(f"{site.name}: {err}")
        if not examples:
            raise MissingInput("no site has a study with another site's statistics in the pool: "
                               + " ".join(notes))
        png = plot_adadn_examples(examples, self.out / "adadn_examples.png")
        caption = ("Each site's first study, mid axial slice, before and after AdaDN: the foreground "
                   "is standardized with the study's own foreground mean and sd and re-scaled with "
                   "another site's pooled (anonymized, noised) statistics of the same modality, the "
                   "pool entry farthest from the study's mean (shared/adadn.py, as in training). "
                   "Before and after share one grey window per row; background stays 0.")
        return image_html(png, alt="AdaDN examples", caption=caption) + self._site_notes(notes)

    def embeddings(self) -> str:
        if not self.run.encoder_file.is_file():
            raise MissingInput(f"{self.run.encoder_file.name} is missing (the run did not export)")
        before = initial_encoder(self.run)
        after = final_encoder(self.run)
        opened = self.opened()
        with_eval = [s.name for s in opened.sites if s.dataset.eval_ids]
        if len(with_eval) < 2:
            raise MissingInput(
                "this section compares sites, so it needs held-out studies at two or more; got "
                f"{len(with_eval)} ({', '.join(with_eval) or 'none'}). " + " ".join(opened.notes))
        emb, notes = embed_sites(opened.sites, before=before, after=after, crops=CROPS_PER_SITE,
                                 seed=int(self.cfg.get("seed", 0)))
        png = self.out / "embeddings.png"
        score_before, score_after = plot_embeddings(emb, png, site_order=[s.name for s in opened.sites])
        caption = (f"Each dot is one held-out crop ({CROPS_PER_SITE} per site, seeded, from studies "
                   "the sites never trained on), embedded by the encoder as the mean of its "
                   "per-modality embeddings; colour = site folder. Left: the initial weights "
                   "(round-0 checkpoint); right: the exported encoder. Each panel is its own PCA. "
                   "Site-local normalization parameters are not in the exported encoder (they stayed "
                   "on the sites), so both panels use their initial values, as a downstream user would.")
        verdict = ("site identity dominates the representation" if score_after.silhouette > 0.5
                   else "sites are partly separated" if score_after.silhouette > 0.25
                   else "site identity does not dominate the representation")
        summary = Table(
            headers=("encoder", "silhouette by site", "variance explained by site",
                     "effective dimensions"),
            rows=tuple((name, f"{score.silhouette:+.3f}", f"{100 * score.variance_fraction:.1f} %",
                        f"{score.effective_dimensions:.1f} of {emb.after.shape[1]}")
                       for name, score in (("before pretraining", score_before),
                                           ("after pretraining", score_after))))
        collapsed = score_after.effective_dimensions < 0.5 * score_before.effective_dimensions
        explain = ("Silhouette by site (in the full embedding space, Euclidean): about 0 when sites "
                   "overlap, towards 1 when each site forms its own tight cluster. Variance explained "
                   "by site: between-site over total sum of squares. Effective dimensions: the "
                   "participation ratio of the embeddings' covariance spectrum, how many directions "
                   "the crops really spread along. After pretraining: "
                   f"{verdict} (silhouette {score_after.silhouette:+.2f})"
                   + ("; the representation has collapsed onto fewer than half the directions the "
                      "initial weights used (dimensional collapse), which usually means the pretext "
                      "task needs only a few features and fine-tuning will gain little from them."
                      if collapsed else "."))
        return (image_html(png, alt="PCA of encoder embeddings by site, before and after", caption=caption)
                + table_html(summary) + paragraph(explain) + self._site_notes(notes))

    def downstream(self, downstream: Downstream | None) -> str:
        if downstream is None:
            raise MissingInput("no fine-tuning results were given for this run (benchmarks/quality.py "
                               "fine-tunes and passes them)")
        table = downstream_table(downstream)
        return (table_html(table) + paragraph(
            "Mean ± standard deviation over seeds; the best mean per label fraction is in bold."))

    def config_and_timings(self) -> str:
        parts: list[str] = []
        card = self.run.model_card or {}
        summary: list[tuple[str, str]] = [
            (k, format_value(card[k])) for k in ("preset", "parameters", "rounds", "sites", "pretext")
            if k in card]
        privacy = card.get("update_privacy") or {}
        if "epsilon" in privacy:
            summary.append(("update DP", f"epsilon {privacy['epsilon']:.3f} at delta {privacy['delta']:g} "
                                         f"over {privacy['rounds']} rounds ({privacy['mechanism']}; clipping "
                                         f"{privacy['clipping_norm']:g}, noise multiplier "
                                         f"{privacy['noise_multiplier']:g})"))
        if card.get("stopped_early"):
            summary.append(("stopped early", str(card["stopped_early"])))
        upload = _upload_line(self.run.metrics)
        if upload:
            summary.append(("upload per site and round", upload))
        if summary:
            parts.append(key_value_html(summary))
        parts.append(self._timings())
        if self.cfg:
            flat = [(k, v) for k, v in _flatten(self.cfg) if not k.startswith(("sites.", "out_dir"))]
            parts.append("<h3>Run configuration</h3>" + key_value_html(flat))
            parts.append(preformatted(json.dumps(self.cfg, indent=2, default=str),
                                      summary="the whole validated config (JSON)"))
        else:
            parts.append(note_html("The run's config is missing (no model_card.json, server_state.json, "
                                   "metrics.json config)."))
        if self.run.scenario is not None:
            parts.append(preformatted(json.dumps(self.run.scenario, indent=2),
                                      summary="scenario.json (what simulate was asked to run)"))
        return "".join(parts)

    def _timings(self) -> str:
        rows: list[tuple[str, str]] = []
        if self.run.timings:
            rows += [(name.replace("_", " "), f"{sec:.1f} s") for name, sec in self.run.timings.items()]
        for entry in (self.run.metrics or {}).get("rounds") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("seconds"), int | float):
                rows.append((f"  round {entry.get('round')} (train + evaluate)", f"{entry['seconds']:.1f} s"))
        if not rows:
            return note_html("No timings: timings.json and the rounds' seconds in metrics.json are missing.")
        head = "<h3>How long each phase took</h3>"
        missing = "" if self.run.timings else note_html(
            "timings.json is missing (written by simulate); only the rounds' own times are shown.")
        return head + table_html(Table(headers=("phase", "wall-clock"), rows=tuple(rows))) + missing


def _upload_line(metrics: Mapping[str, Any] | None) -> str | None:
    """The last round's mean upload per site against the float32 encoder (metrics.json's
    ``train.transfer``), or None when the run has none."""
    for entry in reversed((metrics or {}).get("rounds") or []):
        transfer = ((entry or {}).get("train") or {}).get("transfer") or {}
        sent, fp32 = transfer.get("bytes_sent_per_site"), transfer.get("encoder_float32_bytes")
        if isinstance(sent, int | float) and isinstance(fp32, int | float) and fp32 > 0:
            return (f"{sent / 1e6:.2f} MB as {transfer.get('dtype')} ({sent / fp32:.2f} x the "
                    f"float32 encoder's {fp32 / 1e6:.2f} MB)")
    return None


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    if isinstance(value, list | tuple):
        return [(prefix.rstrip("."), ", ".join(str(v) for v in value))]
    return [(prefix.rstrip("."), format_value(value))]


def _intro(run: RunFolder, *, elapsed: float) -> str:
    card = run.model_card or {}
    rounds = (run.metrics or {}).get("rounds") or []
    final = card.get("final_metrics") or {}
    facts = [("run folder", str(run.path.resolve())),
             ("written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
             ("sites", format_value(card.get("sites"))),
             ("rounds finished", str(len(rounds))),
             ("encoder", f"{card.get('preset', run.preset or '?')}, "
                         f"{format_value(card.get('parameters'))} parameters"),
             ("pretext", str(card.get("pretext", "?"))),
             ("strategy", str(card.get("strategy", "fedavg"))),
             ("final loss (train / held-out)",
              f"{format_value(final.get('train_loss'))} / {format_value(final.get('eval_loss'))}"),
             ("report built in", f"{elapsed:.1f} s")]
    return key_value_html(facts)


def write_run_report(run_dir: Path, *, data_root: Path | None, site_dirs: Sequence[str] | None,
                     downstream: Downstream | None = None, title: str | None = None) -> Path:
    """Write ``run_dir/report.html`` (images embedded) and its PNGs under ``run_dir/report/``.

    Sections: pretext loss per site and round; a data preview (sites x modalities); AdaDN
    examples; a PCA of held-out crops' embeddings before and after pretraining with a
    site-dominance score; the downstream table when ``downstream`` is given; the config
    and the phases' timings. A section whose inputs are missing (or whose drawing fails)
    becomes a short note and the reason is logged: the report never fails a finished run.

    Args:
        run_dir: a run's output folder (``simulate --out``).
        data_root: the folder holding one sub-folder per site; None reads it from the run's
            config (``sites.data_root``).
        site_dirs: the site folder names in the run's site order; None reads them from the
            run's config.
        downstream: fine-tuning results, ``{"<label_fraction>": {"<variant>": {"dice_mean":
            .., "dice_std": .., "acc_mean": .., "acc_std": ..}}}`` (also wrapped as
            ``quality.json``'s ``{"results": ...}``) or a list of row dicts.
        title: the page title (default: "fedmm run report: <folder name>").

    Returns:
        The path of ``report.html``.

    Raises:
        OSError: the report files cannot be written.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # a section that is a note this time must not keep an old figure
        stale.unlink()
    run = RunFolder.read(run_dir)
    with tempfile.TemporaryDirectory(prefix="fedmm-report-") as scratch:
        b = _ReportBuilder(run, out=out, data_root=data_root, site_dirs=site_dirs, scratch=Path(scratch))
        sections = [
            _section("losses", "Pretext loss per site and round", build=b.losses),
            _section("data", "Data preview", build=b.data_preview),
            _section("adadn", "AdaDN examples", build=b.adadn),
            _section("embeddings", "Embeddings by site, before and after pretraining", build=b.embeddings),
            _section("downstream", "Downstream fine-tuning", build=lambda: b.downstream(downstream)),
            _section("config", "Configuration and timings", build=b.config_and_timings),
        ]
    page = render_page(title=title or f"fedmm run report: {run_dir.resolve().name}",
                       intro=_intro(run, elapsed=time.perf_counter() - started), sections=sections)
    path = run_dir / REPORT_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")  # default permissions: a report is meant to be shared
    os.replace(tmp, path)
    log.info("Report written to %s in %.1f s", path, time.perf_counter() - started)
    return path
