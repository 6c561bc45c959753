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


class _StrictLoader(yaml.SafeLoader):
    """Refuses a key repeated in one mapping, which PyYAML otherwise keeps the
    last of silently, and Swagger UI refuses to render at all."""


def _no_repeated_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        assert key not in seen, f"{key!r} repeated at line {key_node.start_mark.line + 1}"
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_repeated_keys)


def test_openapi_yaml_repeats_no_key():
    yaml.load(SPEC.read_text(encoding="utf-8"), Loader=_StrictLoader)
