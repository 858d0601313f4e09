"""The HTTP API's request bodies, declared once: the handlers validate with them and ``GET /openapi.json`` is
generated from them, so the document cannot drift from what the server accepts.

A :class:`Body` is a list of :class:`Param`. ``Body.parse`` checks a decoded JSON object against it and returns
the values (absent optional ones as None); anything wrong raises :class:`BadRequest` with a sentence that names
the field. OpenAI fields this worker cannot honour (it decodes greedily, one answer per prompt, no stop strings)
are accepted only at the value that means "the default", so a client never gets silently other behaviour than
it asked for. Fields nobody declared are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BadRequest", "Body", "Param", "openapi"]


class BadRequest(Exception):
    """The request body is not what the endpoint expects (HTTP 400)."""


@dataclass(frozen=True)
class Param:
    """One field of a request body: its JSON schema, and the values this worker honours when it is limited."""

    name: str
    schema: dict
    description: str
    required: bool = False
    only: tuple = ()  # when set: the only values accepted (None = the field left out is always fine)
    why: str = ""  # the reason given when another value is sent

    def check(self, value):
        """The value, or BadRequest naming the field."""
        if not _matches(value, self.schema):
            raise BadRequest(f"'{self.name}' must be {_describe(self.schema)}.")
        if self.only and value not in self.only:
            raise BadRequest(f"'{self.name}' = {value!r} is not supported: {self.why}")
        return value


@dataclass(frozen=True)
class Body:
    """A request body: a JSON object with these fields."""

    name: str
    params: tuple[Param, ...]

    def parse(self, body: dict) -> dict:
        """The declared fields' values (None where an optional one is absent or null)."""
        values = {}
        for param in self.params:
            value = body.get(param.name)
            if value is None:
                if param.required:
                    raise BadRequest(f"'{param.name}' is required.")
                values[param.name] = None
                continue
            values[param.name] = param.check(value)
        return values

    def json_schema(self) -> dict:
        """The body as a JSON schema object (for the OpenAPI document)."""
        properties = {}
        for p in self.params:
            schema = dict(p.schema, description=p.description)
            if p.only:
                schema["enum"] = list(p.only)
            properties[p.name] = schema
        required = [p.name for p in self.params if p.required]
        return {"type": "object", "properties": properties, **({"required": required} if required else {})}


def _matches(value, schema: dict) -> bool:
    """A small JSON-schema check: type (with integer not bool), minimum/maximum, min/maxLength, min/maxItems,
    items, oneOf."""
    if "oneOf" in schema:
        return any(_matches(value, option) for option in schema["oneOf"])
    kind = schema.get("type")
    python = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
              "object": dict}[kind]
    if not isinstance(value, python) or (kind in ("integer", "number") and isinstance(value, bool)):
        return False
    if kind in ("integer", "number"):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            return False
    if kind == "string" and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return False
    if kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        return all(_matches(item, schema["items"]) for item in value) if "items" in schema else True
    return True


#: Each JSON type in words: (one value, several values)
_NOUNS = {"string": ("a string", "strings"), "integer": ("an integer", "integers"), "number": ("a number", "numbers"),
          "boolean": ("true or false", "true or false"), "array": ("a list", "lists"),
          "object": ("an object", "objects")}


def _describe(schema: dict, many: bool = False) -> str:
    """What a value of ``schema`` must be, in words ("a non-empty string"); ``many``: in the plural, for a list's
    items ("non-empty strings")."""
    if "oneOf" in schema:
        return " or ".join(_describe(option, many) for option in schema["oneOf"])
    kind = schema["type"]
    text = _NOUNS[kind][many]
    if kind == "string" and schema.get("minLength"):
        text = f"{'' if many else 'a '}non-empty {text.removeprefix('a ')}"
    if kind == "string" and "maxLength" in schema:
        text += f" of at most {schema['maxLength']} characters"
    if kind == "array" and "items" in schema:
        text = f"a list of {_describe(schema['items'], many=True)}"
        if schema.get("minItems"):
            text = "a non-empty " + text.removeprefix("a ")
        if schema.get("maxItems"):
            text += f" (at most {schema['maxItems']})"
    bounds = [f"at least {schema['minimum']}" if "minimum" in schema else "",
              f"at most {schema['maximum']}" if "maximum" in schema else ""]
    bounds = " and ".join(b for b in bounds if b)
    return f"{text} {bounds}" if bounds else text


def openapi(bodies: dict[str, tuple[Body, dict, str]], *, title: str, version: str, keyed: bool) -> dict:
    """An OpenAPI 3.1 document: ``bodies`` maps a POST path to (request body, response schema, summary)."""
    error = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": ["string", "null"]}}}}}
    paths = {}
    for path, (body, response, summary) in bodies.items():
        paths[path] = {"post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": f"#/components/schemas/{body.name}"}}}},
            "responses": {"200": {"description": "the answer", "content": {"application/json": {
                "schema": response}}},
                **{str(code): {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
                   for code, text in ((400, "bad JSON or a bad field"), (401, "missing or wrong API key"),
                                      (404, "unknown model"), (413, "the code is too large"),
                                      (503, "busy (see Retry-After) or shutting down"), (504, "timed out"))}},
        }}
    document = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": {"Error": error,
                                   **{body.name: body.json_schema() for body, _, _ in bodies.values()}}},
    }
    if keyed:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
