"""A plant publisher for tests/tests/mqtt_source.rs: Sparkplug B edge nodes and JSON sensors on an
MQTT broker, every message QoS 1, on a seeded schedule.

It waits until diode-sender is subscribed (it publishes a probe until the sender's metrics count a
message), then publishes births, data by alias (historical, null and quality-flagged metrics
among them, sequence numbers wrapping past 255), JSON samples (objects, arrays, object values),
malformed payloads, and a device death. It writes one JSON line per point the replica must hold
to --out (floats as repr text, so no digit is lost), once the broker has acknowledged every
message, and prints a summary.
"""

import argparse
import json
import random
import time
import urllib.request

import paho.mqtt.client as mqtt

import sparkplug_b as sp

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
GOOD, UNCERTAIN, BAD, STALE = 0, 0x40000000, 0x80000000, 0x80310000

NODE_METRICS = [  # name, alias, datatype
    ("Temp", 1, sp.DOUBLE),
    ("Count", 2, sp.INT32),
    ("Running", 3, sp.BOOLEAN),
    ("Mode", 4, sp.STRING),
    ("Energy", 5, sp.INT64),
    ("Level", 6, sp.FLOAT),
    ("Small", 7, sp.INT8),
    ("Port", 8, sp.UINT16),
]
DEVICE_METRICS = [("Speed", 101, sp.DOUBLE), ("Fault", 102, sp.BOOLEAN), ("Vibration", 103, sp.FLOAT)]


def kind_of(datatype):
    if datatype in (sp.DOUBLE, sp.FLOAT):
        return "float"
    if datatype == sp.BOOLEAN:
        return "boolean"
    if datatype in (sp.STRING, sp.TEXT):
        return "string"
    return "integer"


def random_value(rng, datatype):
    if datatype == sp.DOUBLE:
        return rng.uniform(-500.0, 500.0)
    if datatype == sp.FLOAT:
        return rng.randrange(-4000, 4000) / 4.0  # exact in 32 bits
    if datatype == sp.BOOLEAN:
        return rng.random() < 0.5
    if datatype == sp.STRING:
        return rng.choice(["auto", "manual", "maintenance", "fault, see log", "ñandú ✓"])
    if datatype == sp.INT8:
        return rng.randrange(-128, 128)
    if datatype == sp.UINT16:
        return rng.randrange(0, 65536)
    if datatype == sp.INT32:
        return rng.randrange(-(2**31), 2**31)
    return rng.randrange(-(2**62), 2**62)


def expected_value(kind, value):
    return repr(float(value)) if kind == "float" else value


