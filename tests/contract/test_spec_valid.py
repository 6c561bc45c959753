"""openapi.yaml is a valid OpenAPI 3.1 document."""

from __future__ import annotations

from pathlib import Path

import yaml
from openapi_spec_validator import validate

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_openapi_yaml_is_a_valid_openapi_3_1_document():
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.1")
    validate(document)
