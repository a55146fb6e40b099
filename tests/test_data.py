"""Loading MRPC from a local copy: each copy read as itself."""

import os
import shutil

import pandas as pd


def test_two_copies_named_alike_with_one_mtime_are_each_read_as_themselves(glue_dir, tmp_path):
    """datasets keys a local folder's cache on its name and the files' mtimes: a copy named ``glue``
    whose labels differ, with the same mtimes, was read back as the first copy's cache."""
    from bench.data import load_mrpc

    first, second = tmp_path / "a" / "glue", tmp_path / "b" / "glue"
    shutil.copytree(glue_dir, first)
    shutil.copytree(glue_dir, second)
    train = second / "mrpc" / "train-00000-of-00001.parquet"
    stat = train.stat()
    df = pd.read_parquet(train)
    df.loc[0, "label"] = 1 - df.loc[0, "label"]
    df.to_parquet(train)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same mtime as the first copy's file
    a, _ = load_mrpc(str(first))
    b, _ = load_mrpc(str(second))
    assert b["train"][0]["label"] == 1 - a["train"][0]["label"]
    assert sum(b["train"]["label"]) == sum(a["train"]["label"]) + (1 if b["train"][0]["label"] else -1)
