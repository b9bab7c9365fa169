"""``voxqa build reports``: image + segmentation studies with a radiology report each.

Claims are read from each report (``extractor``, default the offline rules) and verified
against the study's segmentation; the verified claims travel on the study's view
(``StudyView.radreport``) to the report family (``voxqa.radreports.items``). Beside the
dataset go ``claims.jsonl`` (every verified claim) and ``grounding.jsonl`` (each
caption-grounding target in RadGrounder's syntax).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxqa.anatomy.frames import FRAME_CONVENTION
from voxqa.anatomy.margins import MARGINS
from voxqa.anatomy.relations import SegGeometry
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import write_jsonl
from voxqa.fileio import dumps
from voxqa.fileio import write_jsonl as write_lines
from voxqa.dataset.frame_policy import DEFAULT_FRAMES
from voxqa.dataset.manifest import WORLD_CONVENTION
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError
from voxqa.io import VolumeError
from voxqa.radreports.claims import Claim
from voxqa.radreports.extract_rules import RuleExtractor, sentences
from voxqa.radreports.inputs import read_reports
from voxqa.radreports.items import MIN_FRAME_PIXELS, ReportQuestions, ReportStudy, frame_pixels
from voxqa.radreports.radgrounder import class_id, prefix
from voxqa.radreports.verify import verify
from voxqa.progress import SILENT, Progress
from voxqa.schema import Item, Study
from voxqa.sources.segmentation import SegSpec, load_segmentation, seg_source_files, seg_views, study_with_twin
from voxqa.tasks.base import BuildContext, StudyView, TaskFamily

NAME = "reports"


@dataclass
class RadiologyReports:
    """Report-grounded items from segmentation studies and their reports (one build)."""

    specs: Sequence[SegSpec]
    reports_path: Path
    extractor: Any = None
    min_pixels: int | None = None
    claims: list[Claim] = field(default_factory=list, init=False)  # every verified claim, by study
    facts: dict[str, ReportStudy] = field(default_factory=dict, init=False)  # study id -> its report's facts
    #: sentences read, and those without a claim by reason
    sentence_counts: dict[str, Any] = field(default_factory=lambda: {"total": 0, "without_claim": Counter()}, init=False)
    name = NAME
    command = "reports"
    split_unit = "patient_id"
    frames = DEFAULT_FRAMES

    def __post_init__(self) -> None:
        self.extractor = self.extractor or RuleExtractor()
        min_pixels = MIN_FRAME_PIXELS if self.min_pixels is None else self.min_pixels
        self.min_pixels = min_pixels
        self.questions = ReportQuestions(min_pixels)

    def is_pathology(self, label: str) -> bool:
        return True

    def load(self, report: BuildReport, progress: Progress = SILENT) -> list[StudyView]:
        reports = read_reports(self.reports_path)
        for spec in self.specs:
            check_study_id(spec.study_id, f"study of {spec.image}")
        pairs: list[tuple[Study, SegGeometry]] = []
        for spec in self.specs:
            rep = reports.get(spec.study_id)
            if rep is None:
                report.add("skipped", "study_without_report", study=spec.study_id)
                continue
            try:
                seg = load_segmentation(spec.image, spec.labels, spec.label_names, spec.assume_orientation)
                mine = study_with_twin(spec, seg)
            except (BuildError, VolumeError) as exc:
                report.add("skipped", "study_unreadable", study=spec.study_id, error=str(exc))
                continue
            pairs += mine
            study, g = mine[0]
            voxels = {f.label: int(f.attributes["voxels"]) for f in study.findings}
            verified = [verify(c, g, voxels) for c in self.extractor.extract(spec.study_id, rep.text, rep.language)]
            self.claims += verified
            for c in verified:
                report.add("info", f"claim_{c.verdict}", study=c.study_id, sentence=c.sentence, why=c.reason)
            self._count_sentences(spec.study_id, rep.text, rep.language, verified, report)
            self.facts[spec.study_id] = ReportStudy(
                claims=verified, language=rep.language, findings=rep.findings,
                frame_pixels=frame_pixels(seg.labels, seg.masks, seg.names),
                label_ids={n: i for i, n in seg.names.items()} if seg.labels is not None
                else {n: i for i, n in enumerate(sorted(seg.masks or {}), 1)})
        if not self.facts:
            raise BuildError("no study has both a readable segmentation and a report")
        for sid in sorted(set(reports) - {sp.study_id for sp in self.specs}):
            report.add("skipped", "report_without_study", study=sid)
        report.totals["studies"] = len(self.facts)
        report.totals["claims"] = len(self.claims)
        report.totals["sentences"] = self.sentence_counts["total"]
        report.totals["sentences_without_claim"] = sum(self.sentence_counts["without_claim"].values())
        views = seg_views(pairs, self.frames)
        for v in views:
            v.radreport = None if v.geometry.mirrored else self.facts.get(v.id)
        return views

    def _count_sentences(self, study_id: str, text: str, language: str, claims: Sequence[Claim],
                         report: BuildReport) -> None:
        """Every sentence that yields no claim, counted by the extractor's reason (a report the
        rules cannot read says so in the build report instead of giving fewer items)."""
        claimed = {c.span for c in claims}
        for a, b in sentences(text):
            self.sentence_counts["total"] += 1
            if (a, b) in claimed:
                continue
            reason = self.extractor.no_claim_reason(text[a:b], language) or "no_claim"
            self.sentence_counts["without_claim"][reason] += 1
            report.add("info", f"sentence_without_claim_{reason}", study=study_id, sentence=text[a:b])

    def families(self) -> list[TaskFamily]:
        return [self.questions]

    def manifest(self, ctx: BuildContext, studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
        verdicts = Counter(c.verdict for c in self.claims)
        return {
            "options": {"extractor": self.extractor.name, "min_frame_pixels": self.min_pixels},
            "source_files": seg_source_files(self.specs, ("image", "labels"))
            + [{"path": str(self.reports_path), "role": "reports"}],
            "box_convention": {"frame_orientation": FRAME_CONVENTION},
            "world_convention": WORLD_CONVENTION,
            "spatial_margins": MARGINS.manifest("min_centroid_separation_mm", "max_extent_overlap_mm",
                                                "touch_tolerance_mm", "min_size_ratio"),
            "claims": {"total": len(self.claims),
                       **{v: verdicts.get(v, 0) for v in ("supported", "contradicted", "unverifiable")}},
            "sentences": {"total": self.sentence_counts["total"],
                          "without_claim": dict(sorted(self.sentence_counts["without_claim"].items()))},
            "radgrounder_targets": self._radgrounder_counts(items),
        }

    def _radgrounder_counts(self, items: Sequence[Item]) -> dict[str, Any]:
        """RefRad2D targets in grounding.jsonl: rows, tags, and visible keywords left untagged by why."""
        targets = [self.questions.radgrounder[it.id] for it in items if it.id in self.questions.radgrounder]
        return {"rows": len(targets), "tags": sum(len(t.tags) for t in targets),
                "left_out": dict(sorted(Counter(x["reason"] for t in targets for x in t.left_out).items()))}

    def write_extra(self, out: Path, studies: Sequence[Study], items: Sequence[Item]) -> None:
        write_jsonl(out / "claims.jsonl", self.claims)
        by_study = {s.id: s for s in studies}
        rows = []
        for it in items:
            sentence = self.questions.sentences.get(it.id)
            if sentence is None:
                continue
            facts, target = self.facts[it.study_id], self.questions.radgrounder[it.id]
            rows.append({"item_id": it.id, "study_id": it.study_id, "split": it.split, "frame": it.frames[0],
                         "frame_size": list(by_study[it.study_id].frame_size),
                         "language": it.language, "sentence": sentence,
                         "keywords": [{"label": e.label, "label_id": facts.label_ids[e.label],
                                       "radgrounder_id": class_id(e.label), "box": list(e.box)}
                                      for e in it.evidence],
                         "prefix_radgrounder": prefix(facts.language), "target_radgrounder": target.text,
                         "tags_radgrounder": target.tags, "left_out_radgrounder": target.left_out,
                         "target_voxqa": it.answer_text})
        write_lines(out / "grounding.jsonl", rows, lambda r: dumps(r).replace(b"\n", b"") + b"\n")
