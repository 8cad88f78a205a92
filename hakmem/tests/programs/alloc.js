// node under LD_PRELOAD: V8 keeps its own heap, but Buffers, strings
// handed to the runtime and libuv's structures come from malloc.
const m = new Map();
for (let i = 0; i < 300000; i++) m.set("k" + i, { a: i, b: "x".repeat(i % 40) });
let s = 0;
for (const [, v] of m) if (v.a % 7 === 0) s += v.b.length;
const bufs = [];
for (let i = 0; i < 100; i++) bufs.push(Buffer.alloc((i % 8 + 1) << 17, i));
let t = 0;
for (const b of bufs) t += b[b.length - 1];
console.log(s, m.size, bufs.length, t, JSON.stringify([...m.keys()].slice(0, 3)));
