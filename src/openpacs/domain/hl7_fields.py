"""Reading fields of an HL7 v2 message by their standard names (``OBR-18``, ``ORC-7.4``,
``PID-3.4.1``), as field mappings are written in the configuration.

HL7 v2.5.1 chapter 2.5 and 2.7: segments are split into fields by MSH-1, fields into
repetitions, components and subcomponents by the encoding characters of MSH-2; text is
unescaped (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\Xhh\\``, ``\\.br\\``). For MSH, MSH-1 is the
field separator itself, so ``MSH-n`` counts as the standard does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SPEC = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?$")


@dataclass(frozen=True)
class Encoding:
    """MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def of(cls, msh: str) -> Encoding:
        separator = msh[3] if len(msh) > 3 else "|"
        chars = msh[4:].split(separator, 1)[0] if len(msh) > 4 else ""
        defaults = "^~\\&"
        chars = (chars + defaults[len(chars) :])[:4] if len(chars) < 4 else chars[:4]
        return cls(separator, chars[0], chars[1], chars[2], chars[3])

    def unescape(self, text: str) -> str:
        """*text* with the HL7 escape sequences (chapter 2.7) replaced by what they stand for."""
        e = self.escape
        if not e or e not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            if text[i] != e:
                out.append(text[i])
                i += 1
                continue
            end = text.find(e, i + 1)
            if end < 0:
                out.append(text[i:])
                break
            code = text[i + 1 : end]
            simple = {"F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition, "E": e}
            if code in simple:
                out.append(simple[code])
            elif code == ".br":
                out.append("\n")
            elif code.startswith("X") and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", code):
                out.append(bytes.fromhex(code[1:]).decode("latin-1"))
            elif code in ("H", "N") or code.startswith((".sp", ".in", ".ti", ".fi", ".nf", ".ce", "C", "M", "Z")):
                pass  # highlighting, formatting and character-set switches carry no text
            else:
                out.append(text[i : end + 1])
            i = end + 1
        return "".join(out)


@dataclass(frozen=True)
class Segment:
    """One segment: ``fields[n]`` is SEG-n as sent (``fields[0]`` the segment name)."""

    fields: tuple[str, ...]
    encoding: Encoding

    @property
    def name(self) -> str:
        return self.fields[0]

    def __getitem__(self, n: int) -> str:
        return self.raw(n)

    def raw(self, n: int) -> str:
        """SEG-n as sent, escapes and separators included."""
        return self.fields[n] if 0 <= n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        """The repetitions of SEG-n, as sent (MSH-2 is not split)."""
        value = self.raw(n)
        if self.name == "MSH" and n <= 2:
            return [value]
        return list(value.split(self.encoding.repetition)) if value else []

    def get(self, n: int, component: int = 0, subcomponent: int = 0, repetition: int = 1) -> str:
        """SEG-n[.component[.subcomponent]] of one repetition, unescaped and stripped;
        component 0 means the whole field."""
        reps = self.repetitions(n)
        if len(reps) < repetition:
            return ""
        value = reps[repetition - 1]
        if self.name == "MSH" and n <= 2:
            return value
        return _part(value, self.encoding, component, subcomponent)


def _part(value: str, encoding: Encoding, component: int, subcomponent: int) -> str:
    if component:
        parts = value.split(encoding.component)
        value = parts[component - 1] if len(parts) >= component else ""
        if subcomponent:
            subs = value.split(encoding.subcomponent)
            value = subs[subcomponent - 1] if len(subs) >= subcomponent else ""
    return encoding.unescape(value).strip()


def split_component(value: str, encoding: Encoding, component: int) -> str:
    """Component *component* (1-based) of one repetition as sent, unescaped."""
    return _part(value, encoding, component, 0)


def segments(text: str) -> list[Segment]:
    """The segments of a normalised message (CR between segments, MSH first); a line that does
    not start like a segment continues the one before it."""
    lines = [line for line in text.split("\r") if line]
    if not lines or not lines[0].startswith("MSH"):
        return []
    encoding = Encoding.of(lines[0])
    joined: list[str] = []
    for line in lines:
        if joined and not _is_segment(line, encoding.field):
            joined[-1] += line  # a segment broken by a stray line end (a wrapped Base64 value, say)
        else:
            joined.append(line)
    out = []
    for line in joined:
        parts = line.split(encoding.field)
        if parts[0] == "MSH":
            # MSH-1 is the separator itself: insert it so that MSH-n is fields[n]
            parts = ["MSH", encoding.field, *parts[1:]]
        out.append(Segment(tuple(parts), encoding))
    return out


def _is_segment(line: str, separator: str) -> bool:
    """Whether *line* starts like a segment: three letters or digits, then the field separator."""
    head = line[:4]
    return len(head) == 4 and head[3] == separator and head[0].isalpha() and head[:3].isalnum() and head[:3].isupper()


@dataclass(frozen=True)
class FieldSpec:
    """A field named as in the standard: SEG-field[.component[.subcomponent]]."""

    segment: str
    field: int
    component: int = 0
    subcomponent: int = 0

    @classmethod
    def parse(cls, spec: str) -> FieldSpec:
        found = _SPEC.match(spec.strip().upper())
        if found is None:
            raise ValueError(f"{spec!r} is not a field name such as OBR-18, ORC-7.4 or PID-3.4.1")
        segment, field, component, subcomponent = found.groups()
        if int(field) < 1:
            raise ValueError(f"{spec!r}: fields are counted from 1")
        return cls(segment, int(field), int(component or 0), int(subcomponent or 0))

    def __str__(self) -> str:
        out = f"{self.segment}-{self.field}"
        if self.component:
            out += f".{self.component}"
            if self.subcomponent:
                out += f".{self.subcomponent}"
        return out

    def read(self, scope: Sequence[Segment]) -> str:
        """The value in the first segment of that name in *scope* (empty when absent)."""
        for segment in scope:
            if segment.name == self.segment:
                return segment.get(self.field, self.component, self.subcomponent)
        return ""

    def read_all(self, scope: Sequence[Segment]) -> list[str]:
        """Every repetition's value in the first segment of that name (for repeating fields)."""
        for segment in scope:
            if segment.name == self.segment:
                return [
                    v
                    for r in range(1, len(segment.repetitions(self.field)) + 1)
                    if (v := segment.get(self.field, self.component, self.subcomponent, r))
                ]
        return []


def first_of(specs: Iterable[FieldSpec], scope: Sequence[Segment]) -> str:
    """The first non-empty value among *specs*."""
    for spec in specs:
        value = spec.read(scope)
        if value:
            return value
    return ""
