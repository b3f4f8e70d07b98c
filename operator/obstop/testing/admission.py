"""Offline admission of custom resources, as kube-apiserver does it for a CustomResourceDefinition.

The emulated API server calls this on every create/update/patch of a custom resource, and tests call it
directly. For one object it does what a real server does, in the same order:

1. structural pruning: fields the schema does not declare are dropped (unless under
   `x-kubernetes-preserve-unknown-fields`);
2. defaulting: absent fields with a `default` get it; `null` in a non-nullable field is replaced by the
   default or dropped;
3. validation: the OpenAPI v3 schema (with jsonschema, patterns as RE2 like Go), then the
   `x-kubernetes-list-type` set/map uniqueness, then the CEL `x-kubernetes-validations` (with cel-python, whose
   `matches()` is RE2 as well). CEL is skipped, as a real server skips it, when the object has a wrong type,
   an unsupported enum value, a missing required field or an over-long string or list. Transition rules
   (those using `oldSelf`) run on update only, where the old object has the field.
4. ratcheting (on update, as in Kubernetes >= 1.30): a violation in a part of the object that the update
   did not change is not reported, so a status write is never refused for its (unchanged) spec.

Errors are reported the way kube-apiserver reports them (`metav1.StatusCause`: field path, reason such as
`FieldValueInvalid`, message body such as `Invalid value: "x": ...`), and `to_status_body` builds the 422
Status a real server answers with.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import re2
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from jsonschema import validators

__all__ = ["AdmissionError", "Cause", "CrdValidator", "to_status_body"]

PathPart = str | int
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_BLOCKING_REASONS = frozenset(
    {
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
        "FieldValueTypeInvalid",
    }
)
_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
_OLD_SELF = re.compile(r"\boldSelf\b")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@dataclass
class Cause:
    """One violation, like metav1.StatusCause: `field` is the path (`spec.scope.target[1]`, `<nil>` for the
    root), `message` the error body (`Invalid value: "x": ...`), `reason` e.g. `FieldValueInvalid`."""

    field: str
    message: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class AdmissionError(Exception):
    """The object was refused; `causes` lists every violation. `str()` is kube-apiserver's 422 message."""

    def __init__(self, causes: list[Cause], *, kind: str = "", group: str = "", name: str = "") -> None:
        self.causes = causes
        self.kind = kind
        self.group = group
        self.name = name
        super().__init__(_invalid_message(kind, group, name, causes))

    def __str__(self) -> str:
        return _invalid_message(self.kind, self.group, self.name, self.causes)


def to_status_body(err: AdmissionError, kind: str, name: str) -> dict[str, Any]:
    """The metav1.Status of a 422 Invalid answer, as kube-apiserver sends it for `err`."""
    group = err.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": _invalid_message(kind, group, name, err.causes),
        "reason": "Invalid",
        "details": {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in err.causes],
        },
        "code": 422,
    }


def _invalid_message(kind: str, group: str, name: str, causes: list[Cause]) -> str:
    qualified = f"{kind}.{group}" if group and "." not in kind else kind
    texts = list(dict.fromkeys(str(c) for c in causes))  # the aggregate drops repeats, as Go's does
    body = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return f"{qualified} {json.dumps(name)} is invalid: {body}"


# ----------------------------------------------------------------------------------------------------------
# Internal violation record: where it is, and which node decides whether it is ratcheted away.


@dataclass
class _Violation:
    path: tuple[PathPart, ...]
    reason: str
    body: str
    ratchet_at: tuple[PathPart, ...] | None = None  # None: never ratcheted (transition rules)

    def cause(self) -> Cause:
        return Cause(field=_format_path(self.path), message=self.body, reason=self.reason)


