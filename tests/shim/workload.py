"""An allocation-heavy Python workload for the malloc shim's tests.

Dicts, lists, strings, threads and a multiprocessing pool that forks, each
reduced to a digest of what it built, so that a wrong byte anywhere changes
the checksum printed last. The data depend only on the integers below (no
str hash, no set order, no addresses): the checksum is the same on every
run, on every allocator, on any Python 3. With PYTHONMALLOC=malloc every
object comes from malloc rather than Python's own small-object arenas.
"""
import hashlib
import multiprocessing
import sys
import threading


def lcg(seed):
    x = seed & 0xFFFFFFFF
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        yield x


def dicts(seed, n):
    rnd = lcg(seed)
    d = {}
    for i in range(n):
        k = "key-%d-%d" % (i, next(rnd) % 1000)
        d[k] = [i, str(i) * (next(rnd) % 40), {"n": i}]
    # delete every third entry, then grow again: the table shrinks and regrows
    for i, k in enumerate(sorted(d)):
        if i % 3 == 0:
            del d[k]
    for i in range(n // 2):
        d["more-%d" % i] = bytes(next(rnd) % 300)
    h = hashlib.sha256()
    for k in sorted(d):
        v = d[k]
        h.update(k.encode())
        h.update(repr(v).encode() if not isinstance(v, bytes) else v)
    return h.hexdigest()


def lists(seed, n):
    rnd = lcg(seed)
    rows = [(next(rnd) % 997, "r%d" % next(rnd), [next(rnd) % 7] * (next(rnd) % 30)) for _ in range(n)]
    rows.sort()
    nested = [rows[i:i + 50] for i in range(0, len(rows), 50)]
    flat = [x for chunk in reversed(nested) for x in chunk]
    h = hashlib.sha256()
    for r in flat:
        h.update(repr(r).encode())
    return h.hexdigest()


def strings(seed, n):
    rnd = lcg(seed)
    s = ""
    parts = []
    for i in range(n):
        piece = chr(97 + next(rnd) % 26) * (1 + next(rnd) % 200)
        s += piece          # grows by realloc in place or by copy
        parts.append(piece.upper())
        if len(s) > 100000:
            parts.append(s[::-1][:1000])
            s = s[len(s) // 2:]
    joined = "|".join(parts)
    words = joined.split("|")
    big = "x" * (1 << 22)   # a large buffer (vmalloc)
    h = hashlib.sha256()
    h.update(s.encode())
    h.update(joined.encode())
    h.update(str(len(words)).encode())
    h.update(big[-10:].encode())
    return h.hexdigest()


def threaded(seed):
    results = [None] * 8

    def work(i):
        results[i] = dicts(seed + i, 3000) + lists(seed + i, 3000) + strings(seed + i, 2000)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return hashlib.sha256("".join(results).encode()).hexdigest()


def pool_task(i):
    # runs in a forked child: allocates at once, on memory inherited from a
    # parent that had threads
    return dicts(1000 + i, 2000) + strings(1000 + i, 500)


def pooled():
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        out = pool.map(pool_task, range(12))
    return hashlib.sha256("".join(out).encode()).hexdigest()


def main():
    parts = [dicts(1, 40000), lists(2, 40000), strings(3, 20000)]
    # a thread keeps allocating while the pool forks
    background = threading.Thread(target=lambda: parts.append(threaded(10)))
    background.start()
    pooled_digest = pooled()
    background.join()
    parts.append(pooled_digest)
    for name, digest in zip(("dicts", "lists", "strings", "threads", "pool"), parts):
        print(name, digest[:16])
    print("checksum", hashlib.sha256("".join(parts).encode()).hexdigest()[:32])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
