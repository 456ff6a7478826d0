"""evaluation/report.py and `hybridformer report`: rows -> report.md and the PNG plots of their series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hybridformer.cli import main
from hybridformer.evaluation.report import load_run, render_report, summary_table
from hybridformer.evaluation.report_plots import PLOTS, attention_series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows() -> list[dict]:
    """One row family per plot, as the demo and the benchmarks write them."""
    return [
        {"case": "sentiment", "variant": "hybrid", "accuracy": 0.81, "tokens_per_s": 4200.0,
         "outputs": "sentiment/", "command": "hybridformer finetune --config configs/finetune_sentiment.yaml",
         "log": "sentiment/log.jsonl", "size_bytes": 90_000_000},
        {"case": "sentiment", "variant": "int8", "accuracy": 0.80, "tokens_per_s": 6100.0, "size_bytes": 24_000_000,
         "command": "hybridformer quantize --model sentiment/model --out sentiment/int8"},
        {"case": "sentiment", "variant": "gated", "accuracy": 0.79, "throughput": 55.0,
         "open_fraction_per_layer": [0.9, 0.5, 0.25, 0.25]},
        {"case": "N=4096", "variant": "hybrid", "median_ms": 20.0, "peak_mb": 40.0},
        {"case": "N=1024", "variant": "hybrid", "median_ms": 5.0, "peak_mb": 12.0},
        {"case": "N=1024", "variant": "sdpa", "median_ms": 11.0, "peak_mb": 20.0},
        {"case": "N=4096", "variant": "sdpa", "median_ms": 120.0, "peak_mb": 70.0},
        {"case": "encoder-N=4096", "variant": "longformer", "median_ms": 6000.0, "peak_mb": 330.0,
         "command": "python benchmarks/encoder.py --quick"},
        {"case": "N=4096-fwdbwd", "variant": "hybrid", "median_ms": 90.0},
        {"case": "caption", "variant": "tiny", "image": "seven.png", "caption": "a handwritten digit seven"},
        {"case": "caption", "variant": "tiny", "image": "missing.png", "caption": "never drawn"},
    ]


def _write_run(folder: Path, rows: list[dict]) -> Path:
    (folder / "sentiment").mkdir(parents=True)
    log = [{"step": s, "loss": 1.0 / s, "lr": 1e-4} for s in range(1, 11)] + [{"step": 10, "eval/accuracy": 0.8}]
    (folder / "sentiment" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    Image.new("RGB", (28, 28), (200, 30, 30)).save(folder / "seven.png")
    machine = {"cpu": "AMD EPYC", "cpu_count": 2, "load_average": [1.5, 1.0, 0.5], "torch": "2.x"}
    (folder / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}))
    return folder


def test_every_plot_is_drawn_from_its_series_and_reads_as_a_png(tmp_path):
    run = load_run(_write_run(tmp_path / "run", _rows()))
    assert run.rows[0]["curve"] == [[s, 1.0 / s] for s in range(1, 11)]  # the eval record has no loss
    report = render_report(run)
    assert set(report.figures) == {p.name for p in PLOTS} and report.absent == {}
    for path in report.figures.values():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2_000
        with Image.open(path) as image:
            assert min(image.size) >= 250
        assert f"plots/{path.name}" in report.markdown
    # Commands of the rows a figure was drawn from are named under it.
    assert "    python benchmarks/encoder.py --quick\n" in report.markdown
    assert "Measured on AMD EPYC, 2 cores, load average 1.50 / 1.00 / 0.50" in report.markdown


def test_attention_series_are_inference_lengths_by_family_and_variant_sorted_by_length():
    series = attention_series(_rows())
    assert {k: [r["_n"] for r in v] for k, v in series.items()} == {
        "hybrid": [1024, 4096], "sdpa": [1024, 4096], "encoder longformer": [4096]}


def test_absent_series_are_named_and_their_stale_files_removed(tmp_path):
    folder = _write_run(tmp_path / "run", _rows())
    render_report(load_run(folder))
    only_speed = [{"case": "sentiment", "variant": "full", "accuracy": 0.8, "examples_per_s": 12.0}]
    (folder / "results.json").write_text(json.dumps({"rows": only_speed}))
    report = render_report(load_run(folder))
    assert set(report.figures) == {"accuracy_vs_speed"}
    assert set(report.absent) == {p.name for p in PLOTS} - {"accuracy_vs_speed"}
    assert sorted(p.name for p in (folder / "plots").iterdir()) == ["accuracy_vs_speed.png"]
    for name in report.absent:
        assert f"- {name}: needs " in report.markdown


def test_summary_table_lists_every_row_with_score_speed_size_outputs_and_command():
    rows = _rows()
    lines = summary_table(rows).splitlines()
    assert lines[0] == "| what ran | score | speed | size | outputs | command |" and len(lines) == 2 + len(rows)
    assert lines[2] == ("| sentiment / hybrid | accuracy 81.0% | 4,200 tokens/s | 90.0 MB | `sentiment/` | "
                        "`hybridformer finetune --config configs/finetune_sentiment.yaml` |")
    assert lines[4].startswith("| sentiment / gated | accuracy 79.0% | 55 /s | - | - | - |")
    assert lines[5].startswith("| N=4096 / hybrid | - | 20 ms |")
    assert [line.split(" | ")[0][2:] for line in lines[2:]] == [f"{r['case']} / {r['variant']}" for r in rows]


def test_report_command_renders_a_run_folder_and_names_bad_input(tmp_path, capsys):
    folder = _write_run(tmp_path / "run", _rows())
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder / 'report.md'} and {len(PLOTS)} plot(s)" in out
    assert (folder / "report.md").read_text().startswith("# Report: run\n")
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "no results.json in the run folder" in capsys.readouterr().err
    (folder / "results.json").write_text(json.dumps({"rows": {"case": "x"}}))
    assert main(["report", str(folder)]) == 1
    assert "expected {\"machine\"" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_unreadable_results_say_what_is_wrong(tmp_path, text):
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(ValueError, match="results.json"):
        load_run(tmp_path)
