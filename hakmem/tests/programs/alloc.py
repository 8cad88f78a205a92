# Allocation-heavy Python: dicts, lists, tuples, str joins, a json round trip.
import hashlib, json
h = hashlib.sha256()
d = {}
for i in range(100000):
    d["k%07d" % i] = [i, str(i * 7), (i, i + 1), {"v": i % 97}]
for i in range(0, 100000, 3):
    del d["k%07d" % i]
h.update(str(len(d)).encode())
rows = [{"id": i, "name": "n" * (i % 50), "tags": list(range(i % 20)), "x": i / 7}
        for i in range(20000)]
text = json.dumps(rows, sort_keys=True)
back = json.loads(text)
assert back == rows
h.update(text.encode())
parts = []
for i in range(80000):
    parts.append("-".join(str(j) for j in range(i % 30)))
big = "\n".join(parts)
h.update(big.encode())
words = big.split("-")
h.update(str(sorted(set(words))[:100]).encode())
acc = bytearray()
for i in range(5000):
    acc += bytes(i % 256 for _ in range(i % 300))
h.update(acc)
print(len(d), len(text), len(big), len(words), len(acc))
print(h.hexdigest())
