"""Why a fix was not used: one code table for every stage.

The scanner, the validators and the ordering kernel report these codes; the
replay writes their names to ``rejected.csv`` and the stream puts them in the
dead-letter ``reason`` header.
"""

ACCEPTED = 0
MALFORMED = 1  # not a record: wrong field count, bad JSON, wrong types
MISSING_FIELD = 2  # a required field is absent or empty
BAD_TIME = 3  # ts is neither RFC 3339 with offset nor epoch milliseconds
TIME_OUT_OF_RANGE = 4  # ts far in the future or the past
BAD_COORDINATES = 5  # lat/lon unparsable, NaN or infinite
COORDINATES_OUT_OF_RANGE = 6  # |lat| > 90 or |lon| > 180
NULL_ISLAND = 7  # 0/0: a receiver with no fix
BAD_ACCURACY = 8  # accuracy_m present but not a finite number >= 0
DUPLICATE = 9  # same officer, same ts
LATE = 10  # older than the officer's last processed fix
IMPOSSIBLE_SPEED = 11  # faster than max_speed_mps since the last accepted fix
OUTSIDE_CRS = 12  # valid WGS84 but outside what the metric CRS can project
TRUNCATED_FILE = 13  # the file ends mid-stream (a cut-off .gz): the rest is unread
DUPLICATE_FIELD = 14  # a field given twice in one record: parsers disagree on which one counts
OVERSIZED = 15  # a record longer than any fix (stream.fixes.MAX_FIX_BYTES)

REASON_NAMES = {
    MALFORMED: "malformed",
    MISSING_FIELD: "missing_field",
    BAD_TIME: "bad_time",
    TIME_OUT_OF_RANGE: "time_out_of_range",
    BAD_COORDINATES: "bad_coordinates",
    COORDINATES_OUT_OF_RANGE: "coordinates_out_of_range",
    NULL_ISLAND: "null_island",
    BAD_ACCURACY: "bad_accuracy",
    DUPLICATE: "duplicate",
    LATE: "late",
    IMPOSSIBLE_SPEED: "impossible_speed",
    OUTSIDE_CRS: "outside_crs",
    TRUNCATED_FILE: "truncated_file",
    DUPLICATE_FIELD: "duplicate_field",
    OVERSIZED: "oversized",
}
