"""Unit tests of the discovery-schema validator: python3 -m unittest (from this folder)."""

import unittest

from schema import Validator

DOC = {
    "schemas": {
        "Thing": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "id": {"type": "string", "format": "uint64"},
                "delta": {"type": "string", "format": "int64"},
                "port": {"type": "integer", "format": "int32"},
                "count": {"type": "integer", "format": "uint32"},
                "ratio": {"type": "number", "format": "double"},
                "on": {"type": "boolean"},
                "kind": {"type": "string", "enum": ["A", "B"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "parts": {"type": "array", "items": {"$ref": "Part"}},
                "blob": {"type": "any"},
                "min": {"type": "integer", "minimum": "1"},
            },
        },
        "Part": {
            "type": "object",
            "properties": {"child": {"$ref": "Thing"}, "tag": {"type": "string"}},
        },
    }
}


class ValidatorTest(unittest.TestCase):
    def setUp(self):
        self.v = Validator(DOC)

    def problems(self, value):
        return self.v.validate_ref("Thing", value)

    def test_valid_object(self):
        value = {
            "name": "x",
            "id": "18446744073709551615",
            "delta": "-5",
            "port": 80,
            "count": 4294967295,
            "ratio": 0.5,
            "on": False,
            "kind": "B",
            "labels": {"a": "b"},
            "parts": [{"tag": "t", "child": {"name": "nested"}}],
            "blob": [1, {"x": None}],
            "min": 1,
        }
        self.assertEqual(self.problems(value), [])

    def test_unknown_field_is_refused(self):
        self.assertEqual(self.problems({"nmae": "x"}), ["$: unknown field 'nmae'"])

    def test_int64_must_be_a_string(self):
        (p,) = self.problems({"id": 5})
        self.assertIn("travel as JSON strings", p)
        (p,) = self.problems({"delta": "12a"})
        self.assertIn("is not a int64", p)
        (p,) = self.problems({"id": "-1"})
        self.assertIn("is not a uint64", p)
        (p,) = self.problems({"id": "18446744073709551616"})
        self.assertIn("out of range", p)

    def test_integers(self):
        self.assertIn("expected an integer", self.problems({"port": "80"})[0])
        self.assertIn("expected an integer", self.problems({"port": 1.5})[0])
        self.assertIn("expected an integer", self.problems({"port": True})[0])
        self.assertIn("out of range for int32", self.problems({"port": 2**31})[0])
        self.assertIn("out of range for uint32", self.problems({"count": -1})[0])
        self.assertIn("below the minimum", self.problems({"min": 0})[0])

    def test_enum(self):
        (p,) = self.problems({"kind": "C"})
        self.assertEqual(p, "$.kind: 'C' is not one of A, B")

    def test_types(self):
        self.assertIn("expected a boolean", self.problems({"on": "true"})[0])
        self.assertIn("expected a number", self.problems({"ratio": "1"})[0])
        self.assertIn("expected a string", self.problems({"name": None})[0])
        self.assertIn("expected an array", self.problems({"parts": {}})[0])
        self.assertIn("expected an object", self.v.validate_ref("Thing", [])[0])

    def test_additional_properties_and_refs_are_checked_deeply(self):
        self.assertEqual(
            self.problems({"labels": {"a": 1}}), ["$.labels.a: expected a string, got a number"]
        )
        self.assertEqual(
            self.problems({"parts": [{"child": {"kind": "Z"}}]}),
            ["$.parts[0].child.kind: 'Z' is not one of A, B"],
        )

    def test_every_problem_is_reported(self):
        self.assertEqual(len(self.problems({"x": 1, "y": 2, "port": "p"})), 3)

    def test_unknown_schema(self):
        self.assertEqual(self.v.validate_ref("Nope", {}), ["$: unknown schema 'Nope'"])


if __name__ == "__main__":
    unittest.main()
