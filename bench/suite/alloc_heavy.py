"""bench/suite/alloc_heavy.py - a Python program that allocates heavily.

Run by the benchmark suite (bench/suite/suite.c) under each allocator; it
builds and discards the objects a typical script makes (dicts of records,
lists, strings joined and split, JSON text, sorted copies) so that CPython's
allocations above its own small-object arena (512 bytes) go to malloc, and
checks its results so that a broken allocator fails rather than wins.
Takes about a second under glibc.
"""
import json
import random
import sys


def records(rng, count):
    """A list of dict records with string and list fields of varied sizes."""
    out = []
    for i in range(count):
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 40)))
        out.append({
            "id": i,
            "name": name,
            "tags": [name[:k] for k in range(1, min(len(name), 12))],
            "payload": "x" * rng.choice((16, 100, 600, 3000)),
            "scores": [rng.random() for _ in range(rng.randint(1, 50))],
        })
    return out


def index_by_prefix(rows):
    """A dict of lists: the kind of table a script builds to group records."""
    index = {}
    for row in rows:
        index.setdefault(row["name"][:2], []).append(row["id"])
    return index


def text_churn(rows):
    """Strings made and thrown away: formatting, joining, splitting."""
    lines = ["%d,%s,%.3f,%s" % (r["id"], r["name"], sum(r["scores"]), "|".join(r["tags"])) for r in rows]
    blob = "\n".join(lines)
    fields = [line.split(",") for line in blob.split("\n")]
    return sum(len(f[1]) for f in fields)


def main():
    rng = random.Random(20260516)
    checksum = 0
    for round_number in range(3):
        rows = records(rng, 2000)
        index = index_by_prefix(rows)
        checksum += len(index) + text_churn(rows)
        text = json.dumps(rows)
        again = json.loads(text)
        if again != rows:
            sys.exit("alloc_heavy.py: JSON round trip changed the records")
        by_score = sorted(again, key=lambda r: (sum(r["scores"]), r["id"]))
        checksum += by_score[0]["id"] + len(text)
        # A big dict of tuples, grown and then emptied, as caches do.
        cache = {(i, str(i)): [i] * (i % 17) for i in range(40000)}
        for key in list(cache)[::2]:
            del cache[key]
        checksum += len(cache)
        del rows, index, text, again, by_score, cache
    print("alloc_heavy.py: checksum", checksum)


if __name__ == "__main__":
    main()
