"""WebDataset shards: every sample read once, ranks and DataLoader workers on disjoint shards, a
corrupt member named or skipped (with the workers' records gathered)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from hybridformer.data.bad_files import BadFileError, BadFiles
from hybridformer.data.formats import UserDataOptions, read_user_data
from hybridformer.data.webdataset_pairs import (WebDatasetPairs, count_samples, expand_shards, hold_out_shards,
                                                 rank_shards)
from user_files import shards


def _keys(dataset, workers: int = 0) -> list[str]:
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return [e.image_id for e in loader]


def test_brace_pattern_glob_and_folder_name_the_same_shards(tmp_path):
    pattern = shards(tmp_path / "s", 3, 2)
    names = expand_shards(pattern)
    assert [n.rsplit("/", 1)[1] for n in names] == ["000000.tar", "000001.tar", "000002.tar"]
    assert expand_shards(str(tmp_path / "s" / "*.tar")) == names == expand_shards(str(tmp_path / "s"))
    assert count_samples(names) == 6
    with pytest.raises(BadFileError, match=r"000003.tar: shard not found \(7 of the 10"):
        expand_shards(str(tmp_path / "s" / "{000000..000009}.tar"))


def test_two_ranks_read_disjoint_shards_that_cover_the_set(tmp_path):
    pattern = shards(tmp_path / "s", 4, 3)
    seen = [_keys(WebDatasetPairs(pattern, BadFiles(), size=8, rank=r, world_size=2)) for r in (0, 1)]
    shards_of = [{k.split(":")[0] for k in keys} for keys in seen]
    assert not (shards_of[0] & shards_of[1]) and len(shards_of[0]) == len(shards_of[1]) == 2
    everything = _keys(WebDatasetPairs(pattern, BadFiles(), size=8))
    assert sorted(seen[0] + seen[1]) == sorted(everything) and len(everything) == 12
    assert rank_shards(list("abcdefgh"), 1, 2, 1, 2) == ["d", "h"]


def test_two_workers_split_the_shards_and_read_each_sample_once(tmp_path):
    pattern = shards(tmp_path / "s", 4, 3)
    keys = _keys(WebDatasetPairs(pattern, BadFiles(), size=8), workers=2)
    assert len(keys) == len(set(keys)) == 12


def test_a_corrupt_member_is_named_or_skipped_in_the_workers(tmp_path):
    pattern = shards(tmp_path / "s", 2, 3, bad_member=(1, 2))
    with pytest.raises(BadFileError, match=r"000001.tar:001002.png: not an image"):
        _keys(WebDatasetPairs(pattern, BadFiles("error"), size=8))
    bad = BadFiles("skip", spool=tmp_path / "spool.jsonl")
    keys = _keys(WebDatasetPairs(pattern, bad, size=8), workers=2)
    assert len(keys) == 5
    summary = bad.summary()  # the record was written by a worker process, read back from the spool
    assert summary["count"] == 1 and summary["files"][0]["path"].endswith("000001.tar:001002.png")


def test_evaluation_reads_held_out_shards_that_training_never_sees(tmp_path):
    """The user-data split: the last tenth of the shards (at least one) is the evaluation set, read whole
    by every rank; training streams the rest; one shard alone is refused."""
    assert hold_out_shards(list("abcdefghijklmnopqrst")) == (list("abcdefghijklmnopqr"), ["s", "t"])
    assert hold_out_shards(["a", "b"]) == (["a"], ["b"])
    pattern = shards(tmp_path / "s", 3, 4)
    splits = read_user_data(pattern, "pairs", UserDataOptions(bad=BadFiles()), "webdataset")
    train = set(_keys(splits.train))
    test = {splits.test[i].image_id for i in range(len(splits.test))}
    assert {k.split(":")[0] for k in train} == set(expand_shards(pattern)[:2]) and len(train) == 8
    assert {k.split(":")[0] for k in test} == {expand_shards(pattern)[2]} and len(test) == 4
    rank1 = WebDatasetPairs(expand_shards(pattern)[2:], BadFiles(), rank=1, world_size=2, split_ranks=False)
    assert set(_keys(rank1)) == test  # an evaluation set is not dealt to the ranks
    with pytest.raises(BadFileError, match="one shard cannot be split into training and held-out"):
        read_user_data(shards(tmp_path / "one", 1, 4), "pairs", UserDataOptions(bad=BadFiles()), "webdataset")


def test_fewer_shards_than_ranks_is_refused(tmp_path):
    with pytest.raises(BadFileError, match="1 shard.*2 data-parallel ranks"):
        WebDatasetPairs(shards(tmp_path / "s", 1, 2), BadFiles(), rank=0, world_size=2)


def _read_as_rank(rank: int, world: int, pattern: str, port: int, out: str) -> None:
    import json
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dataset = WebDatasetPairs(pattern, BadFiles(), size=8)  # rank and world size from torch.distributed
        keys = _keys(dataset, workers=2)
        Path(out, f"rank{rank}.json").write_text(json.dumps({"keys": keys, "rank": dataset.rank, "world": dataset.world_size}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes with two DataLoader workers each: ~20 s here
def test_real_gloo_ranks_with_two_workers_each_read_disjoint_shards(tmp_path):
    import json
    import socket

    import torch.multiprocessing as mp

    pattern = shards(tmp_path / "s", 4, 3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_read_as_rank, args=(2, pattern, port, str(tmp_path)), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(s["rank"], s["world"]) for s in seen] == [(0, 2), (1, 2)]
    shards_of = [{k.split(":")[0] for k in s["keys"]} for s in seen]
    assert not (shards_of[0] & shards_of[1]) and len(shards_of[0] | shards_of[1]) == 4
    assert sorted(seen[0]["keys"] + seen[1]["keys"]) == sorted(_keys(WebDatasetPairs(pattern, BadFiles(), size=8)))
