"""Request parameters, each defined once: how a server reads it from a query string or form,
how a client writes it, and how the OpenAPI document describes it.

One rule for every kind of value, wherever it arrives (the site's pages and JSON API, the
recommender server):

* a whole number is 1 to 19 ASCII digits within its bounds. ``str.isdigit`` is not the test:
  it accepts "²" and "¹⁹⁹⁰", which ``int()`` then refuses (a 500), and ``int()`` itself
  accepts fullwidth "５" and Arabic-Indic "١": a value that prints differently from the
  number it stands for is refused, not guessed at;
* text holds no control characters (PostgreSQL refuses a NUL in a string; the others can only
  be mischief) and is at most so many characters long, never silently cut;
* a missing or empty parameter takes its default (or is reported missing when required).

Every problem of a request is reported together in one :class:`BadInput`, whose message is
what a person or a client sees in the 400 answer. Messages quote at most :data:`QUOTE` of a
bad value, so an answer never echoes a huge one back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.routing import BaseConverter, ValidationError

from movierec.errors import BadInput

MAX_ID = 2**63 - 1  # PostgreSQL's bigint: ids beyond it are misses, not database errors
QUOTE = 40
_WHOLE = re.compile(r"[0-9]{1,19}")
# Control characters (Unicode Cc) and lone surrogates (Cs), except the whitespace among them,
# which str.split() folds into spaces: as code point ranges, for Python's regex and for the
# OpenAPI document's (ECMA-262) patterns alike.
_CONTROL_RANGES = ((0x00, 0x08), (0x0E, 0x1B), (0x7F, 0x84), (0x86, 0x9F))
_SURROGATES = (0xD800, 0xDFFF)
_CONTROL = re.compile(
    "[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in (*_CONTROL_RANGES, _SURROGATES)) + "]"
)
# In the document without the surrogates: no UTF-8 request can carry one, and a generator
# (schemathesis) drops a pattern that names them.
NO_CONTROL = "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in _CONTROL_RANGES)


class Problem(ValueError):
    """One parameter's value is unusable; the message names the parameter and the rule."""


@dataclass(frozen=True)
class Param:
    """A query parameter. Subclasses read and write one kind of value."""

    name: str
    description: str = ""
    required: bool = False
    default: Any = None

    def read(self, raw: str) -> Any:
        """The value of a non-empty ``raw``. Raises :class:`Problem`."""
        raise NotImplementedError

    def write(self, value: Any) -> str:
        """``value`` as the query string carries it (what :meth:`read` reads back)."""
        return str(value)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the value, for the OpenAPI document."""
        raise NotImplementedError

    def openapi(self) -> list[dict[str, Any]]:
        """This parameter's OpenAPI parameter objects (one, except for composite ones)."""
        schema = self.schema()
        if self.default is not None:
            schema["default"] = self.default
        found = {"name": self.name, "in": "query", "required": self.required, "schema": schema}
        if not self.required:
            found["allowEmptyValue"] = True  # empty is absent: a form's blank field, say
        if self.description:
            found["description"] = self.description
        return [found]

    def take(self, args: Mapping[str, str]) -> Any:
        """The value in ``args`` (the default when absent or empty). Raises :class:`Problem`."""
        raw = args.get(self.name) or ""
        if not raw:
            if self.required:
                raise Problem(f"{self.name} is missing")
            return self.default
        return self.read(raw)

    def put(self, value: Any) -> dict[str, str]:
        """``value`` as query fields (none for None: the server takes the default)."""
        return {} if value is None else {self.name: self.write(value)}


@dataclass(frozen=True)
class Integer(Param):
    """A whole number from ``low`` to ``high`` (ASCII digits only)."""

    low: int = 1
    high: int = MAX_ID

    def read(self, raw: str) -> int:
        return whole_number(raw, self.name, self.low, self.high)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Text(Param):
    """Free text of at most ``max_chars`` characters, runs of whitespace made one space."""

    max_chars: int = 200
    default: Any = ""

    def read(self, raw: str) -> str:
        return text(raw, self.name, self.max_chars)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": self.max_chars, "pattern": f"^[^{NO_CONTROL}]*$"}

    def put(self, value: Any) -> dict[str, str]:
        return {self.name: value} if value else {}


@dataclass(frozen=True)
class Choice(Param):
    """One of ``choices``, exactly as written."""

    choices: tuple[str, ...] = ()

    def read(self, raw: str) -> str:
        if raw not in self.choices:
            raise Problem(f"unknown {self.name} {quote(raw)}")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Listed(Param):
    """Comma-separated values, at most ``max_items`` of them (empty items are skipped).

    Described in OpenAPI as what travels, a string, with a pattern of ``item_pattern``s:
    an array's item schema is not honoured by generators of comma-joined query values."""

    max_items: int = 1000
    default: Any = ()

    def item(self, raw: str) -> Any:
        raise NotImplementedError

    def item_pattern(self) -> str:
        """A regular expression (no anchors) that only valid items match."""
        raise NotImplementedError

    def read(self, raw: str) -> tuple:
        parts = [part for part in raw.split(",") if part]
        if len(parts) > self.max_items:
            raise Problem(f"{self.name} lists more than {self.max_items} values")
        return tuple(self.item(part) for part in parts)

    def write(self, value: Any) -> str:
        return ",".join(str(v) for v in list(value)[: self.max_items])

    def put(self, value: Any) -> dict[str, str]:
        return {self.name: self.write(value)} if value else {}

    def schema(self) -> dict[str, Any]:
        # Their number is said in words: a counted repetition ({0,999}) in the pattern made
        # generating requests that break it take minutes.
        item = self.item_pattern()
        return {"type": "string", "pattern": f"^({item}(,{item})*)?$"}

    def openapi(self) -> list[dict[str, Any]]:
        found = super().openapi()
        found[0]["schema"].pop("default", None)
        found[0]["description"] = f"{self.description} Comma-separated, at most {self.max_items}."
        return found