def _format_path(path: tuple[PathPart, ...]) -> str:
    if not path:
        return "<nil>"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _go_value(value: Any) -> str:
    """A value as Go's field errors print it (%q for strings, %v for scalars, %#v for the rest)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_value(v) for v in value) + "}"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))}:{_go_value(v)}" for k, v in value.items())
        return "map[string]interface {}{" + items + "}"
    return json.dumps(str(value))


def _invalid(path: tuple[PathPart, ...], value: Any, detail: str, ratchet_at: Any = ...) -> _Violation:
    at = path if ratchet_at is ... else ratchet_at
    return _Violation(path, "FieldValueInvalid", f"Invalid value: {_go_value(value)}: {detail}", at)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ----------------------------------------------------------------------------------------------------------
# OpenAPI v3 (the Kubernetes subset) -> JSON Schema draft 4, which has OpenAPI 3.0's boolean exclusiveMinimum.

_COPIED_KEYWORDS = (
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
    "format",
)


def _to_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: copy.deepcopy(schema[key]) for key in _COPIED_KEYWORDS if key in schema}
    nullable = bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}] + ([{"type": "null"}] if nullable else [])
    elif "type" in schema:
        out["type"] = [schema["type"], "null"] if nullable else schema["type"]
    if nullable and "enum" in out:
        out["enum"] = [*out["enum"], None]
    if "properties" in schema:
        out["properties"] = {name: _to_json_schema(sub) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("items"), Mapping):
        out["items"] = _to_json_schema(schema["items"])
    additional = schema.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = _to_json_schema(additional)
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in schema:
            out.setdefault("allOf", []).append({combinator: [_to_json_schema(s) for s in schema[combinator]]})
    if "not" in schema:
        out["not"] = _to_json_schema(schema["not"])
    return out


def _re2_pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    # Kubernetes matches `pattern` with Go's regexp (RE2), unanchored: so do we.
    if isinstance(instance, str) and not re2.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_FORMATS = jsonschema.FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return False
    return True


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2**31) <= value < 2**31


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63


_FORMATS.checkers.update(
    {"date-time": (_is_date_time, ()), "int32": (_is_int32, ()), "int64": (_is_int64, ())}
)
_Validator = validators.extend(jsonschema.Draft4Validator, {"pattern": _re2_pattern})


def _schema_violation(error: jsonschema.ValidationError) -> _Violation:
    """Map one jsonschema error to the field error kube-apiserver reports for it."""
    path = tuple(error.absolute_path)
    name = _format_path(path)
    value = error.instance
    keyword = error.validator
    expected = error.validator_value
    if keyword == "required":
        missing = next((r for r in expected if isinstance(value, dict) and r not in value), "")
        return _Violation((*path, missing), "FieldValueRequired", "Required value", path)
    if keyword == "type":
        wanted = ",".join(t for t in ([expected] if isinstance(expected, str) else expected) if t != "null")
        detail = f'{name} in body must be of type {wanted}: "{_json_type(value)}"'
        return _Violation(path, "FieldValueTypeInvalid", f"Invalid value: {_go_value(value)}: {detail}", path)
    if keyword == "format":
        detail = f"{name} in body must be of type {expected}: {json.dumps(str(value))}"
        return _Violation(path, "FieldValueTypeInvalid", f"Invalid value: {_go_value(value)}: {detail}", path)
    if keyword == "enum":
        supported = ", ".join(_go_value(v) for v in expected if v is not None)
        body = f"Unsupported value: {_go_value(value)}: supported values: {supported}"
        return _Violation(path, "FieldValueNotSupported", body, path)
    if keyword == "maxLength":
        return _Violation(path, "FieldValueTooLong", f"Too long: may not be more than {expected} bytes", path)
    if keyword == "maxItems":
        body = f"Too many: {len(value)}: must have at most {expected} items"
        return _Violation(path, "FieldValueTooMany", body, path)
    details = {
        "pattern": f"{name} in body should match '{expected}'",
        "minLength": f"{name} in body should be at least {expected} chars long",
        "minItems": f"{name} in body should have at least {expected} items",
        "minimum": f"{name} in body should be greater than "
        f"{'' if error.schema.get('exclusiveMinimum') else 'or equal to '}{expected}",
        "maximum": f"{name} in body should be less than "
        f"{'' if error.schema.get('exclusiveMaximum') else 'or equal to '}{expected}",
        "multipleOf": f"{name} in body should be a multiple of {expected}",
        "uniqueItems": f"{name} in body shouldn't contain duplicates",
    }
    return _invalid(path, value, details.get(str(keyword), f"{name} in body: {error.message}"))


# ----------------------------------------------------------------------------------------------------------
# Schema walks: pruning, defaulting, list types.


def _prune(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or isinstance(
            additional, Mapping
        )
        keep_meta = root or bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            if key in properties:
                if not (keep_meta and key == "metadata"):
                    _prune(value[key], properties[key])
            elif keep_meta and key in _ROOT_FIELDS:
                continue
            elif isinstance(additional, Mapping):
                _prune(value[key], additional)
            elif not keep_unknown:
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _prune(item, schema["items"])


def _default(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if (key not in value or value[key] is None) and "default" in sub:
                if key not in value or not sub.get("nullable"):
                    value[key] = copy.deepcopy(sub["default"])
            elif key in value and value[key] is None and not sub.get("nullable"):
                del value[key]  # a null in a non-nullable field without a default is dropped
            if key in value:
                _default(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key in list(value):
                if key not in schema.get("properties", {}):
                    _default(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default(item, schema["items"])


def _map_key(item: Any, keys: list[str], item_schema: Mapping[str, Any]) -> dict[str, Any]:
    props = item_schema.get("properties", {})
    return {k: item.get(k, props.get(k, {}).get("default")) if isinstance(item, dict) else None for k in keys}


def _list_type_violations(
    value: Any, schema: Mapping[str, Any], path: tuple[PathPart, ...]
) -> Iterator[_Violation]:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from _list_type_violations(value[key], sub, (*path, key))
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key, item in value.items():
                if key not in schema.get("properties", {}):
                    yield from _list_type_violations(item, additional, (*path, key))
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        item_schema = schema.get("items", {})
        seen: list[Any] = []
        for index, item in enumerate(value):
            ident = (
                _map_key(item, schema.get("x-kubernetes-list-map-keys", []), item_schema)
                if list_type == "map"
                else item
            )
            if list_type in ("set", "map"):
                if ident in seen:
                    yield _Violation(
                        (*path, index), "FieldValueDuplicate", f"Duplicate value: {_go_value(ident)}", path
                    )
                seen.append(ident)
            yield from _list_type_violations(item, item_schema, (*path, index))


# ----------------------------------------------------------------------------------------------------------
# CEL


@dataclass
class _Rule:
    rule: str
    program: Any
    message: str
    message_program: Any | None
    field_path: tuple[PathPart, ...]
    reason: str
    transition: bool


@dataclass
class _Version:
    schema: dict[str, Any]
    validator: Any
    rules: dict[int, list[_Rule]] = field(default_factory=dict)  # id(schema node) -> its rules


_FIELD_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]")


def _parse_field_path(text: str) -> tuple[PathPart, ...]:
    parts: list[PathPart] = []
    position = 0
    while position < len(text):
        match = _FIELD_PATH_PART.match(text, position)
        if not match:
            raise ValueError(f"fieldPath {text!r} is not a valid JSON path")
        name, index, quoted = match.groups()
        parts.append(int(index) if index is not None else (name if name is not None else quoted))
        position = match.end()
    return tuple(parts)


def _compile_rules(schema: Mapping[str, Any], env: Any, into: dict[int, list[_Rule]], where: str) -> None:
    rules = []
    for spec in schema.get("x-kubernetes-validations", []):
        text = spec["rule"]
        try:
            program = env.program(env.compile(text))
            message_program = (
                env.program(env.compile(spec["messageExpression"])) if spec.get("messageExpression") else None
            )
        except Exception as exc:
            raise ValueError(f"{where}: CEL rule {text!r} does not compile: {exc}") from exc
        rules.append(
            _Rule(
                rule=text,
                program=program,
                message=spec.get("message") or f"failed rule: {text}",
                message_program=message_program,
                field_path=_parse_field_path(spec.get("fieldPath", "")),
                reason=spec.get("reason", "FieldValueInvalid"),
                transition=bool(_OLD_SELF.search(text)),
            )
        )
    if rules:
        into[id(schema)] = rules
    for key, sub in schema.get("properties", {}).items():
        _compile_rules(sub, env, into, f"{where}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            _compile_rules(schema[key], env, into, f"{where}.{key}")


def _evaluate(program: Any, activation: dict[str, Any]) -> Any:
    try:
        return program.evaluate(activation)
    except CELEvalError as exc:
        return exc
    except Exception as exc:  # cel-python raises plain Python errors for some unsupported overloads
        return CELEvalError(str(exc))


_MISSING = object()


def _cel_violations(
    value: Any,
    old: Any,
    schema: Mapping[str, Any],
    path: tuple[PathPart, ...],
    rules: dict[int, list[_Rule]],
) -> Iterator[_Violation]:
    if value is None:
        return
    for rule in rules.get(id(schema), []):
        if rule.transition and (old is _MISSING or old is None):
            continue  # transition rules need the old value: skipped on create, as a real server does
        activation = {"self": json_to_cel(value)}
        if rule.transition:
            activation["oldSelf"] = json_to_cel(old)
        result = _evaluate(rule.program, activation)
        at = None if rule.transition else path
        where = (*path, *rule.field_path)
        type_name = schema.get("type", "object")
        if isinstance(result, CELEvalError):
            yield _invalid(
                where, type_name, f"rule {rule.rule!r} could not be evaluated: {result.args[0]}", at
            )
        elif not bool(result):
            message = rule.message
            if rule.message_program is not None:
                custom = _evaluate(rule.message_program, activation)
                if isinstance(custom, str) and custom.strip():
                    message = str(custom)
            yield _rule_violation(where, type_name, message, rule.reason, at)
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from _cel_violations(value[key], old_map.get(key, _MISSING), sub, (*path, key), rules)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key, item in value.items():
                if key not in schema.get("properties", {}):
                    yield from _cel_violations(
                        item, old_map.get(key, _MISSING), additional, (*path, key), rules
                    )
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        item_schema = schema["items"]
        old_items = _correlate_items(value, old, schema)
        for index, item in enumerate(value):
            yield from _cel_violations(item, old_items[index], item_schema, (*path, index), rules)


def _correlate_items(value: list[Any], old: Any, schema: Mapping[str, Any]) -> list[Any]:
    """Old values for a list's items: by key for list-type map, by value for set, none for atomic lists."""
    if not isinstance(old, list):
        return [_MISSING] * len(value)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        return [item if item in old else _MISSING for item in value]
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        item_schema = schema.get("items", {})
        by_key = [(_map_key(o, keys, item_schema), o) for o in old]
        found = []
        for item in value:
            ident = _map_key(item, keys, item_schema)
            found.append(next((o for k, o in by_key if k == ident), _MISSING))
        return found
    return [_MISSING] * len(value)


