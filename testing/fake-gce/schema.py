"""A validator for the JSON-schema dialect of Google's API discovery documents.

Discovery documents (https://developers.google.com/discovery/v1/reference/apis)
describe every request and response body with a small subset of JSON Schema
draft 3: ``type``, ``properties``, ``items``, ``additionalProperties``, ``enum``,
``format`` and ``$ref`` into the document's ``schemas``. This module checks a
JSON value against such a schema the way Google's front ends parse a body:

* an object may only carry the properties its schema names (or any key, with
  ``additionalProperties``) -- Google rejects unknown fields with HTTP 400;
* ``format: int64`` / ``uint64`` values travel as JSON *strings* of digits;
  ``int32`` / ``uint32`` as JSON numbers without a fraction;
* enum values must be one of the listed strings;
* ``type: any`` accepts everything.

``validate`` returns a list of problems, each naming the JSON path; an empty
list means the value is valid.
"""

import re

_INT64 = re.compile(r"^-?[0-9]+$")
_UINT64 = re.compile(r"^[0-9]+$")
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
_INT64_RANGES = {
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


class Validator:
    """Validates values against the schemas of one discovery document."""

    def __init__(self, document):
        self.schemas = document.get("schemas", {})

    def validate_ref(self, name, value, path="$"):
        """Problems of ``value`` against the named schema (``Instance``)."""
        if name not in self.schemas:
            return ["%s: unknown schema %r" % (path, name)]
        return self.validate(self.schemas[name], value, path)

    def validate(self, schema, value, path="$"):
        """Problems of ``value`` against ``schema`` (a discovery schema dict)."""
        problems = []
        self._check(schema, value, path, problems, depth=0)
        return problems

    def _check(self, schema, value, path, problems, depth):
        if depth > 64:
            problems.append("%s: schema nesting too deep" % path)
            return
        if "$ref" in schema:
            ref = schema["$ref"]
            target = self.schemas.get(ref)
            if target is None:
                problems.append("%s: unknown schema %r" % (path, ref))
                return
            self._check(target, value, path, problems, depth + 1)
            return
        kind = schema.get("type")
        if kind is None or kind == "any":
            return
        if kind == "object":
            self._object(schema, value, path, problems, depth)
        elif kind == "array":
            if not isinstance(value, list):
                problems.append("%s: expected an array, got %s" % (path, _name(value)))
                return
            items = schema.get("items")
            if items is not None:
                for i, item in enumerate(value):
                    self._check(items, item, "%s[%d]" % (path, i), problems, depth + 1)
        elif kind == "string":
            self._string(schema, value, path, problems)
        elif kind == "integer":
            self._integer(schema, value, path, problems)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append("%s: expected a number, got %s" % (path, _name(value)))
        elif kind == "boolean":
            if not isinstance(value, bool):
                problems.append("%s: expected a boolean, got %s" % (path, _name(value)))
        else:
            problems.append("%s: schema has unknown type %r" % (path, kind))

    def _object(self, schema, value, path, problems, depth):
        if not isinstance(value, dict):
            problems.append("%s: expected an object, got %s" % (path, _name(value)))
            return
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = "%s.%s" % (path, key)
            if key in props:
                self._check(props[key], item, where, problems, depth + 1)
            elif extra is not None:
                self._check(extra, item, where, problems, depth + 1)
            else:
                problems.append("%s: unknown field %r" % (path, key))

    def _string(self, schema, value, path, problems):
        fmt = schema.get("format")
        if not isinstance(value, str):
            if fmt in _INT64_RANGES and isinstance(value, int) and not isinstance(value, bool):
                problems.append(
                    "%s: %s values travel as JSON strings, got the number %r" % (path, fmt, value)
                )
            else:
                problems.append("%s: expected a string, got %s" % (path, _name(value)))
            return
        if fmt in _INT64_RANGES:
            pattern = _UINT64 if fmt == "uint64" else _INT64
            if not pattern.match(value):
                problems.append("%s: %r is not a %s" % (path, value, fmt))
                return
            low, high = _INT64_RANGES[fmt]
            if not low <= int(value) <= high:
                problems.append("%s: %s out of range for %s" % (path, value, fmt))
        enum = schema.get("enum")
        if enum is not None and value not in enum:
            problems.append("%s: %r is not one of %s" % (path, value, ", ".join(enum)))

    def _integer(self, schema, value, path, problems):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append("%s: expected an integer, got %s" % (path, _name(value)))
            return
        fmt = schema.get("format")
        if fmt in _INT_RANGES:
            low, high = _INT_RANGES[fmt]
            if not low <= value <= high:
                problems.append("%s: %d out of range for %s" % (path, value, fmt))
        minimum = schema.get("minimum")
        if minimum is not None and value < int(minimum):
            problems.append("%s: %d is below the minimum %s" % (path, value, minimum))


def _name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