class Publisher:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plant-{args.seed}", clean_session=True)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        if args.tls_ca:
            self.client.tls_set(ca_certs=args.tls_ca, certfile=args.tls_cert, keyfile=args.tls_key)
        self.client.connect(args.host, args.port)
        self.client.loop_start()
        self.sent = []
        self.points = []
        self.malformed = 0
        self.clock_ms = BASE_MS
        self.messages = 0

    def publish(self, topic, payload):
        self.sent.append(self.client.publish(topic, payload, qos=1))
        self.messages += 1
        if self.messages % self.args.pace_every == 0:
            time.sleep(0.002)  # spread the run over a few seconds, so the sender can be killed mid-stream

    def tick(self):
        self.clock_ms += 1
        return self.clock_ms

    def point(self, series, time_ms, kind, value, quality):
        self.points.append(
            {"series": series, "time_ns": time_ms * 1_000_000, "type": kind, "value": expected_value(kind, value), "quality": quality}
        )

    def wait_until_the_sender_listens(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.client.publish("plant/probe/ready", json.dumps({"timestamp": BASE_MS - 1, "value": 1.0}), qos=1)
            try:
                text = urllib.request.urlopen(self.args.ready_metrics, timeout=2).read().decode()
                for line in text.splitlines():
                    if line.startswith("diode_sender_source_messages_total{") and float(line.rsplit(" ", 1)[1]) >= 1:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("diode-sender never received the probe: is it subscribed?")


class EdgeNode:
    def __init__(self, publisher, group, node, device):
        self.p, self.group, self.node, self.device = publisher, group, node, device
        self.seq = 0
        self.last = {}

    def next_seq(self):
        self.seq = (self.seq + 1) % 256
        return self.seq

    def series(self, name, device=None):
        return f"{self.group}/{self.node}/{device}/{name}" if device else f"{self.group}/{self.node}/{name}"

    def birth(self):
        payload = sp.Payload()
        payload.timestamp = self.p.tick()
        payload.seq = 0
        bdseq = payload.metrics.add(name="bdSeq", datatype=sp.INT64)
        sp.set_value(bdseq, sp.INT64, 0)
        self.p.point(self.series("bdSeq"), payload.timestamp, "integer", 0, GOOD)
        for name, alias, datatype in NODE_METRICS:
            self.add(payload, name, alias, datatype, payload.timestamp, birth=True)
        self.p.publish(f"spBv1.0/{self.group}/NBIRTH/{self.node}", payload.SerializeToString())
        payload = sp.Payload()
        payload.timestamp = self.p.tick()
        payload.seq = self.next_seq()
        for name, alias, datatype in DEVICE_METRICS:
            self.add(payload, name, alias, datatype, payload.timestamp, birth=True, device=self.device)
        self.p.publish(f"spBv1.0/{self.group}/DBIRTH/{self.node}/{self.device}", payload.SerializeToString())

    def add(self, payload, name, alias, datatype, time_ms, birth=False, device=None):
        rng = self.p.rng
        metric = payload.metrics.add(alias=alias, timestamp=time_ms)
        if birth:
            metric.name = name
            metric.datatype = datatype
        series = self.series(name, device)
        roll = rng.random()
        if not birth and roll < 0.05:
            # Null: stored as its datatype's zero with quality bad.
            metric.is_null = True
            kind = kind_of(datatype)
            self.p.point(series, time_ms, kind, {"float": 0.0, "integer": 0, "boolean": False, "string": ""}[kind], BAD)
            return
        value = random_value(rng, datatype)
        sp.set_value(metric, datatype, value)
        quality = GOOD
        if not birth and roll < 0.10:
            da = rng.choice([64, 0, 192])
            metric.properties.keys.append("Quality")
            metric.properties.values.add(type=sp.INT32, int_value=da)
            quality = {64: UNCERTAIN, 0: BAD, 192: GOOD}[da]
        elif not birth and roll < 0.15:
            metric.is_historical = True
        self.last[series] = value
        self.p.point(series, time_ms, kind_of(datatype), value, quality)

    def data(self):
        rng = self.p.rng
        on_device = rng.random() < 0.4
        catalogue = DEVICE_METRICS if on_device else NODE_METRICS
        payload = sp.Payload()
        payload.timestamp = self.p.tick()
        payload.seq = self.next_seq()
        for name, alias, datatype in rng.sample(catalogue, rng.randint(1, len(catalogue))):
            # Each metric its own timestamp: a historical backlog keeps its own times.
            self.add(payload, name, alias, datatype, self.p.tick(), device=self.device if on_device else None)
        kind = "DDATA" if on_device else "NDATA"
        topic = f"spBv1.0/{self.group}/{kind}/{self.node}" + (f"/{self.device}" if on_device else "")
        self.p.publish(topic, payload.SerializeToString())

    def device_death(self):
        payload = sp.Payload()
        payload.timestamp = self.p.tick()
        payload.seq = self.next_seq()
        for name, _, datatype in DEVICE_METRICS:
            series = self.series(name, self.device)
            if series in self.last:
                self.p.point(series, payload.timestamp, kind_of(datatype), self.last[series], STALE)
        self.p.publish(f"spBv1.0/{self.group}/DDEATH/{self.node}/{self.device}", payload.SerializeToString())


def json_message(p):
    rng = p.rng
    area, tag = rng.randrange(3), rng.randrange(8)
    topic = f"plant/area{area}/tag{tag}"
    series = f"json/area{area}/tag{tag}"
    shape = rng.random()
    if shape < 0.15:
        samples = []
        for _ in range(3):
            time_ms, value = p.tick(), rng.uniform(0, 100)
            samples.append({"timestamp": time_ms, "value": value, "quality": GOOD})
            p.point(series, time_ms, "float", value, GOOD)
        payload = samples
    elif shape < 0.25:
        time_ms = p.tick()
        members = {"flow": rng.uniform(0, 10), "open": rng.random() < 0.5, "state": rng.choice(["ok", "low"])}
        for name, value in members.items():
            kind = "float" if isinstance(value, float) else "boolean" if isinstance(value, bool) else "string"
            p.point(f"{series}/{name}", time_ms, kind, value, GOOD)
        payload = {"timestamp": time_ms, "value": members}
    else:
        time_ms, value = p.tick(), rng.uniform(-50, 50)
        quality = rng.choice([GOOD, GOOD, GOOD, UNCERTAIN, 0x808B0000])
        p.point(series, time_ms, "float", value, quality)
        payload = {"timestamp": time_ms, "value": value, "quality": quality}
    p.publish(topic, json.dumps(payload))


def malformed(p):
    p.publish("spBv1.0/plant/NDATA/edge9", b"\xff\x00 not a protobuf")
    p.publish("plant/area0/broken", b"not json {")
    p.publish("plant/area1/broken", json.dumps({"timestamp": p.tick()}))  # no value
    p.malformed += 3


def bulk(args):
    """Figures: births, then --bulk-sparkplug NDATA of 100 metrics by alias from 10 edge nodes, or
    --bulk-json one-sample JSON messages, published as fast as the broker takes them, to be queued
    for the sender's persistent session. Prints the number of points."""
    p = Publisher(args)
    points = 0
    if args.bulk_sparkplug:
        for node in range(10):
            payload = sp.Payload(timestamp=BASE_MS, seq=0)
            for i in range(100):
                metric = payload.metrics.add(name=f"Area{i // 10}/Tag{i:03}", alias=i, datatype=sp.DOUBLE, timestamp=BASE_MS)
                metric.double_value = float(i)
            p.publish(f"spBv1.0/bulk/NBIRTH/edge{node}", payload.SerializeToString())
            points += 100
        for k in range(1, args.bulk_sparkplug // 10 + 1):
            for node in range(10):
                payload = sp.Payload(timestamp=BASE_MS + k * 100, seq=k % 256)
                for i in range(100):
                    payload.metrics.add(alias=i, timestamp=BASE_MS + k * 100, double_value=20.0 + (k * 31 + i) % 997 * 0.013)
                p.publish(f"spBv1.0/bulk/NDATA/edge{node}", payload.SerializeToString())
                points += 100
    for i in range(args.bulk_json):
        body = '{"timestamp": %d, "value": %.3f, "quality": 0}' % (BASE_MS + i, 20.0 + i % 997 * 0.013)
        p.publish(f"plant/area{i % 10}/tag{i // 10 % 100}", body)
        points += 1
    for info in p.sent:
        info.wait_for_publish(timeout=600)
    p.client.loop_stop()
    p.client.disconnect()
    print(f"bulk {points}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-messages", type=int, default=3000, help="Sparkplug data messages per edge node")
    parser.add_argument("--json-messages", type=int, default=4000)
    parser.add_argument("--malformed", type=int, default=20, help="rounds of three malformed payloads")
    parser.add_argument("--pace-every", type=int, default=10)
    parser.add_argument("--ready-metrics", help="the sender's /metrics URL")
    parser.add_argument("--out")
    parser.add_argument("--bulk-sparkplug", type=int, default=0, help="figures: this many Sparkplug NDATA, nothing else")
    parser.add_argument("--bulk-json", type=int, default=0, help="figures: this many one-sample JSON messages")
    parser.add_argument("--tls-ca", help="connect with TLS, trusting this CA (PEM)")
    parser.add_argument("--tls-cert", help="client certificate (PEM)")
    parser.add_argument("--tls-key", help="client key (PEM)")
    args = parser.parse_args()
    if args.bulk_sparkplug or args.bulk_json:
        args.pace_every = 1 << 62
        return bulk(args)

    p = Publisher(args)
    p.wait_until_the_sender_listens()
    nodes = [EdgeNode(p, "plant", "edge1", "pump1"), EdgeNode(p, "plant", "edge2", "pump2")]
    for node in nodes:
        node.birth()
    rounds = max(args.data_messages, args.json_messages // 2)
    malformed_every = max(1, rounds // max(1, args.malformed))
    for i in range(rounds):
        if i < args.data_messages:
            for node in nodes:
                node.data()
        if i * 2 < args.json_messages:
            json_message(p)
            json_message(p)
        if i % malformed_every == 0 and p.malformed < 3 * args.malformed:
            malformed(p)
    nodes[1].device_death()
    for info in p.sent:
        info.wait_for_publish(timeout=120)
        if not info.is_published():
            raise SystemExit("the broker did not acknowledge every message")
    p.client.loop_stop()
    p.client.disconnect()
    with open(args.out, "w") as out:
        for point in p.points:
            out.write(json.dumps(point) + "\n")
    print(f"published {p.messages} messages ({len(p.points)} points, {p.malformed} malformed) to {args.host}:{args.port}")


if __name__ == "__main__":
    main()
