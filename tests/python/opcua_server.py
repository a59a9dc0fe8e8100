"""A plant OPC UA server for tests/tests/opcua_source.rs (asyncua), with history.

Variables under the folder Plant (Line1, Line2) and one outside it (Flow, listed by NodeId) change
on a seeded schedule: each change is a value of the variable's type, a StatusCode (mostly Good,
some Uncertain and Bad, with sub-codes) and a SourceTimestamp, written to the address space and to
the server's history (SQLite, so it outlives a restart). Midway the server stops, stays down for
--down-ms, and starts again on the same port with the same history, then goes on changing values
at once, before any client can have subscribed again: only the history holds those.

Protocol with the test: prints "listening <url>" once serving, "restarted" after the restart and
"done <points>" once every change is written and the expectation file (--out: one JSON line per
value published, floats as repr text) is complete; then serves until its standard input closes.
"""

import argparse
import asyncio
import json
import random
import struct
import sys
from datetime import datetime, timedelta, timezone

from asyncua import Server, ua
from asyncua.server.history_sql import HistorySQLite

NAMESPACE = "urn:diode:tests:plant"
# numeric node id (ns=2;i=…; the SQLite history names its tables after it), parent folder (None:
# Objects), browse name, variant type
VARIABLES = [
    (1001, "Plant.Line1", "Temp", ua.VariantType.Double),
    (1002, "Plant.Line1", "Pressure", ua.VariantType.Float),
    (1003, "Plant.Line1", "Count", ua.VariantType.Int32),
    (1004, "Plant.Line1", "Running", ua.VariantType.Boolean),
    (1005, "Plant.Line1", "Mode", ua.VariantType.String),
    (2001, "Plant.Line2", "Total", ua.VariantType.UInt64),
    (2002, "Plant.Line2", "Level", ua.VariantType.Double),
    (2003, "Plant.Line2", "Valve", ua.VariantType.Byte),
    (3001, None, "Flow", ua.VariantType.Double),
]
# A Bad status carries no value (OPC UA Part 4, 7.7.1: the server sets it to null); diode stores
# the variable's last value with it. Each variable's first value is Good.
STATUSES = [0] * 8 + [0x40900000, 0x408F0000, 0x808C0000, 0x808D0000]  # Good; Uncertain_*; Bad_SensorFailure, Bad_OutOfService


def random_value(rng, vtype):
    if vtype == ua.VariantType.Double:
        return rng.uniform(-1000.0, 1000.0)
    if vtype == ua.VariantType.Float:
        return struct.unpack("f", struct.pack("f", rng.uniform(0.0, 16.0)))[0]
    if vtype == ua.VariantType.Int32:
        return rng.randrange(-(2**31), 2**31)
    if vtype == ua.VariantType.Boolean:
        return rng.random() < 0.5
    if vtype == ua.VariantType.String:
        return rng.choice(["auto", "manual", "cleaning", "fault: E42", "ümlaut ✓"])
    if vtype == ua.VariantType.UInt64:
        return rng.randrange(0, 2**63)
    if vtype == ua.VariantType.Byte:
        return rng.randrange(0, 256)
    raise ValueError(vtype)


def kind_of(vtype):
    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        return "float"
    if vtype == ua.VariantType.Boolean:
        return "boolean"
    if vtype == ua.VariantType.String:
        return "string"
    return "integer"


