#!/bin/sh
# Regenerate src/opq/protocol/opqbox3_pb2.py and .pyi from opqbox3.proto (needs the dev extras).
set -eu
cd "$(dirname "$0")/.."
VENV_BIN="${VENV_BIN:-.venv/bin}"
"$VENV_BIN/python" -m grpc_tools.protoc --proto_path=src \
    --plugin=protoc-gen-mypy="$VENV_BIN/protoc-gen-mypy" \
    --python_out=src --mypy_out=src src/opq/protocol/opqbox3.proto
