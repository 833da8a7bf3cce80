"""Times FerretDB operations by _id and by a secondary field on one server (docs/testbed.md, "FerretDB on PostgreSQL"). argv: name uri N [fraction of the slow operations' counts]."""
import json, random, statistics, sys, time

import pymongo
from pymongo import MongoClient

name, uri, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# argv[4]: fraction of the default counts for the slow operations (find_one stays at 1000)
frac = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
counts = dict(find_one=1000, update_one=int(1000 * frac), find_field=int(100 * frac),
              in100=max(5, int(20 * frac)), delete_in=max(5, int(20 * frac)), insert_many=5)
random.seed(42)
c = MongoClient(uri, serverSelectionTimeoutMS=5000)
db = c["bench"]
db.drop_collection("docs")
coll = db["docs"]
groups = max(1, n // 10)


def doc(i):
    return {"_id": "app-%08d" % i, "grp": "g%06d" % (i % groups), "version": 0,
            "status": "submitted", "payload": "x" * 64}


out = {"server": name, "n": n}
t = time.perf_counter()
for start in range(0, n, 1000):
    coll.insert_many([doc(i) for i in range(start, min(n, start + 1000))], ordered=False)
out["load_s"] = round(time.perf_counter() - t, 2)


def timed(label, k, fn):
    ts = []
    for j in range(k):
        t0 = time.perf_counter()
        fn(j)
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    out[label] = {"n": k, "mean_ms": round(statistics.mean(ts), 2),
                  "p50_ms": round(ts[len(ts) // 2], 2), "p99_ms": round(ts[int(len(ts) * 0.99) - 1 if k >= 100 else -1], 2)}
    print(name, n, label, out[label], file=sys.stderr, flush=True)


ids = ["app-%08d" % random.randrange(n) for _ in range(2000)]
assert coll.find_one({"_id": ids[0]}) is not None
timed("find_one_id", counts["find_one"], lambda j: coll.find_one({"_id": ids[j]}))
timed("update_one_id", counts["update_one"],
      lambda j: coll.update_one({"_id": ids[j]}, {"$set": {"status": "read"}}))
gs = ["g%06d" % random.randrange(groups) for _ in range(200)]
assert len(list(coll.find({"grp": gs[0]}))) == n // groups
timed("find_field_noindex", counts["find_field"], lambda j: list(coll.find({"grp": gs[j]})))
t = time.perf_counter()
coll.create_index("grp")
out["create_index_s"] = round(time.perf_counter() - t, 2)
timed("find_field_index", counts["find_field"], lambda j: list(coll.find({"grp": gs[j]})))
batches = [random.sample(range(n), 100) for _ in range(counts["in100"])]
timed("find_in_100", counts["in100"],
      lambda j: list(coll.find({"_id": {"$in": ["app-%08d" % i for i in batches[j]]}})))


def explain(filt, **kw):
    r = db.command("explain", {"find": "docs", "filter": filt, **kw}, verbosity="queryPlanner")
    plan = r.get("queryPlanner", {})
    text = json.dumps(plan, default=str)
    nodes = sorted({w for w in ("Seq Scan", "Index Scan", "Bitmap Index Scan", "Index Only Scan") if w in text})
    return {"filterPushdown": r.get("filterPushdown"), "limitPushdown": r.get("limitPushdown"),
            "pg_nodes": nodes, "queryPlanner": plan if name.startswith("sqlite") or "raw" in sys.argv else None}


out["explain"] = {
    "_id eq": explain({"_id": ids[0]}, limit=1),
    "_id $eq": explain({"_id": {"$eq": ids[0]}}),
    "grp eq (indexed)": explain({"grp": gs[0]}),
    "_id $in": explain({"_id": {"$in": ids[:3]}}),
    "_id + version (fence)": explain({"_id": ids[0], "version": 0}),
}
# deletes: fresh ids that exist, 100 per call
alive = list(range(n))
random.shuffle(alive)
dels = [alive[k * 100:(k + 1) * 100] for k in range(counts["delete_in"])]
timed("delete_many_in_100", counts["delete_in"],
      lambda j: coll.delete_many({"_id": {"$in": ["app-%08d" % i for i in dels[j]]}}))
timed("insert_many_500", counts["insert_many"],
      lambda j: coll.insert_many([doc(n + j * 500 + i) for i in range(500)]))
print(json.dumps(out))
