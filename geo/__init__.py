"""Hot spots, projections and the packed spatial index."""

from geo.crime_cells import build_crime_hotspots, write_geojson
from geo.gpkg import read_gpkg
from geo.hotspots import DEFAULT_TARGET_MINUTES, HotspotFileError, HotspotSet, load_hotspots
from geo.packing import PackedPolygons, pack_polygons
from geo.projection import MetricProjection

__all__ = [
    "DEFAULT_TARGET_MINUTES",
    "HotspotFileError",
    "HotspotSet",
    "MetricProjection",
    "PackedPolygons",
    "build_crime_hotspots",
    "load_hotspots",
    "pack_polygons",
    "read_gpkg",
    "write_geojson",
    "NOTTINGHAM_HOTSPOTS_PATH",
]

from pathlib import Path as _Path

#: The shipped Nottingham hot spots (top 57 150 m crime cells, 2022).
NOTTINGHAM_HOTSPOTS_PATH = _Path(__file__).parent / "data" / "nottingham_hotspots.geojson"
