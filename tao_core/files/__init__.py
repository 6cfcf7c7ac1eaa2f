"""Reading inputs and writing outputs safely: bounded, validated reads (``inputs``) and
outputs written whole or not at all, never over what is not a regular file (``outputs``)."""
from tao_core.files.inputs import (
    MAX_JSON_DEPTH, load_json_file, open_input_file, parse_json_text, read_input_bytes, read_input_text,
)
from tao_core.files.outputs import (
    OutputSet, PendingOutput, check_output_path, install_signal_cleanup, write_output,
)

__all__ = [
    "MAX_JSON_DEPTH", "load_json_file", "open_input_file", "parse_json_text", "read_input_bytes", "read_input_text",
    "OutputSet", "PendingOutput", "check_output_path", "install_signal_cleanup", "write_output",
]