class Plant:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.published = []
        self.last = {}  # node id -> DataValue
        self.last_value = {}  # node id -> the last value carried (Good or Uncertain)
        self.nodes = {}
        self.server = None
        self.storage = None
        self.clock = datetime.now(timezone.utc).replace(microsecond=0)

    def tick(self):
        # Strictly increasing source timestamps, whole microseconds (OPC UA keeps 100 ns).
        self.clock = max(self.clock + timedelta(microseconds=1), datetime.now(timezone.utc))
        return self.clock

    async def start(self):
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.args.port}/diode/")
        if self.args.secure:
            # Basic256Sha256 SignAndEncrypt only, with the certificates of make_certs.py.
            await server.set_application_uri("urn:diode:tests:server")
            await server.load_certificate(f"{self.args.secure}/server.der")
            await server.load_private_key(f"{self.args.secure}/server-key.pem")
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NAMESPACE)
        self.storage = HistorySQLite(self.args.history)
        await self.storage.init()
        server.iserver.history_manager.set_storage(self.storage)
        objects = server.nodes.objects
        plant = await objects.add_folder(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
        folders = {
            "Plant.Line1": await plant.add_folder(ua.NodeId("Plant.Line1", ns), ua.QualifiedName("Line1", ns)),
            "Plant.Line2": await plant.add_object(ua.NodeId("Plant.Line2", ns), ua.QualifiedName("Line2", ns)),
            None: objects,
        }
        for node_id, parent, name, vtype in VARIABLES:
            node = await folders[parent].add_variable(
                ua.NodeId(node_id, ns), ua.QualifiedName(name, ns), random_value(self.rng, vtype), varianttype=vtype
            )
            self.nodes[node_id] = (node, vtype)
        # A property is not a plant value: diode must not monitor it.
        temp = self.nodes[1001][0]
        await temp.add_property(ua.NodeId(1009, ns), ua.QualifiedName("EngineeringUnits", ns), "degC")
        await server.start()
        self.server = server
        for node_id, (node, vtype) in self.nodes.items():
            await self.storage.new_historized_node(node.nodeid, None, 0)
            if node_id in self.last:
                # After a restart: the value the variable had, as it was (no new point).
                await node.write_value(self.last[node_id])
            else:
                await self.change(node_id)

    async def change(self, node_id):
        node, vtype = self.nodes[node_id]
        value = random_value(self.rng, vtype)
        status = self.rng.choice(STATUSES) if node_id in self.last_value else 0
        when = self.tick()
        if status & 0x80000000:
            variant = ua.Variant(None, ua.VariantType.Null)
            value = self.last_value[node_id]
        else:
            variant = ua.Variant(value, vtype)
            self.last_value[node_id] = value
        data = ua.DataValue(Value=variant, StatusCode=ua.StatusCode(status), SourceTimestamp=when, ServerTimestamp=when)
        await node.write_value(data)
        await self.storage.save_node_value(node.nodeid, data)
        self.last[node_id] = data
        unix_ns = int((when - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)) * 1000
        self.published.append(
            {
                "node": f"ns=2;i={node_id}",
                "time_ns": unix_ns,
                "type": kind_of(vtype),
                "value": repr(float(value)) if kind_of(vtype) == "float" else value,
                "quality": status,
            }
        )

    async def changes(self, count):
        ids = [v[0] for v in VARIABLES]
        for _ in range(count):
            await self.change(self.rng.choice(ids))
            await asyncio.sleep(self.args.interval_ms / 1000)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--changes", type=int, default=1500, help="value changes before and after the restart, each")
    parser.add_argument("--burst", type=int, default=200, help="changes written at once after the restart")
    parser.add_argument("--interval-ms", type=float, default=4.0)
    parser.add_argument("--down-ms", type=int, default=1000)
    parser.add_argument("--history", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--wait-for-client", type=int, default=30, help="seconds to wait for the first client")
    parser.add_argument("--secure", help="folder of make_certs.py's certificates: Basic256Sha256 SignAndEncrypt only")
    parser.add_argument("--no-restart", action="store_true")
    args = parser.parse_args()

    plant = Plant(args)
    await plant.start()
    print(f"listening opc.tcp://127.0.0.1:{args.port}/diode/", flush=True)
    # The schedule starts once diode monitors every variable, so it sees it all.
    for _ in range(args.wait_for_client * 20):
        subscriptions = plant.server.iserver.subscription_service.subscriptions.values()
        if sum(len(s.monitored_item_srv._monitored_items) for s in subscriptions) >= len(VARIABLES):
            break
        await asyncio.sleep(0.05)
    await plant.changes(args.changes)
    if not args.no_restart:
        await plant.server.stop()
        await asyncio.sleep(args.down_ms / 1000)
        await plant.start()
        print("restarted", flush=True)
        # Written before the client is back: only history has these.
        ids = [v[0] for v in VARIABLES]
        for _ in range(args.burst):
            await plant.change(plant.rng.choice(ids))
        await plant.changes(args.changes)
    with open(args.out, "w") as out:
        for point in plant.published:
            out.write(json.dumps(point) + "\n")
    print(f"done {len(plant.published)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await plant.server.stop()


if __name__ == "__main__":
    asyncio.run(main())
