"""`voxqa report`: a self-contained HTML page in which model output can never run."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from helpers import rendered_phantom
from openai_stub import StubServer
from typer.testing import CliRunner

from voxqa.cli import app
from voxqa.eval.models import make_model
from voxqa.eval.run import RunConfig, run_eval

PROBE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    tmp = tmp_path_factory.mktemp("report")
    ds = rendered_phantom(tmp, n=6, seed=5, size=96, context=3)
    out = []
    for spec in ("oracle", "random"):
        asyncio.run(run_eval(RunConfig(dataset=ds, out=tmp / spec, split=None), make_model(spec, ds)))
        out.append(tmp / spec)
    with StubServer(lambda content: PROBE) as srv:  # a model that answers with an XSS probe
        asyncio.run(run_eval(RunConfig(dataset=ds, out=tmp / "evil", split=None),
                             make_model("openai:evil", ds, base_url=srv.url)))
    out.append(tmp / "evil")
    return ds, out


def test_report_is_self_contained_and_escapes_model_output(runs, tmp_path) -> None:
    ds, run_dirs = runs
    res = CliRunner().invoke(app, ["report", *map(str, run_dirs), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text()
    assert "alert(1)" in page and "<script>alert" not in page  # shown, as text
    assert 'onerror="alert' not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(re.findall(r"<script>", page)) == 1  # only the page's own filter script
    assert not re.search(r'(src|href)="(?!data:)[^"#]', page)  # nothing loaded from outside
    assert page.count('<div class="item"') > 20
    assert 'stroke="#0a0"' in page  # ground-truth boxes drawn
    # each run's predicted boxes in its own colour, with a legend naming the run (not its path)
    pred_colors = set(re.findall(r'<rect class="pred"[^>]* stroke="(#[0-9A-Fa-f]{6})"', page))
    assert len(pred_colors) >= 2, pred_colors
    legend = page.split('id="box-legend"')[1].split("</p>")[0]
    assert legend.count('class="run-key"') == 3 and "oracle" in legend and str(run_dirs[0]) not in legend
    assert all(c in legend for c in pred_colors)
    assert 'id="chart"' in page and "oracle" in page and "chance" in page


def test_report_boxes_match_the_items(runs, tmp_path) -> None:
    """Each ground-truth rectangle drawn is an evidence image box of its item."""
    from voxqa.dataset.folder import read_items
    from voxqa.views.html_report import build_report

    ds, run_dirs = runs
    page = build_report(run_dirs[:1], tmp_path / "o.html", max_items=500).read_text()
    items = {it.id: it for it in read_items(ds)}
    blocks = page.split('<div class="item"')[1:]
    checked = 0
    for block in blocks:
        item_id = re.search(r"<b>([^<]+)</b>", block).group(1)
        gt = {tuple(int(float(v)) for v in m) for m in re.findall(
            r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none" stroke="#0a0"', block)}
        want = {(b[0], b[1], b[2] - b[0], b[3] - b[1])
                for e in items[item_id].evidence if e.image_box for b in [e.image_box]}
        assert gt <= want, item_id  # nothing drawn that is not an evidence box
        if gt:
            checked += 1
    assert checked > 5


def test_report_leaderboard_columns_and_names(runs, tmp_path) -> None:
    """Runs named from run.json; n, answered, failed, unparseable as columns; "!" explained."""
    import json

    from voxqa.views.html_report import build_report

    ds, run_dirs = runs
    page = build_report(run_dirs, tmp_path / "b.html").read_text()
    board = page.split('<table id="leaderboard">')[1].split("</table>")[0]
    header = re.findall(r"<th>([^<]*)</th>", board)
    assert header[:6] == ["run", "n", "answered", "failed", "unparseable", "accuracy"]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in board.split("<tr>")[2:]]
    assert rows[0][0] == "chance" and len(rows) == 4
    assert all(str(d) not in board for d in run_dirs)
    assert rows[1][0].startswith("oracle") and rows[2][0].startswith("random")
    for row, d in zip(rows[1:], run_dirs, strict=False):
        res = json.loads((d / "results.json").read_text())
        assert row[2] == str(res["answered"]) and row[3] == str(res["failed"])
        assert f"n={res['overall']['metrics']['accuracy']['n']}" in row[5]
    legend = page.split('id="leaderboard-legend"')[1].split("</ul>")[0]
    assert "!" in legend and "below chance" in legend and "unparseable" in legend


def test_report_and_compare_render_one_leaderboard(runs, tmp_path) -> None:
    """The report's leaderboard and `voxqa compare`'s CSV and Markdown are one table: same
    header, same run names, same numbers (line breaks of the page's cells as spaces)."""
    import csv
    import html

    from voxqa.views.html_report import build_report

    ds, run_dirs = runs
    page = build_report(run_dirs, tmp_path / "b.html").read_text()
    board = page.split('<table id="leaderboard">')[1].split("</table>")[0]
    header = [html.unescape(h) for h in re.findall(r"<th>([^<]*)</th>", board)]
    cells = [[" ".join(html.unescape(c).split("\n")) for c in re.findall(r"<td[^>]*>([^<]*)</td>", row)]
             for row in board.split("<tr>")[2:]]
    res = CliRunner().invoke(app, ["compare", *map(str, run_dirs), "--out", str(tmp_path / "b.csv")])
    assert res.exit_code == 0, res.output
    table = list(csv.reader((tmp_path / "b.csv").open()))
    assert table[0] == header and table[1:] == cells
    assert any(re.match(r"\d\.\d{3} \[", c) for row in cells for c in row)  # numbers compared
    res = CliRunner().invoke(app, ["compare", *map(str, run_dirs), "--out", str(tmp_path / "b.md")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "b.md").read_text().split("\n")
    assert [c.strip() for c in md[0].strip("|").split("|")] == header
    assert [[c.strip() for c in ln.strip("|").split("|")] for ln in md[2:2 + len(cells)]] == cells
    assert "below chance" in md[-2]


def test_report_glossary_and_sample_note(runs, tmp_path) -> None:
    """The page explains its metrics, chance, the interval and the below-chance test, the blind
    audit, pair accuracy and unparseable vs failed; it says how its items were sampled."""
    from voxqa.dataset.folder import read_items
    from voxqa.views.html_report import build_report

    ds, run_dirs = runs
    page = build_report(run_dirs[:1], tmp_path / "g.html", max_items=20).read_text()
    glossary = page.split('<section id="glossary">')[1].split("</section>")[0]
    for term in ("accuracy", "mean IoU", "BLEU", "chance", "1/k", "Wilson", "Holm", "blind audit",
                 "pair accuracy", "failed request", "unparseable"):
        assert term in glossary, term
    note = page.split('id="sample">')[1].split("</p>")[0]
    n_items = len(read_items(ds))
    assert "20 of the first run&#39;s" in note and "--max-items 20" in note and str(n_items) in note
    full = build_report(run_dirs[:1], tmp_path / "all.html", max_items=100_000).read_text()
    assert f"all {n_items} items" in full.split('id="sample">')[1].split("</p>")[0]


def _chromium() -> str:
    import shutil

    from helpers import data_unavailable

    path = shutil.which("chromium")
    if path is None:  # .ci/run installs Debian's chromium; locally: apt-get install chromium
        data_unavailable("chromium is not installed (apt-get install chromium)")
    return path


def test_report_in_a_real_browser(runs, tmp_path) -> None:
    """Headless Chromium: no console errors, filters work, screenshot not empty, no XSS."""
    from playwright.sync_api import sync_playwright

    from voxqa.views.html_report import build_report

    page_path = build_report(runs[1], tmp_path / "r.html", max_items=60)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    errors, dialogs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=flags)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_path.resolve().as_uri())
        page.wait_for_load_state("load")
        total = page.locator(".item").count()
        assert total > 20
        assert page.locator("#shown").inner_text() == f"{total} of {total} items shown"
        page.select_option("#f-task", "detection")
        visible = page.locator(".item:not(.hidden)").count()
        assert 0 < visible < total
        assert all(t == "detection" for t in page.locator(".item:not(.hidden)").evaluate_all(
            "els => els.map(e => e.dataset.task)"))
        page.select_option("#f-task", "")
        # per-run correctness: oracle (run 0) is right everywhere, random (run 1) is not
        page.select_option("#f-run-1", "0")
        wrong = page.locator(".item:not(.hidden)").evaluate_all("els => els.map(e => e.dataset.c1)")
        assert 0 < len(wrong) < total and set(wrong) == {"0"}
        page.select_option("#f-run-1", "1")
        right = page.locator(".item:not(.hidden)").count()
        assert 0 < right < total and right + len(wrong) <= total
        page.select_option("#f-run-1", "")
        page.select_option("#f-run-0", "0")
        assert page.locator(".item:not(.hidden)").count() == 0  # the oracle is never wrong
        page.select_option("#f-run-0", "")
        page.check("#f-disagree")  # oracle right, random wrong: they disagree
        pairs = page.locator(".item:not(.hidden)").evaluate_all(
            "els => els.map(e => [e.dataset.c0, e.dataset.c1, e.dataset.c2])")
        assert pairs and all(len({c for c in p if c}) == 2 for p in pairs)
        page.uncheck("#f-disagree")
        assert page.locator(".item:not(.hidden)").count() == total
        # a permalink opens its item, even when a filter hides it
        target = page.locator(".item").nth(total - 3)
        anchor = target.get_attribute("id")
        page.select_option("#f-task", [t for t in page.locator("#f-task option").all_inner_texts()
                                       if t not in ("all", target.get_attribute("data-task"))][0])
        page.goto(page_path.resolve().as_uri() + "#" + anchor)
        page.wait_for_load_state("load")
        opened = page.locator("#" + anchor)
        assert "target" in opened.get_attribute("class") and opened.is_visible()
        assert opened.evaluate("e => { const r = e.getBoundingClientRect(); return r.top >= -1 && r.top < innerHeight; }")
        # every frame of an item, and a larger view on click; frames near the viewport are decoded
        assert page.locator(".item").first.locator(".frame").count() >= 1
        page.locator(".item").first.scroll_into_view_if_needed()
        page.wait_for_function("""() => { const i = document.querySelector('.item img[data-frame]');
                                         return i && i.complete && i.naturalWidth > 0; }""")
        shown = dict(page.locator(".item").evaluate_all(
            "els => els.map(e => [e.querySelector('b').textContent, e.querySelectorAll('.frame').length])"))
        from voxqa.dataset.folder import read_items
        assert all(shown[it.id] == len(it.images or []) for it in read_items(runs[0]) if it.id in shown)
        page.locator(".item .pic").first.click()
        assert page.locator("#zoom").is_visible() and page.locator("#zoom img").count() == 1
        assert page.locator("#zoom img").evaluate("i => i.src.startsWith('data:image/webp;base64,')")
        page.locator("#zoom").click()
        assert not page.locator("#zoom").is_visible()
        # charts: CI whiskers, a chance line per task with a chance, every text inside its
        # svg (the 1.0 tick not clipped) and no two texts overlapping
        assert page.locator("#chart path.ci").count() > 0
        assert page.locator("#chart line.chance").count() >= 1
        for sel in ("#chart", "#label-chart", "#iou-chart"):
            boxes = page.locator(sel).evaluate("""svg => { const s = svg.getBoundingClientRect();
                return [...svg.querySelectorAll('text')].map(t => { const r = t.getBoundingClientRect();
                  return [r.left - s.left, r.top - s.top, r.right - s.left, r.bottom - s.top, s.width, s.height,
                          t.textContent]; }); }""")
            assert len(boxes) > 5, sel
            for x0, y0, x1, y1, w, h, text in boxes:
                assert x0 >= -0.5 and y0 >= -0.5 and x1 <= w + 0.5 and y1 <= h + 0.5, (sel, text)
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    overlap = min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1
                    assert not overlap, (sel, a[6], b[6])
        assert "1.00" in page.locator("#chart").text_content()
        # the leaderboard never widens the page: it wraps or scrolls in its own container
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        for sel in ("#leaderboard", "#subtasks", "#chart", "#label-chart", "#iou-chart", "#audit",
                    "#glossary", ".item"):  # every section draws something
            assert len(page.locator(sel).first.screenshot()) > 2_000, sel
        shot = page.screenshot(full_page=False)
        browser.close()
    assert errors == [] and dialogs == []  # the probe's alert() never ran
    assert len(shot) > 20_000  # a real picture, not a blank page


