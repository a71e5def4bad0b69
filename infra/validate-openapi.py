#!/usr/bin/env python3
"""Validates an OpenAPI 3.1 document with openapi-spec-validator (installed on demand)."""
import json
import subprocess
import sys

try:
    from openapi_spec_validator import validate
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "openapi-spec-validator>=0.7"])
    from openapi_spec_validator import validate

path = sys.argv[1]
with open(path) as f:
    doc = json.load(f)
if not str(doc.get("openapi", "")).startswith("3.1"):
    sys.exit(f"{path}: expected OpenAPI 3.1, found {doc.get('openapi')!r}")
validate(doc)
print(f"{path}: valid OpenAPI {doc['openapi']}")
