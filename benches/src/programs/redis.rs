//! `redis`: redis-server (the allocator under test preloaded) on 127.0.0.1
//! and a free port, driven by redis-benchmark (never preloaded): small values
//! (SET/GET/LPUSH/LPOP/INCR, 64 bytes, 16 clients) and 1 MiB values (SET/GET:
//! large blocks). Time: the benchmark's wall time; throughput and p99 per
//! test from its CSV; the server's peak RSS (VmHWM) and its RSS once idle.

use super::measure::{Invocation, Sampler};
use super::{Context, Program, Sample};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "redis",
    about: "redis-server under redis-benchmark: small values, then 1 MiB values",
    needs: &["redis-server", "redis-benchmark"],
    probe: &["redis-server", "--version"],
    prepare: |_| Ok(()),
    run,
};

/// A free loopback port (bound, read, released).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// One inline command; the reply's first bytes.
fn ask(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(command.as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// One redis-benchmark test: name, requests per second, p99 latency in ms.
type Test = (String, f64, f64);

/// redis-benchmark `-q --csv ARGS` (bounded by `timeout`).
fn benchmark(port: u16, args: &[&str]) -> Result<Vec<Test>, String> {
    let out = Command::new("timeout")
        .arg("300")
        .arg("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "--csv"])
        .args(args)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-benchmark {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim_matches('"').to_string())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(t), Some(r), Some(p)) = (col("test"), col("rps"), col("p99_latency_ms")) else {
        return Err(format!("redis-benchmark: unexpected CSV header {header:?}"));
    };
    Ok(lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(|x| x.trim_matches('"')).collect();
            Some((
                f.get(t)?.to_string(),
                f.get(r)?.parse().ok()?,
                f.get(p)?.parse().ok()?,
            ))
        })
        .collect())
}

fn run(cx: &Context) -> Result<Sample, String> {
    let port = free_port()?;
    let invocation = Invocation::new(
        cx,
        &[
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ],
    );
    let mut server = invocation
        .command()
        .and_then(|mut c| c.stderr(Stdio::null()).spawn())
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let sampler = Sampler::start(server.id());
    let result = drive(cx, port, &mut server);
    // Read before the shutdown, which frees the data set.
    sampler.sample_now();
    let memory = sampler.finish();
    // Stopped whatever happened: SHUTDOWN, then the hard way.
    let _ = ask(port, "SHUTDOWN NOSAVE\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
    let (wall_s, tests) = result?;
    let mut sample = Sample {
        wall_s,
        peak_kb: memory.peak_kb,
        final_kb: memory.last_kb,
        metrics: Default::default(),
    };
    for (test, rps, p99) in tests {
        sample.metrics.insert(format!("{test} req/s"), rps);
        sample.metrics.insert(format!("{test} p99 ms"), p99);
    }
    Ok(sample)
}

/// Wait for the server, run both benchmarks, let it go idle.
fn drive(
    cx: &Context,
    port: u16,
    server: &mut std::process::Child,
) -> Result<(f64, Vec<Test>), String> {
    let up = Instant::now();
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!(
                "redis-server exited at start ({status}; see redis.log)"
            ));
        }
        if ask(port, "PING\r\n").is_some_and(|r| r.starts_with("+PONG")) {
            break;
        }
        if up.elapsed() > Duration::from_secs(20) {
            return Err(format!("redis-server did not answer on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let small = cx.scaled(30_000, 1_000).to_string();
    let large = cx.scaled(1_000, 10).to_string();
    let start = Instant::now();
    let mut tests = benchmark(
        port,
        &[
            "-n",
            &small,
            "-c",
            "16",
            "-d",
            "64",
            "-r",
            "10000",
            "-t",
            "set,get,lpush,lpop,incr",
        ],
    )?;
    for (test, rps, p99) in benchmark(
        port,
        &["-n", &large, "-c", "4", "-d", "1048576", "-t", "set,get"],
    )? {
        tests.push((format!("{test} 1MiB"), rps, p99));
    }
    let wall_s = start.elapsed().as_secs_f64();
    // Idle a moment so lazy purges can run before "final RSS".
    std::thread::sleep(Duration::from_millis(200));
    Ok((wall_s, tests))
}