def test_report_embeds_each_frame_once_as_a_thumbnail(runs, tmp_path) -> None:
    """Items that share a frame share one embedded copy; every copy is a WebP at most THUMB_PX on
    its long side with the frame's aspect ratio; the page is a fraction of the PNGs it shows."""
    import base64
    import io
    import json

    from PIL import Image

    from voxqa.dataset.folder import read_items
    from voxqa.views.html_report import THUMB_PX, build_report

    ds, run_dirs = runs
    page = build_report(run_dirs, tmp_path / "r.html", max_items=1000).read_text()
    data = json.loads(re.search(r'<script type="application/json" id="frame-data">(.*?)</script>', page, re.S)[1])
    used = re.findall(r'<img data-frame="([0-9a-f]{16})"', page)
    items = read_items(ds)
    paths = [im.path for it in items for im in it.images or []]
    assert len(used) == len(paths) > len(set(paths)) == len(data)  # one copy per distinct frame
    assert set(used) == set(data)
    sizes = {}
    for url in data.values():
        assert url.startswith("data:image/webp;base64,")
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
            assert im.format == "WEBP" and max(im.size) <= THUMB_PX
            sizes[im.size] = True
    first = next(im for it in items for im in it.images or [])
    with Image.open(ds / first.path) as png:
        w, h = png.size
    assert any(abs(tw / th - w / h) < 0.05 for tw, th in sizes)
    raw = sum((ds / p).stat().st_size for p in paths)  # what embedding every shown PNG costs
    assert len(page) < raw


