"""Writes seeded historian points to diode-sender with the official InfluxDB Python client
(influxdb-client, pinned in scripts/prepare), as a plant collector would, and records what it
wrote so that tests/tests/influx_client.rs can check the replica point by point.

What it exercises, because real collectors do it:
- the client's synchronous write API with a token (the Authorization header) and gzip bodies;
- batches of several thousand points, each batch in one write precision (ns, us, ms or s);
- Point objects with float, integer, boolean and string fields; tags and names with spaces,
  commas, equals signs, slashes, backslashes and non-ASCII text; strings with quotes and
  backslashes;
- raw line protocol for unsigned integers (`12u`, which Point never emits) and quality fields;
- InfluxDB 1.x's `POST /write` with `u`/`p` credentials, through the client's own HTTP layer
  (the client has no 1.x write call of its own);
- the line's quality as the configured quality tag or field (tag, integer field, string field);
- refusals: an unsigned value above the signed 64-bit range is answered 400 for the whole body,
  and a wrong token 401.

Output: one JSON object per point (measurement, tags as written, field, type, value, time in ns,
expected OPC UA quality code, path and precision), written only for writes answered 204.
Floats are written as Python's repr text, which Rust reads back to the same bits.

Usage: influx_write.py --url URL --token TOKEN --out FILE [--points N] [--seed S]
       [--quality-tag KEY] [--quality-field KEY]
"""

import argparse
import json
import random
import sys
import time

import influxdb_client
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

ORG = "plant"
BUCKET = "historian"
START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SECOND_NS = 1_000_000_000
BATCH_POINTS = 5_000

UNIT_NS = {
    WritePrecision.NS: 1,
    WritePrecision.US: 1_000,
    WritePrecision.MS: 1_000_000,
    WritePrecision.S: 1_000_000_000,
}
# InfluxDB 1.x spells microseconds `u`.
V1_PRECISION = {WritePrecision.NS: "n", WritePrecision.US: "u", WritePrecision.MS: "ms", WritePrecision.S: "s"}

MEASUREMENTS = ["boiler", "pump station", "valve,main", "ratio=a/b", "Kessel-Überwachung"]

# The client escapes commas, equals signs and spaces in tags, and leaves backslashes as they are;
# diode keeps a backslash that escapes nothing, so `C:\plant\io` arrives unchanged.
TAG_SETS = [
    {"plant": "north yard", "unit": "boiler 3"},
    {"plant": "north yard", "unit": "boiler,4"},
    {"plant": "south", "loop": "FIC=101"},
    {"plant": "south", "path": "C:\\plant\\io"},
    {"area": "zone a/°C", "line": "2"},
    {},
]

# Each field key keeps one type, as InfluxDB requires.
FIELDS = {
    "steam temp": "float",
    "set,point": "float",
    "count": "integer",
    "k=v": "integer",
    "running": "boolean",
    "state": "string",
}
UNSIGNED_FIELDS = ["energy_wh", "pulses"]

STRING_PIECES = [
    "open",
    'closed "hard"',
    "C:\\dir\\file",
    "trailing\\",
    "a, b = c",
    "  spaced  ",
    "é°C 日本",
    '"',
    '\\"',
    "",
    "x" * 300,
]

SPECIAL_FLOATS = [0.0, -0.0, 3.0, 1e16, 1.5e-7, 5e-324, 1.7976931348623157e308, -2.5e-300, 0.1, 123456789.125]

QUALITY_TAG_VALUES = {
    "good": 0,
    "uncertain": 0x40000000,
    "bad": 0x80000000,
    "0x80890000": 0x80890000,
    "1073807360": 1073807360,
}
QUALITY_FIELD_CODES = [0, 0x40000000, 0x808A0000, 0xFFFFFFFF]
QUALITY_FIELD_TEXTS = {"uncertain": 0x40000000, "BAD": 0x80000000, "0x00A20000": 0x00A20000}


def random_float(rng):
    if rng.random() < 0.1:
        return rng.choice(SPECIAL_FLOATS)
    return round(rng.uniform(-1000.0, 1000.0), rng.randint(0, 8))


def random_integer(rng):
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([-(2**63), 2**63 - 1, 0, -1])
    if roll < 0.3:
        return rng.randint(-(2**63), 2**63 - 1)
    return rng.randint(-1000, 100000)


