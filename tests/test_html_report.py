"""specsim report DIR and --report FILE.html: one self-contained page (no network), the same from
both paths; a folder that is not a run, sweep or plan output exits 2 with one line, writing nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from helpers import autoregressive, constant_scenario, stderr_of
from typer.testing import CliRunner

from simulator.cli import app

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}
NAME = "edge <b>&amp; 'cloud'"  # user text that must come out escaped


class StrictParser(HTMLParser):
    """html.parser, failing on unbalanced tags (it forgives them by default)."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data):
        self.text.append(data)


def _page(path: Path, svgs: int) -> str:
    """The page's text, after checking it parses, fetches nothing and holds `svgs` charts."""
    page = path.read_text(encoding="utf-8")
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    for external in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import", "<script",
                     "<link"):
        assert external not in page, external
    assert page.count("<svg") == svgs
    assert page.startswith("<!DOCTYPE html>")
    return " ".join("".join(parser.text).split())


def _scenario(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _run_data() -> dict:
    link = {"bandwidth_mbps": 50, "latency_ms": 2}
    return constant_scenario(requests=8, users=2, output=16, prompt=8, split=True, link=link, name=NAME)


def test_run_report_holds_the_figures_beside_the_closed_form_and_three_charts(tmp_path):
    out, page = tmp_path / "out", tmp_path / "run.html"
    result = _invoke("run", _scenario(tmp_path, _run_data()), "--out", out, "--report", page)
    assert result.exit_code == 0, (result.output, result.exception)
    text = _page(page, svgs=3)  # latency CDFs, utilization, timeline
    rep = json.loads((out / "report.json").read_text())
    assert f"{rep['throughput_tokens_per_s']:.4g}" in text
    assert f"{rep['estimate']['throughput_tokens_per_s']:.4g}" in text  # the closed form beside it
    assert f"{rep['latency_s']['ttft']['p99'] * 1000:.2f}" in text
    assert f"{rep['devices']['cloud']['utilization']:.4g}" in text
    assert "link edge-cloud" in text and "closed form" in text
    html = page.read_text()
    assert NAME not in html and "edge &lt;b&gt;&amp;amp; &#x27;cloud&#x27;" in html  # escaped, title and YAML
    assert (out / "scenario.yaml").is_file() and (out / "jobs.csv").is_file()
    again = _invoke("report", out)  # the folder alone draws the same page
    assert again.exit_code == 0, again.output
    assert (out / "report.html").read_text() == html


def test_run_report_without_out_leaves_only_the_page(tmp_path):
    page = tmp_path / "page.html"
    result = _invoke("run", _scenario(tmp_path, _run_data()), "--report", page, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    json.loads(result.output)  # --json still prints only the report
    _page(page, svgs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html", "scenario.yaml"]


def test_sweep_report_has_a_chart_per_swept_key_and_the_ranked_table(tmp_path):
    out, page = tmp_path / "out", tmp_path / "sweep.html"
    data = constant_scenario(requests=6, users=2, output=12, prompt=8)
    result = _invoke("sweep", _scenario(tmp_path, data), "--grid", "strategy.gamma=0,3", "--grid",
                     "acceptance.alpha=0.50,0.9", "--workers", "1", "--out", out, "--report", page)
    assert result.exit_code == 0, (result.output, result.exception)
    text = _page(page, svgs=2)
    assert "strategy.gamma" in text and "acceptance.alpha" in text and "0.50" in text  # values as written
    rows = [line.split(",") for line in (out / "summary.csv").read_text().splitlines()]
    column = rows[0].index("throughput_tokens_per_s.mean")
    best = max(float(r[column]) for r in rows[1:])
    assert text.index("Configurations, by throughput") < text.index(f"{best:.4g}")
    assert "speculative" in text  # the scenario's YAML


def test_plan_report_has_the_bars_and_the_ranking(tmp_path):
    data = autoregressive(constant_scenario(target_ms=10, output=1, prompt=16, requests=100))
    data["models"] = {"target": data["models"]["target"]}
    data["devices"]["gpu"]["profile"]["forward_ms"] = {"target": 10}
    out, page = tmp_path / "out", tmp_path / "plan.html"
    result = _invoke("plan", _scenario(tmp_path, data), "--slo-ttft-ms", "30", "--percentile", "90", "--search",
                     "devices.gpu.profile.forward_ms.target=10,40", "--workers", "1", "--out", out, "--report", page)
    assert result.exit_code == 0, (result.output, result.exception)
    text = _page(page, svgs=1)
    assert "p90 TTFT &lt;= 30 ms" in page.read_text() and "0 (infeasible)" in text
    rows = [line.split(",") for line in (out / "plan.csv").read_text().splitlines()]
    rate = float(rows[1][rows[0].index("sustained_rate_per_s")])
    assert f"{rate:.4g}" in text and text.index(f"{rate:.4g}") < text.index("0 (infeasible)")  # ranked


def _run_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    result = _invoke("run", _scenario(tmp_path, constant_scenario(requests=2, output=4)), "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _spoil(what: str):
    def spoil(folder: Path) -> None:
        if what == "json":
            (folder / "report.json").write_text("{not json")
        elif what == "field":
            rep = json.loads((folder / "report.json").read_text())
            del rep["estimate"]["latency_s"]
            (folder / "report.json").write_text(json.dumps(rep))
        elif what == "cell":
            text = (folder / "requests.csv").read_text().splitlines()
            header = text[0].split(",")
            cells = text[1].split(",")
            cells[header.index("finish_s")] = "soon"
            (folder / "requests.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
        elif what == "missing":
            (folder / "requests.csv").unlink()
        elif what == "empty":
            for p in folder.iterdir():
                p.unlink()
    return spoil


@pytest.mark.parametrize("what, file, field, rule", [
    ("empty", "", "", "not a run, sweep or plan output folder"),
    ("json", "report.json", "", "not valid JSON"),
    ("field", "report.json", "estimate.latency_s", "required field is missing"),
    ("cell", "requests.csv", "finish_s", "must be a number"),
    ("missing", "requests.csv", "", "cannot read file"),
])
def test_report_on_a_bad_folder_exits_2_with_one_line_and_writes_nothing(tmp_path, what, file, field, rule):
    folder = _run_folder(tmp_path)
    _spoil(what)(folder)
    before = sorted(p.name for p in folder.iterdir())
    result = _invoke("report", folder)
    lines = [ln for ln in stderr_of(result).splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(lines) == 1 and "Traceback" not in result.output, lines
    prefix = f"error: {folder / file if file else folder}: " + (f"{field}: " if field else "")
    assert lines[0].startswith(prefix) and rule in lines[0], lines
    assert sorted(p.name for p in folder.iterdir()) == before  # no page, no temporary file


def test_report_on_a_missing_folder_and_a_bad_target_exit_2(tmp_path):
    result = _invoke("report", tmp_path / "nowhere")
    assert result.exit_code == 2 and "not a folder" in stderr_of(result)
    result = _invoke("run", _scenario(tmp_path, constant_scenario(requests=2, output=4)), "--report",
                     tmp_path / "page.txt")
    assert result.exit_code == 2 and "--report must be an .html file" in stderr_of(result)
    assert not (tmp_path / "page.txt").exists()


BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH")
def test_a_headless_browser_draws_the_page(tmp_path):
    page, shot = tmp_path / "run.html", tmp_path / "shot.png"
    result = _invoke("run", _scenario(tmp_path, _run_data()), "--report", page)
    assert result.exit_code == 0, result.output
    subprocess.run([BROWSER, "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={shot}",
                    "--window-size=1200,2400", page.as_uri()], check=True, timeout=120, capture_output=True)
    from PIL import Image

    image = Image.open(shot).convert("L")
    low, high = image.getextrema()
    assert shot.stat().st_size > 10_000 and high - low > 100  # drawn, not a blank page


@pytest.mark.parametrize("name, text, field, rule", [
    ("summary.csv", "config,strategy.gamma,runs\n0,4,two\n", "runs", "must be a number"),
    ("summary.csv", "strategy.gamma,runs\n4,1\n", "config", "required column is missing"),
    ("summary.csv", "config,strategy.gamma,runs,throughput_tokens_per_s.mean\n0,4,1,fast\n", "",
     "not what specsim sweep writes"),
    ("plan.csv", "config,strategy.gamma,feasible,rank_rate\n0,4,1,1\n", "sustained_rate_per_s",
     "required column is missing"),
])
def test_report_on_a_bad_sweep_or_plan_table_exits_2_with_one_line(tmp_path, name, text, field, rule):
    (tmp_path / name).write_text(text)
    result = _invoke("report", tmp_path)
    lines = [ln for ln in stderr_of(result).splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, (lines, result.exception)
    assert lines[0].startswith(f"error: {tmp_path / name}: " + (f"{field}: " if field else "")), lines
    assert rule in lines[0] and not (tmp_path / "report.html").exists(), lines


def test_the_page_may_go_into_the_output_folder_the_run_makes(tmp_path):
    out = tmp_path / "new"
    result = _invoke("run", _scenario(tmp_path, constant_scenario(requests=2, output=4)), "--out", out, "--report",
                     out / "page.html")
    assert result.exit_code == 0, (result.output, result.exception)
    _page(out / "page.html", svgs=3)
