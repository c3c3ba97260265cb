"""The taxonomy file: pydantic models of its YAML (:class:`TaxonomyFile`), the checks across fields that keep the
matcher unambiguous, and the loaded, immutable :class:`Taxonomy` the matcher reads (layout and rules: the package
docstring of :mod:`ephys.annotate.taxonomy`).

Every problem is a :class:`~ephys.errors.TaxonomyError` naming the file, the position
(``categories[1].subcategories[0]``) and the ``category/subcategory`` ids where known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from ephys.annotate.taxonomy.cues import RESERVED_PHRASES
from ephys.annotate.taxonomy.text import normalise, stem
from ephys.errors import TaxonomyError

#: Allowed ``source`` tags of a subcategory.
SOURCE_TAGS: tuple[str, ...] = ("HED-SCORE", "ACNS", "TUH", "clinical usage")
#: The five category ids, in display order.
CATEGORY_IDS: tuple[str, ...] = ("seizure", "interictal", "state", "artifact", "procedure")
#: Longest abbreviation accepted in ``abbr`` (characters as written).
ABBR_MAX_LEN = 6

# ---------------------------------------------------------------------------------------------- the loaded taxonomy


@dataclass(frozen=True)
class Subcategory:
    """One leaf of the taxonomy; ``keywords`` is the de-duplicated union of en, de and abbr."""

    id: str
    label: str
    category: str
    source: tuple[str, ...]
    en: tuple[str, ...]
    de: tuple[str, ...]
    abbr: tuple[str, ...]
    weak: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    generic: bool = False

    @property
    def keywords(self) -> tuple[str, ...]:
        seen: dict[str, str] = {}
        for k in (*self.en, *self.de, *self.abbr):
            seen.setdefault(normalise(k), k)
        return tuple(seen.values())

    @property
    def path(self) -> str:
        """``"category/subcategory"``."""
        return f"{self.category}/{self.id}"


@dataclass(frozen=True)
class Category:
    id: str
    label: str
    subcategories: tuple[Subcategory, ...]


@dataclass(frozen=True)
class Taxonomy:
    """A loaded, validated taxonomy (see :func:`load_taxonomy`)."""

    version: str
    categories: tuple[Category, ...]
    origin: str = "<packaged>"

    @property
    def subcategories(self) -> tuple[Subcategory, ...]:
        return tuple(s for c in self.categories for s in c.subcategories)

    @property
    def n_keywords(self) -> int:
        """Distinct keywords (en, de and abbr, normalised) over all subcategories."""
        return sum(len(s.keywords) for s in self.subcategories)

    def category(self, category_id: str) -> Category:
        for c in self.categories:
            if c.id == category_id:
                return c
        raise KeyError(category_id)

    def subcategory(self, category_id: str, subcategory_id: str) -> Subcategory:
        for s in self.category(category_id).subcategories:
            if s.id == subcategory_id:
                return s
        raise KeyError(f"{category_id}/{subcategory_id}")


# ------------------------------------------------------------------------------------------------------- the file

#: A non-empty string, stripped (YAML's unquoted yes/no/on/off are booleans, refused: ``strict``).
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SubcategoryFile(_Model):
    """One subcategory as written in the file."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    label: Text
    source: Annotated[list[Literal[SOURCE_TAGS]], Field(min_length=1)]  # type: ignore[valid-type]
    refs: list[Text] = []
    en: list[Text] = []
    de: list[Text] = []
    abbr: list[Text] = []
    weak: Literal["all"] | list[Text] = []
    patterns: list[Text] = []
    generic: bool = False

    @field_validator("refs", "en", "de", "abbr", "weak", "patterns", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        """An empty YAML entry (``en:``) is an empty list."""
        return [] if value is None else value

    @field_validator("source", mode="before")
    @classmethod
    def _stripped_tags(cls, value: Any) -> Any:
        """Source tags are compared stripped, as keywords are (``" TUH "`` is ``TUH``)."""
        return [t.strip() if isinstance(t, str) else t for t in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _keywords(self) -> SubcategoryFile:
        """Keywords exist and are usable; weak keywords are keywords; patterns compile."""
        if not (self.en or self.de or self.abbr):
            raise ValueError("no keywords (en, de, abbr all empty)")
        for a in self.abbr:
            if len(a) > ABBR_MAX_LEN or " " in a:
                raise ValueError(f"abbreviation {a!r} longer than {ABBR_MAX_LEN} or contains a space")
        for k in self.keywords:
            n = normalise(k)
            if not n or not any(ch.isalpha() for ch in n):
                raise ValueError(f"keyword {k!r} has no letters after normalisation")
            if n in RESERVED_PHRASES:
                raise ValueError(f"keyword {k!r} is a negation/uncertainty cue or clause terminator")
            if len(n) == 1:
                raise ValueError(f"keyword {k!r} is a single letter")
        local = {normalise(k) for k in self.keywords}
        for w in () if self.weak == "all" else self.weak:
            if normalise(w) not in local:
                raise ValueError(f"weak keyword {w!r} is not one of its en/de/abbr keywords")
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} does not compile: {exc}") from None
        return self

    @property
    def keywords(self) -> tuple[str, ...]:
        """en, de and abbr keywords as written, in that order."""
        return (*self.en, *self.de, *self.abbr)


class CategoryFile(_Model):
    """One of the five categories as written in the file."""

    id: Literal[CATEGORY_IDS]  # type: ignore[valid-type]
    label: Text
    subcategories: Annotated[list[SubcategoryFile], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_ids(self) -> CategoryFile:
        seen: set[str] = set()
        for s in self.subcategories:
            if s.id in seen:
                raise ValueError(f"duplicate subcategory id {s.id!r}")
            seen.add(s.id)
        return self


class TaxonomyFile(_Model):
    """A taxonomy file: a ``version`` (``YYYY.MM.N``, quoted) and exactly the five categories, once each.

    Across subcategories no keyword may appear twice, neither after :func:`~ephys.annotate.taxonomy.normalise`
    (en, de, abbr) nor after inflection folding with :func:`~ephys.annotate.taxonomy.stem` (en, de).
    """

    version: Annotated[str, Field(pattern=r"^\d{4}\.\d{1,2}\.\d+$")]
    categories: Annotated[list[CategoryFile], Field(min_length=1)]

    @model_validator(mode="after")
    def _across(self) -> TaxonomyFile:
        ids = [c.id for c in self.categories]
        if sorted(ids) != sorted(CATEGORY_IDS):
            raise ValueError(f"categories must be exactly {CATEGORY_IDS} once each, got {ids}")
        owner: dict[str, str] = {}  # normalised keyword -> subcategory path
        stem_owner: dict[str, tuple[str, str]] = {}  # inflection key -> (path, keyword)
        for c in self.categories:
            for s in c.subcategories:
                path = f"{c.id}/{s.id}"
                for k in s.keywords:
                    n = normalise(k)
                    if owner.setdefault(n, path) != path:
                        raise ValueError(f"{path}: keyword {k!r} (normalised {n!r}) duplicates one of {owner[n]}")
        for c in self.categories:
            for s in c.subcategories:
                path = f"{c.id}/{s.id}"
                for k in (*s.en, *s.de):
                    key = " ".join(stem(t) for t in normalise(k).split())
                    prev = stem_owner.setdefault(key, (path, k))
                    if prev[0] != path:
                        raise ValueError(f"keyword {k!r} of {path} duplicates {prev[1]!r} of {prev[0]} "
                                         f"after inflection folding ({key!r})")
        return self

    def to_taxonomy(self, origin: str) -> Taxonomy:
        """The loaded :class:`Taxonomy` (keyword order kept; weak keywords normalised; ``weak: all`` expanded)."""
        categories = []
        for c in self.categories:
            subs = []
            for s in c.subcategories:
                weak = s.keywords if s.weak == "all" else s.weak
                subs.append(Subcategory(
                    id=s.id, label=s.label, category=c.id, source=tuple(s.source), en=tuple(s.en), de=tuple(s.de),
                    abbr=tuple(s.abbr), weak=frozenset(normalise(w) for w in weak), patterns=tuple(s.patterns),
                    refs=tuple(s.refs), generic=s.generic))
            categories.append(Category(id=c.id, label=c.label, subcategories=tuple(subs)))
        return Taxonomy(version=self.version, categories=tuple(categories), origin=origin)


def _where(loc: tuple, data: Any) -> tuple[str, str | None]:
    """``("categories[1].subcategories[0] (interictal/spike_wave)", field)`` of a pydantic error location."""
    parts, node, ids, field = [], data, [], None
    for i, part in enumerate(loc):
        if i and loc[i - 1] in ("categories", "subcategories") and isinstance(part, int):
            parts[-1] += f"[{part}]"
        elif part in ("categories", "subcategories") and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            parts.append(part)
        else:
            field = part if field is None else field
            break
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(part, int) and isinstance(node, dict) and isinstance(node.get("id"), str):
            ids.append(node["id"])
    where = ".".join(parts)
    if ids:
        where += f" ({'/'.join(ids)})"
    return where, field


def _message(err: dict, data: Any) -> str:
    """One pydantic error as the sentence a taxonomy author reads."""
    where, field = _where(tuple(err["loc"]), data)
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "missing":
        text = f"missing '{field}'"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = "must be a mapping"
    elif kind == "invalid_key":
        text = f"unknown keys [{err.get('input', loc[-1])!r}]"
    elif kind == "extra_forbidden":
        text = f"unknown keys [{field!r}]"
    elif field == "version":
        text = f"'version' must be a quoted string like \"2026.11.1\", got {err.get('input')!r}"
    elif field == "id" and kind == "literal_error":
        text = f"'id' must be one of {CATEGORY_IDS}, got {err.get('input')!r}"
    elif field == "id":
        text = f"'id' must be a lower-case identifier, got {err.get('input')!r}"
    elif field in ("label", "source") and err.get("input") is None:
        text = f"missing '{field}'"
    elif field == "label":
        text = "missing 'label'" if kind == "string_too_short" else "'label' must be a string"
    elif field == "source" and kind == "literal_error":
        text = f"'source' must be a non-empty list of {SOURCE_TAGS}, got {err.get('input')!r}"
    elif field == "source":
        text = f"'source' must be a non-empty list of {SOURCE_TAGS}"
    elif field == "generic":
        text = "'generic' must be true or false"
    elif field in ("categories", "subcategories") and kind in ("too_short", "list_type"):
        text = f"'{field}' must be a non-empty list"
    elif kind == "value_error":
        text = str(err["msg"]).removeprefix("Value error, ")
    elif field is not None and loc[-1] != field or kind in ("list_type", "string_type", "string_too_short"):
        text = f"'{field}' must be a list of non-empty strings (quote yes/no/on/off)"
    else:
        text = f"{field or 'entry'}: {err['msg']}"
    return f"{where}: {text}" if where else text


def parse_taxonomy(data: Any, origin: str) -> Taxonomy:
    """Validate parsed YAML ``data`` as a :class:`TaxonomyFile` and return the :class:`Taxonomy`.

    Raises
    ------
    TaxonomyError
        The first problem, as ``"<origin>: <position> (<category/subcategory>): <what is wrong>"``.
    """
    if not isinstance(data, dict):
        raise TaxonomyError(f"{origin}: top level must be a mapping with 'version' and 'categories'")
    unknown = set(data) - {"version", "categories"}
    if unknown:
        raise TaxonomyError(f"{origin}: unknown top-level keys {sorted(unknown, key=str)}")
    try:
        parsed = TaxonomyFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # a union (``weak``: "all" or a list) reports one error per branch: prefer the list branch's
        first = next((e for e in errors if "literal['all']" not in [str(p) for p in e["loc"]]), errors[0])
        n = len({tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p)) for e in errors})  # one per place
        more = f" (and {n - 1} more)" if n > 1 else ""
        raise TaxonomyError(f"{origin}: {_message(first, data)}{more}") from None
    return parsed.to_taxonomy(origin)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy YAML file (:class:`TaxonomyFile`).

    ``path=None`` loads the packaged ``ephys/annotate/taxonomy.yaml`` through
    :mod:`importlib.resources` (works from a wheel or an editable install).

    Raises :class:`~ephys.errors.TaxonomyError` (a ``ValueError``) naming the problem (with the position of the
    offending category/subcategory) when the YAML does not parse, a required field is missing or unknown, a source
    tag is unknown, an abbreviation is too long, a keyword is a cue word or appears (after normalisation, or after
    inflection folding with :func:`~ephys.annotate.taxonomy.stem`) in two subcategories, a weak keyword is not a
    keyword of its subcategory, a pattern does not compile, or the five categories are not exactly
    ``CATEGORY_IDS``. A missing file raises :class:`FileNotFoundError`.
    """
    if path is None:
        ref = resources.files("ephys.annotate").joinpath("taxonomy.yaml")
        text, origin = ref.read_text(encoding="utf-8"), "taxonomy.yaml"
    else:
        p = Path(path)
        text, origin = p.read_text(encoding="utf-8"), str(p)
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{origin}: not valid YAML: {exc}") from None
    return parse_taxonomy(data, origin)