def random_unsigned(rng):
    if rng.random() < 0.05:
        return rng.choice([0, 2**63 - 1])
    return rng.randint(0, 2**63 - 1)


def random_string(rng):
    return "".join(rng.choice(STRING_PIECES) for _ in range(rng.randint(1, 3)))


def value_of(rng, kind):
    if kind == "float":
        return random_float(rng)
    if kind == "integer":
        return random_integer(rng)
    if kind == "boolean":
        return rng.random() < 0.5
    return random_string(rng)


def expected_value(kind, value):
    """The value as the expectation file carries it: floats as repr text (exact), others as JSON."""
    return repr(value) if kind == "float" else value


def escape_key(text):
    """A tag key, tag value or field key in raw line protocol (escapes as InfluxDB documents)."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_measurement(text):
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


class Writer:
    """Generates lines, writes them in batches and records every point answered 204."""

    def __init__(self, args, out):
        self.args = args
        self.rng = random.Random(args.seed)
        self.out = out
        self.line_number = 0  # every line gets its own second, so no two points share a timestamp
        self.points = 0
        self.requests = 0
        self.client = InfluxDBClient(url=args.url, token=args.token, org=ORG, enable_gzip=True, timeout=60_000)
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)

    def timestamp(self, precision):
        """(timestamp in the precision's unit, the same in ns): one second per line, plus a
        sub-second part that the precision can express."""
        unit = UNIT_NS[precision]
        whole_units = (START_NS + self.line_number * SECOND_NS) // unit
        sub_second_units = self.rng.randrange(SECOND_NS // unit)
        self.line_number += 1
        in_unit = whole_units + sub_second_units
        return in_unit, in_unit * unit

    def quality(self):
        """How this line gives its quality: (tag value or None, field value or None, expected code)."""
        roll = self.rng.random()
        if self.args.quality_tag and roll < 0.15:
            text = self.rng.choice(sorted(QUALITY_TAG_VALUES))
            return text, None, QUALITY_TAG_VALUES[text]
        if self.args.quality_field and roll < 0.25:
            code = self.rng.choice(QUALITY_FIELD_CODES)
            return None, code, code
        if self.args.quality_field and roll < 0.3:
            text = self.rng.choice(sorted(QUALITY_FIELD_TEXTS))
            return None, text, QUALITY_FIELD_TEXTS[text]
        return None, None, 0

    def field_set(self, keys, budget):
        count = min(self.rng.randint(1, len(keys)), budget)
        return sorted(self.rng.sample(keys, count))

    def expectation(self, measurement, tags, field, kind, value, time_ns, quality, path, precision):
        return {
            "measurement": measurement,
            "tags": tags,
            "field": field,
            "type": kind,
            "value": expected_value(kind, value),
            "time_ns": time_ns,
            "quality": quality,
            "path": path,
            "precision": str(precision),
        }

    def point_batch(self, precision, budget):
        """Point objects: several fields of every type per line."""
        points, expected = [], []
        while budget > 0:
            measurement = self.rng.choice(MEASUREMENTS)
            tags = dict(self.rng.choice(TAG_SETS))
            quality_tag, quality_field, code = self.quality()
            if quality_tag is not None:
                tags[self.args.quality_tag] = quality_tag
            in_unit, time_ns = self.timestamp(precision)
            point = Point(measurement).time(in_unit, write_precision=precision)
            for key, value in tags.items():
                point.tag(key, value)
            if quality_field is not None:
                point.field(self.args.quality_field, quality_field)
            for field in self.field_set(list(FIELDS), budget):
                kind = FIELDS[field]
                value = value_of(self.rng, kind)
                point.field(field, value)
                expected.append(
                    self.expectation(measurement, tags, field, kind, value, time_ns, code, "v2-point", precision)
                )
                budget -= 1
            points.append(point)
        self.write_api.write(bucket=BUCKET, org=ORG, record=points, write_precision=precision)
        return expected

    def raw_lines(self, precision, budget, path):
        """Raw line protocol: unsigned integers (which Point cannot write) and quality fields."""
        lines, expected = [], []
        while budget > 0:
            measurement = self.rng.choice(["meter", "flow meter", "counter,total"])
            tags = dict(self.rng.choice(TAG_SETS))
            quality_tag, quality_field, code = self.quality()
            if quality_tag is not None:
                tags[self.args.quality_tag] = quality_tag
            in_unit, time_ns = self.timestamp(precision)
            text = escape_measurement(measurement)
            for key in sorted(tags):
                text += f",{escape_key(key)}={escape_key(tags[key])}"
            fields = []
            if isinstance(quality_field, int):
                fields.append(f"{escape_key(self.args.quality_field)}={quality_field}u")
            elif quality_field is not None:
                fields.append(f'{escape_key(self.args.quality_field)}="{quality_field}"')
            for field in self.field_set(UNSIGNED_FIELDS + ["reading"], budget):
                if field == "reading":
                    value, kind = random_float(self.rng), "float"
                    fields.append(f"{field}={value!r}")
                else:
                    value, kind = random_unsigned(self.rng), "unsigned"
                    fields.append(f"{field}={value}u")
                expected.append(
                    self.expectation(measurement, tags, field, kind, value, time_ns, code, path, precision)
                )
                budget -= 1
            lines.append(f"{text} {','.join(fields)} {in_unit}")
        return lines, expected

    def raw_batch_v2(self, precision, budget):
        lines, expected = self.raw_lines(precision, budget, "v2-raw")
        self.write_api.write(bucket=BUCKET, org=ORG, record=lines, write_precision=precision)
        return expected

    def raw_batch_v1(self, precision, budget):
        """InfluxDB 1.x's /write, credentials as `u` and `p` (no Authorization header)."""
        lines, expected = self.raw_lines(precision, budget, "v1")
        query = [
            ("db", BUCKET),
            ("rp", "autogen"),
            ("u", "collector"),
            ("p", self.args.token),
            ("precision", V1_PRECISION[precision]),
        ]
        self.client.api_client.call_api(
            "/write",
            "POST",
            query_params=query,
            header_params={"Content-Type": "text/plain; charset=utf-8"},
            body="\n".join(lines),
            auth_settings=[],
            _return_http_data_only=True,
        )
        return expected

    def record(self, expected):
        for entry in expected:
            self.out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.points += len(expected)
        self.requests += 1

    def run(self):
        precisions = [WritePrecision.NS, WritePrecision.US, WritePrecision.MS, WritePrecision.S]
        batch = 0
        while self.points < self.args.points:
            budget = min(BATCH_POINTS, self.args.points - self.points)
            precision = precisions[batch % len(precisions)]
            kind = batch % 10
            if kind < 8:
                expected = self.point_batch(precision, budget)
            elif kind == 8:
                expected = self.raw_batch_v2(precision, budget)
            else:
                expected = self.raw_batch_v1(precision, budget)
            self.record(expected)
            batch += 1

    def check_refusals(self):
        """Bodies diode must refuse whole; nothing of them may reach the replica."""
        in_unit, _ = self.timestamp(WritePrecision.NS)
        body = [f"meter ok=1u {in_unit}", f"meter too_big=9223372036854775808u {in_unit}"]
        expect_status(400, lambda: self.write_api.write(bucket=BUCKET, org=ORG, record=body))
        with InfluxDBClient(url=self.args.url, token="not-the-token", org=ORG, enable_gzip=True) as intruder:
            api = intruder.write_api(write_options=SYNCHRONOUS)
            expect_status(401, lambda: api.write(bucket=BUCKET, org=ORG, record=f"meter ok=2u {in_unit}"))


def expect_status(status, write):
    try:
        write()
    except ApiException as error:
        if error.status != status:
            sys.exit(f"expected HTTP {status}, got {error.status}: {error.body}")
        return
    sys.exit(f"expected HTTP {status}, the write was accepted")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quality-tag")
    parser.add_argument("--quality-field")
    args = parser.parse_args()
    started = time.monotonic()
    with open(args.out, "w", encoding="utf-8") as out:
        writer = Writer(args, out)
        writer.run()
        writer.check_refusals()
        writer.client.close()
    print(
        f"influxdb-client {influxdb_client.__version__}: {writer.points} points in {writer.requests} writes "
        f"answered 204, in {time.monotonic() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
