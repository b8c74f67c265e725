"""Reads the parquet files under an S3 prefix as their readers would, for the parquet sink's
end-to-end test: pyarrow's dataset straight from S3 (hive partitioning), and DuckDB's
read_parquet('<dir>/**/*.parquet') on a local copy of every object under the prefix (staged
ones included: they must not count). Prints JSON: the keys of the objects, and each reader's
rows as [item_id, window_end, click_count, dt].

usage: read_parquet.py ENDPOINT BUCKET/PREFIX ACCESS_KEY SECRET_KEY
"""

import json
import sys
import tempfile
from urllib.parse import urlparse

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs

endpoint, prefix, access_key, secret_key = sys.argv[1:5]
url = urlparse(endpoint)
s3 = pafs.S3FileSystem(
    access_key=access_key,
    secret_key=secret_key,
    endpoint_override=url.netloc,
    scheme=url.scheme,
    region="us-east-1",
)
listed = s3.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
keys = sorted(i.path[len(prefix) + 1 :] for i in listed if i.type == pafs.FileType.File)

columns = ["item_id", "window_end", "click_count", "dt"]
if any(k.endswith(".parquet") for k in keys):
    dataset = ds.dataset(prefix, filesystem=s3, format="parquet", partitioning="hive")
    table = dataset.to_table(columns=columns)
    by_pyarrow = [[r[c] for c in columns[:3]] + [str(r["dt"])] for r in table.to_pylist()]
else:
    by_pyarrow = []

with tempfile.TemporaryDirectory() as local:
    pafs.copy_files(prefix, local, source_filesystem=s3)
    if any(k.endswith(".parquet") for k in keys):
        query = f"""SELECT item_id, window_end, click_count, CAST(dt AS VARCHAR)
                    FROM read_parquet('{local}/**/*.parquet', hive_partitioning = true,
                                      hive_types_autocast = false)"""
        by_duckdb = [list(r) for r in duckdb.sql(query).fetchall()]
    else:
        by_duckdb = []

print(json.dumps({"keys": keys, "pyarrow": by_pyarrow, "duckdb": by_duckdb}))
