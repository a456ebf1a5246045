"""Sample DICOM files: pydicom's bundled files, pydicom-data, ../shared pylibjpeg-data."""

from __future__ import annotations

from pathlib import Path

import pydicom.data
from pydicom.data import get_testdata_file

SHARED_DICOM = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata" / "dicom" / "pylibjpeg-data"


def pydicom_files() -> list[Path]:
    """Every .dcm bundled with pydicom and pydicom-data (no network access)."""
    found = sorted(Path(pydicom.data.__file__).parent.joinpath("test_files").rglob("*.dcm"))
    try:
        import data_store  # pydicom-data's package

        found += sorted(Path(data_store.__file__).parent.rglob("*.dcm"))
    except ImportError:
        pass
    return found


def shared_files() -> list[Path]:
    """The pylibjpeg-data files of ../shared, by transfer syntax folder."""
    return sorted(SHARED_DICOM.rglob("*.dcm")) if SHARED_DICOM.is_dir() else []


def sample_file(name: str) -> Path:
    """One of pydicom's bundled files by name."""
    return Path(str(get_testdata_file(name)))


#: One valid image per transfer syntax, from pydicom's bundled files (name, transfer syntax).
BY_TRANSFER_SYNTAX: list[tuple[str, str]] = [
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("CT_small.dcm", "1.2.840.10008.1.2.1"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
    ("JPEG-lossy.dcm", "1.2.840.10008.1.2.4.51"),
    ("JPEG-LL.dcm", "1.2.840.10008.1.2.4.70"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
    ("SC_rgb_rle.dcm", "1.2.840.10008.1.2.5"),
]
