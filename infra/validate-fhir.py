#!/usr/bin/env python3
"""Validate FHIR R4 (4.0.1) JSON resources: exit 0 if every file parses as its resource type
under the FHIR R4 structure definitions (fhir.resources 6.1.x models), 1 otherwise.

Usage: validate-fhir.py FILE...   (run with the interpreter of `make fhir-validator`)
"""
import json
import sys

from fhir.resources import __fhir_version__, construct_fhir_element

if __fhir_version__ != "4.0.1":
    sys.exit(f"expected FHIR 4.0.1 models, found {__fhir_version__}")

failed = False
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    try:
        construct_fhir_element(doc["resourceType"], doc)
        print(f"{path}: valid FHIR R4 {doc['resourceType']}")
    except Exception as e:  # the validation error lists every problem
        failed = True
        print(f"{path}: INVALID {doc.get('resourceType')}: {e}")
sys.exit(1 if failed else 0)
