"""Small GLUE folders written in the official layout (headers and column orders of GLUE's download)."""

from __future__ import annotations

from pathlib import Path

MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
MRPC_HEAD = ["#1 ID", "#2 ID", "#1 String", "#2 String"]


def _write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def _nli(label: str, i: int) -> list[str]:
    return [str(i), f"{i}1", f"{i}2", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", f"premise {i} ok",
            f"hypothesis {i} \"quoted\""]


def write_glue(root: Path, n: int = 8) -> dict[str, Path]:
    """One folder per GLUE task under ``root`` (``n`` train rows, 4 dev rows, 3 test rows); returns them."""
    two = ["0", "1"]
    nli2 = ["entailment", "not_entailment"]
    folders = {name: root / name for name in ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI")}
    for stem, rows in (("train", n), ("dev", 4)):
        _write(folders["CoLA"] / f"{stem}.tsv",
               [["gj04", two[i % 2], "" if i % 2 else "*", f"cola sentence {i} ."] for i in range(rows)])
        _write(folders["SST-2"] / f"{stem}.tsv", [["sentence", "label"]] + [[f"a {'good' if i % 2 else 'bad'} film {i}", two[i % 2]] for i in range(rows)])
        _write(folders["MRPC"] / f"{stem}.tsv", [["Quality", *MRPC_HEAD]] + [[two[i % 2], str(100 + i), str(200 + i), f"he said \"{i}\"", f"she said {i}"] for i in range(rows)])
        _write(folders["STS-B"] / f"{stem}.tsv", [[*STSB_HEAD, "score"]] + [[str(i), "main-news", "x", "2012", str(i), "none", "none", f"a man {i}", f"a woman {i}", f"{(i * 0.7) % 5:.3f}"] for i in range(rows)])
        _write(folders["QQP"] / f"{stem}.tsv", [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]] + [[str(i), str(2 * i), str(2 * i + 1), f"why {i}?", f"how {i}?", two[i % 2]] for i in range(rows)])
        for name in ("QNLI",):
            _write(folders[name] / f"{stem}.tsv", [["index", "question", "sentence", "label"]] + [[str(i), f"what {i}?", f"this {i}.", nli2[i % 2]] for i in range(rows)])
        for name, labels in (("RTE", nli2), ("WNLI", two)):
            _write(folders[name] / f"{stem}.tsv", [["index", "sentence1", "sentence2", "label"]] + [[str(i), f"first {i}", f"second {i}", labels[i % 2]] for i in range(rows)])
    nli3 = ["contradiction", "entailment", "neutral"]
    _write(folders["MNLI"] / "train.tsv", [[*MNLI_HEAD, "label1", "gold_label"]] + [[*_nli("", i), nli3[i % 3], nli3[i % 3]] for i in range(n)])
    for stem in ("dev_matched", "dev_mismatched"):  # five annotator labels in the dev files
        _write(folders["MNLI"] / f"{stem}.tsv", [[*MNLI_HEAD, *[f"label{k}" for k in range(1, 6)], "gold_label"]] + [[*_nli("", i), *[nli3[i % 3]] * 5, nli3[i % 3]] for i in range(4)])
    for stem in ("test_matched", "test_mismatched"):
        _write(folders["MNLI"] / f"{stem}.tsv", [MNLI_HEAD] + [_nli("", i) for i in range(3)])
    _write(folders["CoLA"] / "test.tsv", [["index", "sentence"]] + [[str(i), f"test sentence {i}"] for i in range(3)])
    _write(folders["SST-2"] / "test.tsv", [["index", "sentence"]] + [[str(i), f"test film {i}"] for i in range(3)])
    _write(folders["MRPC"] / "test.tsv", [["index", *MRPC_HEAD]] + [[str(i), "1", "2", f"x {i}", f"y {i}"] for i in range(3)])
    _write(folders["STS-B"] / "test.tsv", [STSB_HEAD] + [[str(i), "g", "f", "2015", str(i), "n", "n", f"s {i}", f"t {i}"] for i in range(3)])
    _write(folders["QQP"] / "test.tsv", [["id", "question1", "question2"]] + [[str(i), f"q {i}?", f"r {i}?"] for i in range(3)])
    _write(folders["QNLI"] / "test.tsv", [["index", "question", "sentence"]] + [[str(i), f"q {i}?", f"s {i}."] for i in range(3)])
    for name in ("RTE", "WNLI"):
        _write(folders[name] / "test.tsv", [["index", "sentence1", "sentence2"]] + [[str(i), f"a {i}", f"b {i}"] for i in range(3)])
    return folders