@dataclass(frozen=True)
class Ids(Listed):
    """Comma-separated ids (whole numbers from 1)."""

    def item(self, raw: str) -> int:
        return whole_number(raw, self.name, 1, MAX_ID, listed=True)

    def item_pattern(self) -> str:
        return "[1-9][0-9]{0,17}"  # within MAX_ID (which has 19 digits)


@dataclass(frozen=True)
class Words(Listed):
    """Comma-separated words of at most ``max_chars`` characters each (blank ones skipped)."""

    max_chars: int = 64

    def read(self, raw: str) -> tuple:
        return tuple(word for word in super().read(raw) if word)

    def item(self, raw: str) -> str:
        return text(raw, self.name, self.max_chars)

    def item_pattern(self) -> str:
        return f"[^,{NO_CONTROL}]{{1,{self.max_chars}}}"


@dataclass(frozen=True)
class ShardOf(Param):
    """A shard as two parameters, ``shard=i&shards=n`` (both or neither; ``0 <= i < n``).
    Read as the pair ``(i, n)``; the recommender turns it into its own shard type."""

    name: str = "shard"
    count_name: str = "shards"
    most: int = 4096

    def take(self, args: Mapping[str, str]) -> tuple[int, int] | None:
        given = [name for name in (self.name, self.count_name) if args.get(name)]
        if not given:
            return None
        if len(given) == 1:
            raise Problem(f"{self.name} and {self.count_name} must be given together")
        count = whole_number(args[self.count_name], self.count_name, 1, self.most)
        return whole_number(args[self.name], self.name, 0, count - 1), count

    def put(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        index, count = value
        return {self.name: str(index), self.count_name: str(count)}

    def openapi(self) -> list[dict[str, Any]]:
        return [
            {
                "name": self.name,
                "in": "query",
                "required": False,
                "allowEmptyValue": True,
                "description": f"Only this shard's movies (with {self.count_name}; "
                f"movie_id % {self.count_name} == {self.name}).",
                "schema": {"type": "integer", "minimum": 0, "maximum": self.most - 1},
            },
            {
                "name": self.count_name,
                "in": "query",
                "required": False,
                "allowEmptyValue": True,
                "description": f"How many shards there are (with {self.name}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.most},
            },
        ]


def read_args(params: Sequence[Param], args: Mapping[str, str]) -> dict[str, Any]:
    """Every parameter of ``params`` from ``args``, by name. Raises :class:`BadInput` naming
    every problem found."""
    values, problems = read_valid(params, args)
    if problems:
        raise BadInput("; ".join(problems))
    return values


def read_valid(
    params: Sequence[Param], args: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The parameters of ``params`` that ``args`` gives usably (by name; the others left out)
    and the problems with the others: for a page that answers what it understood."""
    values, problems = {}, []
    for param in params:
        try:
            values[param.name] = param.take(args)
        except Problem as exc:
            problems.append(str(exc))
    return values, problems


def write_args(params: Sequence[Param], values: Mapping[str, Any]) -> dict[str, str]:
    """``values`` (by parameter name) as the query fields a server reads back with
    :func:`read_args`."""
    fields: dict[str, str] = {}
    for param in params:
        fields.update(param.put(values.get(param.name)))
    return fields


def whole_number(raw: str, name: str, low: int, high: int, listed: bool = False) -> int:
    """``raw`` as a whole number from ``low`` to ``high``. Raises :class:`Problem`."""
    value = int(raw) if _WHOLE.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        what = f"{name} must list whole numbers" if listed else f"{name} must be a whole number"
        raise Problem(f"{what} from {low} to {high}, not {quote(raw)}")
    return value


def json_whole_number(value: object, name: str) -> int:
    """A JSON value as a whole number from 1 (an integral number: JSON, like JSON Schema, does
    not tell 46 from 46.0; true and false are not numbers). Raises :class:`Problem`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Problem(f"{name} must be a positive integer")
    return value


def text(raw: str, name: str, max_chars: int) -> str:
    """``raw`` with its runs of whitespace made single spaces and its ends trimmed. Raises
    :class:`Problem` for more than ``max_chars`` characters (as sent: a bound on work, too)
    or control characters."""
    if len(raw) > max_chars:
        raise Problem(f"{name} must be at most {max_chars} characters, not {len(raw)}")
    if _CONTROL.search(raw):
        raise Problem(f"{name} must not contain control characters")
    return " ".join(raw.split())


def quote(raw: str) -> str:
    """``raw`` quoted for a message, cut to :data:`QUOTE` characters."""
    return repr(raw[:QUOTE] + "…") if len(raw) > QUOTE else repr(raw)


class IdConverter(BaseConverter):
    """``<id:name>`` in a URL rule: an id by the same rule (1 to 19 ASCII digits, at most
    :data:`MAX_ID`). werkzeug's ``<int:...>`` matches ``\\d``, any script's digits: it read
    "/movies/١" as movie 1. Anything else does not match the rule, which is a 404."""

    regex = r"[0-9]{1,19}"
    part_isolating = True
    weight = 50  # as werkzeug's number converters: a literal segment still wins

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))
