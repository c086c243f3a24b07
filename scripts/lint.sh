#!/usr/bin/env bash
# The lint and type gates CI runs before the tests: ruff (lint + format) over the tree, mypy (strict) over the package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy cds_service
