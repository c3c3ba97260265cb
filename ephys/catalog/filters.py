"""The filter language of catalog selections: fields, operators, parsing (no database here).

Kept apart from :mod:`ephys.catalog.queries` (which turns clauses into SQL) so that the command line
can describe and check clauses without importing SQLAlchemy.

A selection is a list of clauses that must all hold (AND). Each clause is
``FIELD OP VALUE``; users never write SQL.

* Operators: ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` and ``~`` (case-insensitive
  substring). Text fields take ``= != ~``, numbers ``= != < <= > >=``,
  booleans ``= !=``.
* Recording fields (:data:`RECORDING_FIELDS`): ``status``, ``format``, ``subject``,
  ``duration_s``, ``n_channels``, ``n_eeg_channels``, ``sfreq``, ``n_epochs``,
  ``n_valid_epochs``, ``n_annotations``, ``failure_code``, ``failure_stage``, ``montage``,
  ``n_bad_channels``, ``age_years``, ``sex``, ``stager``.
* Epoch fields (:data:`EPOCH_FIELDS`): ``valid``, ``n_flat``, ``n_clipped``,
  ``nonfinite``, ``max_abs_uv``, ``start_s``; the QC figures and quality score
  ``score``, ``n_artifact``, ``max_ptp_uv``, ``line_ratio``, ``emg_ratio``,
  ``drift_ratio``, ``max_kurtosis`` (:mod:`ephys.qc.features`); the sleep
  stage ``stage`` (W, N1, N2, N3, REM) and its probabilities ``p_w`` ... ``p_rem``.
* ``category = seizure`` / ``subcategory = ...``: epochs overlapping an annotation
  with that taxonomy label that is not negated ("kein Anfall" does not count).
* ``annotation ~ TEXT`` / ``annotation = TEXT`` (exact, case-sensitive): epochs that
  overlap such an annotation; in a recording query, recordings that have one.
  An epoch ``[start, start + epoch_s)`` overlaps an annotation
  ``[onset, onset + max(duration, 0)]`` when ``start <= onset + duration`` and
  ``onset < start + epoch_s``.

Values may be quoted (``subject = 'S 01'``). Booleans accept ``true/false/1/0``.
``!=`` is NULL-safe: ``failure_code != corrupt`` keeps recordings without a failure
code. Integer fields need integer values; numbers must be finite.
``status`` must be one of ``ok``, ``rejected``, ``failed``.

In a recording query, epoch clauses together mean "has at least one epoch
matching all of them". In an epoch query, recording clauses apply to the
epoch's recording.

``~`` folds case with the database's ``lower()``/``ILIKE``; SQLite folds ASCII
letters only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ephys.errors import FilterError

FieldType = Literal["str", "int", "float", "bool"]

#: Recording fields of the filter language and their value types.
RECORDING_FIELDS: dict[str, FieldType] = {
    "status": "str",
    "format": "str",
    "subject": "str",
    "duration_s": "float",
    "n_channels": "int",
    "n_eeg_channels": "int",
    "sfreq": "float",
    "n_epochs": "int",
    "n_valid_epochs": "int",
    "n_annotations": "int",
    "failure_code": "str",
    "failure_stage": "str",
    "montage": "str",
    "n_bad_channels": "int",
    "age_years": "int",
    "sex": "str",
    "stager": "str",
}

#: Epoch fields of the filter language and their value types.
EPOCH_FIELDS: dict[str, FieldType] = {
    "valid": "bool",
    "n_flat": "int",
    "n_clipped": "int",
    "nonfinite": "bool",
    "max_abs_uv": "float",
    "start_s": "float",
    "score": "float",
    "n_artifact": "int",
    "max_ptp_uv": "float",
    "line_ratio": "float",
    "emg_ratio": "float",
    "drift_ratio": "float",
    "max_kurtosis": "float",
    "stage": "str",
    "p_w": "float",
    "p_n1": "float",
    "p_n2": "float",
    "p_n3": "float",
    "p_rem": "float",
}

#: The special field that selects by overlapping annotation text.
ANNOTATION_FIELD = "annotation"
#: Special fields that select by an overlapping annotation's taxonomy label (negated annotations do not count).
LABEL_FIELDS = ("category", "subcategory")

#: Operators, longest first (the parser needs no ordering, but messages read better).
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")

STATUSES = ("ok", "rejected", "failed")

_OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "str": ("=", "!=", "~"),
    "int": ("=", "!=", "<", "<=", ">", ">="),
    "float": ("=", "!=", "<", "<=", ">", ">="),
    "bool": ("=", "!="),
    "annotation": ("=", "~"),
}

_CLAUSE_RE = re.compile(r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>[=!<>~]+)\s*(?P<value>.*?)\s*$", re.S)
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def valid_fields_text() -> str:
    """A one-line list of every field of the filter language, for messages."""
    return (
        f"recording fields: {', '.join(RECORDING_FIELDS)}; "
        f"epoch fields: {', '.join(EPOCH_FIELDS)}; "
        f"special: {ANNOTATION_FIELD}, {', '.join(LABEL_FIELDS)} (with = or ~)"
    )


@dataclass(frozen=True)
class Clause:
    """One parsed ``FIELD OP VALUE`` clause.

    ``kind`` says which table the field belongs to: ``"recording"``, ``"epoch"``
    or ``"annotation"``; ``value`` is already converted to the field's type.
    """

    field: str
    op: str
    value: str | int | float | bool
    kind: Literal["recording", "epoch", "annotation"]

    def __str__(self) -> str:
        value = self.value
        if isinstance(value, bool):
            value = "true" if value else "false"
        return f"{self.field} {self.op} {value}"


def parse_where(clause: str) -> Clause:
    """Parse one clause of the filter language.

    Returns
    -------
    Clause
        The field, operator, typed value and kind (recording/epoch/annotation).

    Raises
    ------
    FilterError
        (a ``ValueError``) If the clause is not ``FIELD OP VALUE``, names an unknown field (the
        message lists the valid fields), uses an unknown operator or one the
        field's type does not allow, or has a value of the wrong type.
    """
    if not isinstance(clause, str):
        raise FilterError(f"a clause must be text, got {type(clause).__name__}")
    match = _CLAUSE_RE.match(clause)
    if match is None:
        raise FilterError(
            f"cannot parse clause {clause!r}: expected FIELD OP VALUE, e.g. 'n_eeg_channels >= 19' "
            f"(operators: {' '.join(OPERATORS)}); {valid_fields_text()}"
        )
    field = match["field"].lower()
    op = match["op"]
    raw = match["value"]

    if field in RECORDING_FIELDS:
        kind, ftype = "recording", RECORDING_FIELDS[field]
    elif field in EPOCH_FIELDS:
        kind, ftype = "epoch", EPOCH_FIELDS[field]
    elif field == ANNOTATION_FIELD or field in LABEL_FIELDS:
        kind, ftype = "annotation", "annotation"
    else:
        raise FilterError(f"unknown field {match['field']!r} in clause {clause!r}; {valid_fields_text()}")

    if op not in OPERATORS:
        raise FilterError(f"unknown operator {op!r} in clause {clause!r}; operators: {' '.join(OPERATORS)}")
    allowed = _OPS_BY_TYPE[ftype]
    if op not in allowed:
        raise FilterError(
            f"operator {op!r} does not apply to {field} in clause {clause!r}; {field} takes {' '.join(allowed)}"
        )

    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    if raw == "":
        raise FilterError(f"clause {clause!r} has no value")

    value: str | int | float | bool
    if ftype in ("str", "annotation"):
        value = raw
        if field == "status" and op != "~" and raw not in STATUSES:
            raise FilterError(f"status must be one of {', '.join(STATUSES)}, got {raw!r} in clause {clause!r}")
    elif ftype == "bool":
        low = raw.lower()
        if low in _TRUE:
            value = True
        elif low in _FALSE:
            value = False
        else:
            raise FilterError(f"{field} is true/false (or 1/0), got {raw!r} in clause {clause!r}")
    elif ftype == "int":
        try:
            value = int(raw)
        except ValueError:
            raise FilterError(f"{field} takes an integer, got {raw!r} in clause {clause!r}") from None
    else:
        try:
            value = float(raw)
        except ValueError:
            raise FilterError(f"{field} takes a number, got {raw!r} in clause {clause!r}") from None
        if not math.isfinite(value):
            raise FilterError(f"{field} takes a finite number, got {raw!r} in clause {clause!r}")
    return Clause(field=field, op=op, value=value, kind=kind)  # type: ignore[arg-type]


def parse_all(where: Sequence[str] | None) -> list[Clause]:
    """Parse every clause (see :func:`parse_where`); raises FilterError (a ValueError) on the first bad one."""
    if isinstance(where, str):
        where = [where]
    return [parse_where(c) for c in (where or [])]