def test_report_shows_the_blind_audit_and_pair_accuracy_when_present(runs, tmp_path) -> None:
    """The dataset's audit.json becomes a table (one row per audited template); pair accuracy
    from results.json is shown when a run has pairs and absent otherwise (phantom: no twins)."""
    import json
    import shutil

    from voxqa.dataset.audit import AUDIT
    from voxqa.eval.score import RESULTS, score_run
    from voxqa.views.html_report import build_report

    ds, run_dirs = runs
    audit = json.loads((ds / AUDIT).read_text())  # written by the build
    audited = [t for t, r in audit["templates"].items() if not r["status"].startswith("not audited")]
    assert audited and audit["status"] == "insufficient"  # 6 phantom studies: below the minimum

    plain = build_report(run_dirs[:1], tmp_path / "plain.html").read_text()
    assert 'id="pair-accuracy"' not in plain
    table = plain.split('<table id="audit">')[1].split("</table>")[0]
    assert "Blind audit of the dataset: insufficient" in plain
    assert [re.search(r"<td>([^<]*)</td>", row).group(1) for row in table.split("<tr>")[2:]] == audited
    assert table.count("<td>insufficient</td>") == len(audited)

    run = tmp_path / "paired"
    shutil.copytree(run_dirs[0], run)
    results = score_run(run)
    results["pair_accuracy"] = {
        "overall": {"n_pairs": 10, "both_right": 7, "value": 0.7, "ci": [0.397, 0.892]},
        "by_category": {"laterality": {"n_pairs": 4, "both_right": 1, "value": 0.25, "ci": [0.046, 0.699]}},
    }
    (run / RESULTS).write_text(json.dumps(results))
    page = build_report([run], tmp_path / "paired.html").read_text()
    pairs = page.split('<table id="pair-accuracy">')[1].split("</table>")[0]
    cells = [re.findall(r"<td>([^<]*)</td>", row) for row in pairs.split("<tr>")[2:]]
    name = cells[0][0]
    assert "oracle" in name and str(run) not in name  # named from run.json, not its folder
    assert cells == [[name, "overall", "10", "7", "0.700", "0.397-0.892"],
                     [name, "laterality", "4", "1", "0.250", "0.046-0.699"]]
    board = page.split('<table id="leaderboard">')[1].split("</table>")[0]
    assert "<th>pair accuracy</th>" in board and "7/10 pairs" in board
    assert "<th>pair accuracy</th>" not in plain