def _rule_violation(
    path: tuple[PathPart, ...], type_name: str, message: str, reason: str, at: tuple[PathPart, ...] | None
) -> _Violation:
    if reason == "FieldValueForbidden":
        return _Violation(path, reason, f"Forbidden: {message}", at)
    if reason == "FieldValueRequired":
        return _Violation(path, reason, f"Required value: {message}", at)
    if reason == "FieldValueDuplicate":
        return _Violation(path, reason, f"Duplicate value: {_go_value(type_name)}", at)
    return _invalid(path, type_name, message, at)


# ----------------------------------------------------------------------------------------------------------


def _lookup(obj: Any, path: tuple[PathPart, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(obj, list) or part >= len(obj):
                return _MISSING
            obj = obj[part]
        else:
            if not isinstance(obj, dict) or part not in obj:
                return _MISSING
            obj = obj[part]
    return obj


def _ratcheted(violation: _Violation, new: Any, old: Any) -> bool:
    """True if the violation sits in a part of the object that this update left unchanged."""
    if old is None or violation.ratchet_at is None:
        return False
    before = _lookup(old, violation.ratchet_at)
    return before is not _MISSING and before == _lookup(new, violation.ratchet_at)


class CrdValidator:
    """Admission for the custom resources of one CustomResourceDefinition (apiextensions.k8s.io/v1)."""

    def __init__(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        self.group: str = spec["group"]
        self.kind: str = spec["names"]["kind"]
        self._versions: dict[str, _Version] = {}
        self._storage = ""
        env = celpy.Environment()
        for version in spec["versions"]:
            schema = copy.deepcopy(version.get("schema", {}).get("openAPIV3Schema", {"type": "object"}))
            json_schema = _to_json_schema(schema)
            _Validator.check_schema(json_schema)
            compiled = _Version(schema, _Validator(json_schema, format_checker=_FORMATS))
            _compile_rules(schema, env, compiled.rules, f"{version['name']}.openAPIV3Schema")
            self._versions[version["name"]] = compiled
            if version.get("storage"):
                self._storage = version["name"]
        if not self._storage:
            self._storage = spec["versions"][0]["name"]

    @classmethod
    def from_file(cls, path: str | Path) -> CrdValidator:
        """Load the CRD from a YAML (or JSON) file holding exactly one CustomResourceDefinition."""
        with open(path, encoding="utf-8") as stream:
            documents = [doc for doc in yaml.safe_load_all(stream) if doc]
        crds = [doc for doc in documents if doc.get("kind") == "CustomResourceDefinition"]
        if len(crds) != 1:
            raise ValueError(f"{path}: expected one CustomResourceDefinition, found {len(crds)}")
        return cls(crds[0])

    def admit(
        self,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Return `obj` as a real server would store it (pruned, defaulted), or raise AdmissionError.

        `old` is the stored object on update (None on create). With `subresource="status"`, only `.status`
        is taken from `obj` (and `.metadata`, which is the caller's business); everything else comes from
        `old`, so only the status change is validated.
        """
        version = self._version_of(obj)
        new = copy.deepcopy(dict(obj))
        if subresource == "status":
            if old is None:
                raise ValueError("a status update needs the old object")
            merged = {k: copy.deepcopy(v) for k, v in old.items() if k not in ("status", "metadata")}
            merged["metadata"] = new.get("metadata", copy.deepcopy(old.get("metadata", {})))
            if "status" in new:
                merged["status"] = new["status"]
            new = merged
        elif subresource is not None:
            raise ValueError(f"unsupported subresource {subresource!r}")
        _prune(new, version.schema, root=True)
        _default(new, version.schema)
        previous = None
        if old is not None:
            previous = copy.deepcopy(dict(old))
            _prune(previous, version.schema, root=True)
            _default(previous, version.schema)

        violations = [_schema_violation(e) for e in version.validator.iter_errors(_without_metadata(new))]
        violations += list(_list_type_violations(new, version.schema, ()))
        violations = [v for v in violations if not _ratcheted(v, new, previous)]
        if any(v.reason in _BLOCKING_REASONS for v in violations):
            violations.append(_Violation((), "FieldValueInvalid", f'Invalid value: "null": {_NOT_CHECKED}'))
        else:
            old_root = previous if previous is not None else _MISSING
            cel = _cel_violations(new, old_root, version.schema, (), version.rules)
            violations += [v for v in cel if not _ratcheted(v, new, previous)]
        if violations:
            name = str(new.get("metadata", {}).get("name") or "")
            raise AdmissionError([v.cause() for v in violations], kind=self.kind, group=self.group, name=name)
        return new

    def _version_of(self, obj: Mapping[str, Any]) -> _Version:
        api_version = str(obj.get("apiVersion", ""))
        group, _, name = api_version.rpartition("/")
        if group == self.group and name in self._versions:
            return self._versions[name]
        return self._versions[self._storage]


def _without_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    # ObjectMeta is validated by the API server's generic code, not by the CRD's schema.
    return {k: v for k, v in obj.items() if k != "metadata"}
