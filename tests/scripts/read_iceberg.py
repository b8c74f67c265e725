"""Reads an Iceberg table as its users would, for the iceberg sink's end-to-end tests:
pyiceberg's SqlCatalog on the catalog the sink wrote (a SQLAlchemy URI: sqlite:////path or
postgresql+psycopg2://…), the table's current snapshot scanned into Arrow (data files read by
pyarrow, from S3 or a directory). Prints JSON: the table's rows as
[item_id, window_end, click_count], its snapshots' summaries oldest first, the paths of its
data files and its partition fields as [name, transform]. A missing table prints no rows.

With MIN_CLICKS, also the rows of a scan filtered on click_count >= MIN_CLICKS: pyiceberg
skips data files by the bounds their manifests give, so wrong bounds lose rows there.

usage: read_iceberg.py CATALOG_URI WAREHOUSE TABLE [MIN_CLICKS] [ENDPOINT ACCESS_KEY SECRET_KEY]
"""

import json
import sys
from datetime import datetime, timezone

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError

uri, warehouse, table_name, min_clicks = sys.argv[1:5]
s3 = {}
if len(sys.argv) > 5:
    endpoint, access_key, secret_key = sys.argv[5:8]
    s3 = {
        "s3.endpoint": endpoint,
        "s3.access-key-id": access_key,
        "s3.secret-access-key": secret_key,
        "s3.region": "us-east-1",
    }
catalog = SqlCatalog("kappa", uri=uri, warehouse=warehouse, **s3)
try:
    table = catalog.load_table(table_name)
except NoSuchTableError:
    print(json.dumps({"rows": [], "filtered": [], "snapshots": [], "files": [], "spec": []}))
    sys.exit(0)

columns = ["item_id", "window_end", "click_count"]


def plain(v):
    """A timestamp (Iceberg's `timestamp`: UTC without a zone) as epoch milliseconds."""
    if isinstance(v, datetime):
        return int(v.replace(tzinfo=timezone.utc).timestamp() * 1000)
    return v


scan = table.scan(selected_fields=tuple(columns))
rows = [[plain(r[c]) for c in columns] for r in scan.to_arrow().to_pylist()]
filtered = []
if min_clicks:
    kept = table.scan(row_filter=f"click_count >= {int(min_clicks)}", selected_fields=tuple(columns))
    filtered = [[plain(r[c]) for c in columns] for r in kept.to_arrow().to_pylist()]
snapshots = sorted(table.snapshots(), key=lambda s: s.sequence_number)
summaries = [dict(s.summary.additional_properties) for s in snapshots]
files = sorted(task.file.file_path for task in table.scan().plan_files())
spec = [[f.name, str(f.transform)] for f in table.spec().fields]
print(json.dumps({"rows": rows, "filtered": filtered, "snapshots": summaries, "files": files, "spec": spec}))