def test_report_category_chart_and_control_panel(runs, tmp_path) -> None:
    """Accuracy by CT-SpatialVQA category (with axis, values, CI whiskers) and the "does the
    model look at the image" panel (one model under several --control side by side), present
    when the runs have them, drawn in a real browser; absent otherwise."""
    import html
    import json

    from helpers import rendered_segmentation
    from playwright.sync_api import sync_playwright

    from voxqa.views.html_report import build_report

    plain = build_report(runs[1][:1], tmp_path / "plain.html", max_items=5).read_text()
    assert 'id="category-chart"' not in plain and 'id="controls"' not in plain
    ds = rendered_segmentation(tmp_path, size=96, context=4)
    dirs = []
    for spec, control in (("oracle", "none"), ("oracle", "mirrored"), ("random", "none")):
        out = tmp_path / f"{spec}_{control}"
        asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, control=control), make_model(spec, ds)))
        dirs.append(out)
    page_path = build_report(dirs, tmp_path / "seg.html", max_items=20)
    page = page_path.read_text()
    results = [json.loads((d / "results.json").read_text()) for d in dirs]
    categories = sorted(results[0]["by"]["category"])
    assert categories
    chart = page.split('<svg id="category-chart"')[1].split("</svg>")[0]
    assert all(html.escape(c) in chart for c in categories) and "0.25" in chart and "<path d=" in chart  # axis, whiskers
    acc = results[2]["by"]["category"][categories[0]]["metrics"]["accuracy"]["mean"]
    assert f">{acc:.2f}</text>" in chart  # each bar's value
    panel = page.split('<table id="controls">')[1].split("</table>")[0]
    assert re.findall(r"<th>([^<]*)</th>", panel) == ["model", "control=none", "control=mirrored"]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in panel.split("<tr>")[2:]]
    assert len(cells) == 1 and cells[0][0] == "oracle · minimal"  # random ran under one control only
    assert cells[0][1].startswith("1.000 [") and cells[0][2].startswith("1.000 [")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        view = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        view.on("pageerror", lambda e: errors.append(str(e)))
        view.goto(page_path.resolve().as_uri())
        view.wait_for_load_state("load")
        assert view.locator("#category-chart rect.bar").count() >= len(categories)
        boxes = view.locator("#category-chart").evaluate("""svg => { const s = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('text')].map(t => { const r = t.getBoundingClientRect();
              return [r.left - s.left, r.top - s.top, r.right - s.left, r.bottom - s.top, s.width, s.height]; }); }""")
        assert boxes and all(x0 >= -0.5 and y0 >= -0.5 and x1 <= w + 0.5 and y1 <= h + 0.5
                             for x0, y0, x1, y1, w, h in boxes)
        for sel in ("#category-chart", "#controls"):
            assert view.locator(sel).is_visible() and len(view.locator(sel).screenshot()) > 2_000, sel
        browser.close()
    assert errors == []


