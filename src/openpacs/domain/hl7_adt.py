"""HL7 v2 patient data in DICOM terms (HL7 v2.5.1 chapter 3; PS3.3 C.7.1.1): names, sexes,
dates, and which PID-3 identifier is the archive's Patient ID.

- XPN (HL7 2A.89) is family^given^middle^suffix^prefix^degree; DICOM PN (PS3.5 6.2) is
  family^given^middle^prefix^suffix: the suffix and prefix swap places.
- PID-8 (table 0001) F, M, O map as they are; U (unknown), A (ambiguous) and N (not
  applicable) have no DICOM value and map to empty (PatientSex is type 2).
- PID-7 is a DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]): the date goes to PatientBirthDate,
  a time to PatientBirthTime.
- The Patient ID is the PID-3 repetition of identifier type MR, otherwise the first one.
  Its assigning authority (CX-4) names the issuer through ``authorities``; an authority not
  listed is the site's own domain (the default issuer, the one DICOM objects without an
  issuer get), so a single site needs no configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEXES = {"F": "F", "M": "M", "O": "O", "U": "", "A": "", "N": ""}


def components(value: str, component: str = "^") -> list[str]:
    return [part.strip() for part in value.split(component)]


def person_name(xpn: str, component: str = "^") -> str:
    """An XPN as a DICOM PN (alphabetic group only)."""
    parts = components(xpn, component) + [""] * 6
    family, given, middle, suffix, prefix = parts[:5]
    return "^".join((family, given, middle, prefix, suffix)).rstrip("^")


def sex(value: str) -> str:
    return SEXES.get(value.strip().upper()[:1], "")


def birth(dtm: str) -> tuple[str, str]:
    """(DA, TM) of an HL7 DTM; empty parts when absent or malformed."""
    text = dtm.strip()
    zone = max(text.find("+"), text.find("-"))
    if zone > 0:
        text = text[:zone]
    date, time = text[:8], text[8:]
    if len(date) != 8 or not date.isdigit():
        return "", ""
    if time and not time.replace(".", "").isdigit():
        time = ""
    return date, time


@dataclass(frozen=True)
class Hl7Identifier:
    value: str
    issuer: str  # the issuer namespace ("" for a site without one)
    authority: str  # CX-4 as sent


def patient_identifier(
    pid3: list[str], *, default_issuer: str, authorities: dict[str, str], component: str = "^"
) -> Hl7Identifier | None:
    """The archive's Patient ID among PID-3's repetitions (CX: ID^check^scheme^authority^type)."""
    chosen: list[str] | None = None
    for repetition in pid3:
        parts = components(repetition, component) + [""] * 5
        if not parts[0]:
            continue
        if parts[4].upper() == "MR":
            chosen = parts
            break
        if chosen is None:
            chosen = parts
    if chosen is None:
        return None
    authority = chosen[3].split("&")[0].strip()
    issuer = authorities.get(authority, default_issuer) if authority else default_issuer
    return Hl7Identifier(chosen[0], issuer, authority)


def demographics(pid: Any, component: str = "^") -> dict[str, str]:
    """PID's demographics as DICOM keyword -> text (only what the message carries)."""
    out: dict[str, str] = {}
    name = _text(pid, 5)
    if name:
        out["PatientName"] = person_name(name.split("~")[0], component)
    born = _text(pid, 7)
    if born:
        date, time = birth(born)
        if date:
            out["PatientBirthDate"] = date
        if time:
            out["PatientBirthTime"] = time[:6]
    gender = _text(pid, 8)
    if gender:
        out["PatientSex"] = sex(gender)
    return out


def _text(segment: Any, n: int) -> str:
    try:
        return str(segment[n]).strip()
    except IndexError:
        return ""
