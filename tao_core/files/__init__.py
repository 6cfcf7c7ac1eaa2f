"""Reading inputs and writing outputs safely: bounded, validated reads of JSON and CSV
(``inputs``), checked numbers and names (``values``), and outputs written whole or not at
all, never over what is not a regular file (``outputs``)."""
from tao_core.files.inputs import (
    MAX_CSV_FIELD, MAX_JSON_DEPTH, load_json_file, open_input_file, parse_json_text, read_csv, read_input_bytes,
    read_input_text,
)
from tao_core.files.outputs import (
    OutputSet, PendingOutput, StagedOutput, check_output_path, install_signal_cleanup, json_text, write_output,
)
from tao_core.files.values import name, number

__all__ = [
    "MAX_CSV_FIELD", "MAX_JSON_DEPTH", "load_json_file", "open_input_file", "parse_json_text", "read_csv", "read_input_bytes",
    "read_input_text",
    "OutputSet", "PendingOutput", "StagedOutput", "check_output_path", "install_signal_cleanup", "json_text",
    "write_output",
    "name", "number",
]
