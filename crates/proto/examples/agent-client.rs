//! A tiny host-side client for `vm/agent-check.sh`: connects to the agent's QEMU chardev
//! socket, waits for Hello, sends Ping, then Shutdown, and prints the times.
//!
//! `agent-client SOCK [--t0-us MICROS] [--deadline-ms MS]`
//!
//! `--t0-us`: when QEMU was started, in µs since the Unix epoch (default: when this client
//! started); the printed times count from it. `--deadline-ms`: how long to wait for the socket
//! and the Hello together (default 10000). Prints one line
//! `hello_ms=H pong_ms=P shutdown_ms=S agent_version=V` and exits 0, or prints the error and
//! exits 1.

use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isola_proto::Client;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            println!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut sock = None;
    let mut t0_us = now_us();
    let mut deadline_ms = 10_000u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--t0-us" => t0_us = args.next().ok_or("--t0-us wants a value")?.parse()?,
            "--deadline-ms" => {
                deadline_ms = args.next().ok_or("--deadline-ms wants a value")?.parse()?
            }
            _ if sock.is_none() => sock = Some(a),
            _ => return Err(format!("unexpected argument {a}").into()),
        }
    }
    let sock = sock.ok_or("usage: agent-client SOCK [--t0-us MICROS] [--deadline-ms MS]")?;
    let since_t0 = || (now_us().saturating_sub(t0_us)) as f64 / 1000.0;
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);

    // QEMU creates the listening socket shortly after it starts.
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("connect {sock}: {e} (gave up after {deadline_ms} ms)").into())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let mut client = Client::new(stream);
    let info = client.wait_hello(deadline.saturating_duration_since(Instant::now()))?;
    let hello_ms = since_t0();
    client.ping(REQUEST_TIMEOUT)?;
    let pong_ms = since_t0();
    client.shutdown(REQUEST_TIMEOUT)?;
    let shutdown_ms = since_t0();
    Ok(format!(
        "hello_ms={hello_ms:.0} pong_ms={pong_ms:.0} shutdown_ms={shutdown_ms:.0} agent_version={}",
        info.agent_version
    ))
}
