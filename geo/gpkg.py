"""Read features from a GeoPackage with the standard library's sqlite3.

A GeoPackage geometry blob is a small header (magic ``GP``, version, flags,
SRS id, optional envelope) followed by standard WKB, so stripping the header
and handing the rest to ``shapely.from_wkb`` is enough; no GDAL needed.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

import numpy as np
import shapely

__all__ = ["GpkgLayer", "read_gpkg", "strip_gpkg_header"]

# Envelope sizes in bytes by the flags' envelope indicator (bits 1-3):
# none, xy, xyz, xym, xyzm.
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


@dataclass(frozen=True)
class GpkgLayer:
    """One feature table of a GeoPackage.

    Attributes
    ----------
    table : str
        Table name.
    srs : str
        CRS as ``"EPSG:<code>"`` (or the organisation's own code).
    geometries : numpy.ndarray of object, shape (n,)
        shapely geometries, None for NULL blobs.
    properties : list of dict
        Non-geometry columns of each row.
    columns : tuple of str
        Non-geometry column names, in table order.
    """

    table: str
    srs: str
    geometries: np.ndarray
    properties: list
    columns: tuple


def strip_gpkg_header(blob: bytes) -> bytes | None:
    """Return the WKB inside a GeoPackage geometry blob (None if flagged empty).

    Raises
    ------
    ValueError
        If the blob is not a standard GeoPackage binary geometry.
    """
    if len(blob) < 8 or blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob (missing 'GP' magic)")
    flags = blob[3]
    if flags & 0b0010_0000:
        raise ValueError("extended GeoPackage geometry types are not supported")
    envelope = (flags >> 1) & 0b111
    if envelope not in _ENVELOPE_BYTES:
        raise ValueError(f"invalid envelope indicator {envelope} in GeoPackage header")
    if flags & 0b0001_0000:
        return None
    return bytes(blob[8 + _ENVELOPE_BYTES[envelope]:])


def read_gpkg(path, table: str | None = None) -> GpkgLayer:
    """Read every row of a GeoPackage feature table.

    Parameters
    ----------
    path : str or os.PathLike
    table : str, optional
        Feature table; required only when the file holds more than one.

    Returns
    -------
    GpkgLayer

    Raises
    ------
    ValueError
        If the file has no (or several, with `table` unset) feature tables,
        or a geometry blob cannot be decoded.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(source)
    # Read-only URI so a typo never creates an empty database.
    con = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT c.table_name, g.column_name, c.srs_id FROM gpkg_contents c "
            "JOIN gpkg_geometry_columns g ON g.table_name = c.table_name "
            "WHERE c.data_type = 'features'"
        ).fetchall()
        if table is not None:
            rows = [r for r in rows if r[0] == table]
        if len(rows) != 1:
            names = [r[0] for r in rows]
            raise ValueError(
                f"{source}: expected one feature table{' named ' + repr(table) if table else ''}, "
                f"found {names}"
            )
        tname, gcol, srs_id = rows[0]
        srs = con.execute(
            "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys "
            "WHERE srs_id = ?", (srs_id,)
        ).fetchone()
        srs_name = f"{srs[0].upper()}:{srs[1]}" if srs else f"EPSG:{srs_id}"
        cur = con.execute(f'SELECT * FROM "{tname}"')
        cols = [d[0] for d in cur.description]
        gi = cols.index(gcol)
        geoms = []
        props = []
        for n, row in enumerate(cur):
            blob = row[gi]
            try:
                wkb = strip_gpkg_header(blob) if blob is not None else None
                geoms.append(shapely.from_wkb(wkb) if wkb is not None else None)
            except (ValueError, shapely.errors.GEOSException) as exc:
                raise ValueError(f"{source}: table {tname!r} row {n}: {exc}") from None
            props.append({c: v for c, v in zip(cols, row) if c != gcol})
    finally:
        con.close()
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    return GpkgLayer(
        table=tname, srs=srs_name, geometries=arr, properties=props,
        columns=tuple(c for c in cols if c != gcol),
    )
