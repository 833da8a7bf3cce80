"""Two clients race the same fenced update, and duplicate keys (docs/testbed.md, "FerretDB on PostgreSQL"). argv: name uri rounds."""
import sys, threading

from pymongo import MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

name, uri, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
clients = [MongoClient(uri, serverSelectionTimeoutMS=5000) for _ in range(2)]
setup = clients[0]["fence"]
setup.drop_collection("heads")
setup.drop_collection("fam")


def race(coll_name, op):
    """Returns {number of winners in a round: rounds}."""
    setup[coll_name].insert_many([{"_id": "e%05d" % r, "version": 3} for r in range(rounds)])
    barrier = threading.Barrier(2)
    wins = [[0] * rounds for _ in range(2)]

    def writer(k):
        coll = clients[k]["fence"][coll_name]
        for r in range(rounds):
            barrier.wait()
            wins[k][r] = op(coll, "e%05d" % r, k)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hist = {}
    for r in range(rounds):
        n = wins[0][r] + wins[1][r]
        hist[n] = hist.get(n, 0) + 1
    return hist


def update_one(coll, _id, k):
    return coll.update_one({"_id": _id, "version": 3}, {"$set": {"version": 4, "by": k}}).modified_count


def find_and_modify(coll, _id, k):
    doc = coll.find_one_and_update({"_id": _id, "version": 3}, {"$set": {"version": 4, "by": k}},
                                   return_document=ReturnDocument.AFTER)
    return 1 if doc is not None else 0


print(name, "update_one fenced, winners per round:", race("heads", update_one), flush=True)
print(name, "findAndModify fenced, winners per round:", race("fam", find_and_modify), flush=True)

# unique indexes
u = setup["uniq"]
setup.drop_collection("uniq")
u.create_index("email", unique=True)
u.insert_one({"_id": 1, "email": "a@example.org"})
for label, fn in [("dup on unique index", lambda: u.insert_one({"_id": 2, "email": "a@example.org"})),
                  ("dup _id", lambda: u.insert_one({"_id": 1, "email": "b@example.org"})),
                  ("update into dup", lambda: (u.insert_one({"_id": 3, "email": "c@example.org"}),
                                               u.update_one({"_id": 3}, {"$set": {"email": "a@example.org"}})))]:
    try:
        fn()
        print(name, label, ": accepted (no error)")
    except DuplicateKeyError as e:
        print(name, label, ": DuplicateKeyError code", e.code)
    except Exception as e:  # noqa: BLE001 - report whatever the server answered
        print(name, label, ":", type(e).__name__, getattr(e, "code", None), str(e)[:200])
print(name, "docs with the unique email:", u.count_documents({"email": "a@example.org"}))
