"""GLUE folders in the official layout: every task's files read, bad files named, submission files written."""

from __future__ import annotations

import pytest

from glue_files import write_glue
from hybridformer.data.files import DataFileError
from hybridformer.data.glue import GLUE_TASKS, glue_dataset, glue_task_of, read_glue_part, write_glue_submission


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("glue_data"))


def test_every_task_reads_train_dev_and_test(folders):
    for name, task in GLUE_TASKS.items():
        folder = folders[name]
        assert glue_task_of(folder) is task
        train = read_glue_part(folder, task, "train", labelled=True)
        assert len(train.texts) == 8 and (train.pairs is not None) == (task.pair is not None)
        for stem in task.dev:
            assert len(read_glue_part(folder, task, stem, labelled=True).labels) == 4
        for stem, _ in task.test:
            test = read_glue_part(folder, task, stem, labelled=False)
            assert test.labels is None and test.ids == ["0", "1", "2"]


def test_columns_are_the_official_ones(folders):
    cola = read_glue_part(folders["CoLA"], GLUE_TASKS["CoLA"], "train", labelled=True)
    assert cola.texts[1] == "cola sentence 1 ." and cola.labels[:2] == ["0", "1"]  # no header: columns 3 and 1
    assert read_glue_part(folders["CoLA"], GLUE_TASKS["CoLA"], "test", labelled=False).texts[0] == "test sentence 0"
    mrpc = read_glue_part(folders["MRPC"], GLUE_TASKS["MRPC"], "dev", labelled=True)
    assert (mrpc.texts[2], mrpc.pairs[2], mrpc.labels[2]) == ('he said "2"', "she said 2", "0")  # quotes kept
    mnli = read_glue_part(folders["MNLI"], GLUE_TASKS["MNLI"], "dev_mismatched", labelled=True)
    assert (mnli.texts[1], mnli.labels[1]) == ("premise 1 ok", "entailment")  # gold_label, not label1
    stsb = glue_dataset(read_glue_part(folders["STS-B"], GLUE_TASKS["STS-B"], "train", labelled=True),
                        GLUE_TASKS["STS-B"], "stsb")
    assert stsb.is_regression and stsb.targets[3] == pytest.approx(2.1) and stsb.label_names == ["score"]
    assert stsb[3].target == pytest.approx(2.1) and stsb[3].text_pair == "a woman 3"
    qqp = read_glue_part(folders["QQP"], GLUE_TASKS["QQP"], "test", labelled=False)
    assert (qqp.texts[1], qqp.pairs[1]) == ("q 1?", "r 1?")
    rte = glue_dataset(read_glue_part(folders["RTE"], GLUE_TASKS["RTE"], "dev", labelled=True), GLUE_TASKS["RTE"], "rte")
    assert rte.label_names == ["entailment", "not_entailment"] and rte.labels == [0, 1, 0, 1]


def test_task_names_and_bad_files_are_one_clear_error(folders, tmp_path):
    assert glue_task_of(tmp_path / "whatever", "sst2").name == "SST-2"
    with pytest.raises(DataFileError, match="path: the folder name 'whatever' is not a GLUE task"):
        glue_task_of(tmp_path / "whatever")
    bad = tmp_path / "RTE"
    bad.mkdir()
    (bad / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\n")
    with pytest.raises(DataFileError, match=r"RTE/train\.tsv line 3: 2 tab-separated fields, expected at least 4"):
        read_glue_part(bad, GLUE_TASKS["RTE"], "train", labelled=True)
    (bad / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataFileError, match=r"dev\.tsv line 2: label 'maybe' is not one of RTE's"):
        read_glue_part(bad, GLUE_TASKS["RTE"], "dev", labelled=True)
    (bad / "test.tsv").write_text("idx\tsentence1\tsentence2\n0\ta\tb\n")
    with pytest.raises(DataFileError, match=r"test\.tsv: no column 'index'"):
        read_glue_part(bad, GLUE_TASKS["RTE"], "test", labelled=False)
    with pytest.raises(DataFileError, match="no such file"):
        read_glue_part(bad, GLUE_TASKS["RTE"], "dev_matched", labelled=True)


def test_submission_file_has_the_official_header_and_one_row_per_example(tmp_path):
    path = write_glue_submission(tmp_path, GLUE_TASKS["MNLI"], "-mm", ["0", "1", "2"], ["neutral", "entailment", "neutral"])
    assert path.name == "MNLI-mm.tsv"
    assert path.read_text().splitlines() == ["index\tprediction", "0\tneutral", "1\tentailment", "2\tneutral"]
    stsb = write_glue_submission(tmp_path, GLUE_TASKS["STS-B"], "", ["0", "1"], [1.23456, 4.0])
    assert stsb.read_text().splitlines() == ["index\tprediction", "0\t1.235", "1\t4.000"]
    with pytest.raises(ValueError, match="predictions: 1 for 2"):
        write_glue_submission(tmp_path, GLUE_TASKS["RTE"], "", ["0", "1"], ["entailment"])


def test_the_label_in_the_last_column_is_read_from_the_last_field(tmp_path):
    """A stray tab inside a sentence shifts the fields; the score (the last column) is still the last field."""
    folder = tmp_path / "STS-B"
    folder.mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (folder / "dev.tsv").write_text(head + "0\tg\tf\t2012\t0\tn\tn\ta man\ta\twoman\t3.200\n")
    part = read_glue_part(folder, GLUE_TASKS["STS-B"], "dev", labelled=True)
    assert part.labels == ["3.200"] and part.texts == ["a man"]
