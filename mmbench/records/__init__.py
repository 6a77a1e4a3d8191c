"""Run records: the self-describing result file of every run (JSON Schema, atomic writes, paths), and what
it records about the world (environment, git state, dataset fingerprints).

`from mmbench.records import read_record` is public and stable (docs/plugins.md).
"""

from mmbench.records.run_record import (
    RECORD_FILENAME,
    SCHEMA_VERSION,
    isoformat,
    new_run_id,
    read_record,
    record_path,
    record_schema,
    safe_path_component,
    utc_now,
    validate_record,
    write_record,
)
from mmbench.records.unit_confusion import (
    UnitConfusionError,
    check_unit_confusion,
    decode_unit_confusion,
    encode_unit_confusion,
    record_unit_confusion,
)

__all__ = [
    "RECORD_FILENAME",
    "SCHEMA_VERSION",
    "UnitConfusionError",
    "check_unit_confusion",
    "decode_unit_confusion",
    "encode_unit_confusion",
    "isoformat",
    "new_run_id",
    "read_record",
    "record_path",
    "record_schema",
    "record_unit_confusion",
    "safe_path_component",
    "utc_now",
    "validate_record",
    "write_record",
]