def test_report_accuracy_by_frames_shown_and_finding_size(runs, tmp_path) -> None:
    """The context chart's bins and the random run's values, recomputed here from the items
    (frames shown; largest evidence box over the stored frame area) and the run's scores."""
    from collections import defaultdict

    from voxqa.dataset.folder import read_studies
    from voxqa.eval.score import scored_run
    from voxqa.views.html_report import FRAME_BINS, SIZE_BINS, build_report

    folder, dirs = runs
    page = build_report(dirs[:2], tmp_path / "r.html", max_items=5).read_text()
    chart = page.split('<svg id="context-chart"')[1].split("</svg>")[0]
    size = {s.id: s.frame_size for s in read_studies(folder)}
    per_bin: dict[str, list[int]] = defaultdict(list)
    sr = scored_run(dirs[1])  # random
    for it, rec in zip(sr.items, sr.records, strict=False):
        if rec["scores"].get("correct") is None or it.prior_answerable:
            continue
        right = int(bool(rec["scores"]["correct"]))
        n = len(it.images or [])
        per_bin[next(name for bound, name in FRAME_BINS if bound is None or n <= bound)].append(right)
        if it.evidence:
            w, h = size[it.study_id]
            a = max((e.box[2] - e.box[0]) * (e.box[3] - e.box[1]) for e in it.evidence) / (w * h)
            per_bin[next(name for bound, name in SIZE_BINS if bound is None or a <= bound)].append(right)
    assert any(k.startswith("finding") for k in per_bin) and any("frame" in k for k in per_bin)
    for name, v in per_bin.items():
        assert f"{name} (n={len(v)})" in chart, name
        assert f"random · minimal: {sum(v) / len(v):.3f}</title>" in chart, name
