#!/usr/bin/env bash
# Ask a running `mafioso worker` to explain a file with curl (POST /v1/explain), printing the JSON answer.
#   mafioso worker &
#   bash examples/client_curl.sh examples/fizzbuzz.py ["is there a bug?"]
# MAFIOSO_URL (default http://127.0.0.1:8000) and MAFIOSO_API_KEY are read from the environment.
set -euo pipefail
url="${MAFIOSO_URL:-http://127.0.0.1:8000}"
body=$(python3 -c 'import json, sys; print(json.dumps({"code": open(sys.argv[1]).read(), "request": sys.argv[2]}))' \
       "$1" "${2:-Explain this code.}")
curl --silent --show-error --fail-with-body "$url/v1/explain" \
     -H "Content-Type: application/json" ${MAFIOSO_API_KEY:+-H "Authorization: Bearer $MAFIOSO_API_KEY"} \
     -d "$body"
echo
