"""Generate benchmark corpora: realistic CT headers (from pydicom's CT_small.dcm, a GE CT
with its private elements) with fresh UIDs, spread over patients, studies and series.

    python bench/corpus.py ct OUT_DIR --count 2000        # 512x512x16 bit: about 0.5 MB each
    python bench/corpus.py small OUT_DIR --count 5000     # 32x32x16 bit: about 3.5 KB each
    python bench/corpus.py mixed OUT_DIR --count 300      # a multi-patient corpus for tests
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

_FIRST = ["ANNA", "BERND", "CHLOE", "DAVID", "EMMA", "FELIX", "GRETA", "HUGO", "INES", "JONAS"]
_LAST = ["MULLER", "SCHMIDT", "DUPONT", "ROSSI", "GARCIA", "NOWAK", "JANSEN", "BERG", "KOVAC", "SILVA"]


def _template(kind: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.OtherPatientIDsSequence  # the template's other IDs would be shared by every generated patient
    size = {"ct": 512, "small": 26, "mixed": 64}[kind]
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if kind == "small":
        # a compact header, as small instances (e.g. structured reports, thumbnails) have
        for elem in list(ds):
            if elem.tag.is_private:
                del ds[elem.tag]
    return ds


def generate(kind: str, out: Path, count: int, *, seed: int = 1, per_series: int | None = None) -> list[Path]:
    """Write *count* instances under *out*; return their paths."""
    rng = np.random.default_rng(seed)
    picker = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    template = _template(kind)
    size = int(template.Rows)
    per_series = per_series or {"ct": 200, "small": 500, "mixed": 10}[kind]
    series_per_study = 2
    paths: list[Path] = []
    study_uid = series_uid = ""
    patient = 0
    for n in range(count):
        if n % per_series == 0:
            if (n // per_series) % series_per_study == 0:
                study_uid = generate_uid()
                patient += 1
            series_uid = generate_uid()
        ds = template.copy()
        ds.file_meta = template.file_meta.copy()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        sop_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.PatientID = f"BENCH{patient:05d}"
        ds.PatientName = f"{_LAST[patient % 10]}^{_FIRST[(patient // 10) % 10]}"
        ds.PatientBirthDate = f"19{40 + patient % 60:02d}{1 + patient % 12:02d}{1 + patient % 28:02d}"
        ds.StudyDate = f"2026{1 + patient % 12:02d}{1 + patient % 28:02d}"
        ds.AccessionNumber = f"ACC{patient:06d}"
        ds.Modality = picker.choice(["CT", "MR"]) if kind == "mixed" else "CT"
        ds.SeriesNumber = (n // per_series) % series_per_study + 1
        ds.InstanceNumber = n % per_series + 1
        pixels = rng.integers(-1000, 3000, (size, size), dtype=np.int16)
        ds.PixelData = pixels.tobytes()
        path = out / f"{n:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["ct", "small", "mixed"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    paths = generate(args.kind, args.out, args.count, seed=args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} files, {total / len(paths) / 1024:.1f} KiB each, in {args.out}")


if __name__ == "__main__":
    main()
