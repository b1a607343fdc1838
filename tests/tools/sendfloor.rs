//! The floor of a local broadcast: what any server must spend to deliver one small frame to
//! N WebSocket clients over loopback, measured with the same kind of client as
//! `vk-loadtest` (tokio-tungstenite streams read by one task).
//!
//! `vk-sendfloor [connections] [rounds]` (defaults 10000, 5): a child process accepts N
//! WebSocket clients (tungstenite handshakes on a plain thread), then, per round, a plain loop
//! writes one pre-encoded text frame to every socket — no tasks, no queues, no per-target
//! encoding: a server cannot do less. Prints the time until the last client has read the
//! frame, and the writing thread's CPU (which on loopback includes the kernel's receive
//! path). Compare with `vk-loadtest`'s broadcast figures for real servers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::io::Write;
use std::time::{Duration, Instant};

/// An unmasked server-to-client text frame.
fn text_frame(payload: &str) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, payload.len() as u8];
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// The "server", in a process of its own (each side needs N descriptors): prints its URL,
/// accepts N clients with tungstenite handshakes on a plain thread, then for each payload
/// line on stdin writes one frame to every socket and prints the loop's wall and CPU ms.
fn serve(n: usize) {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("ws://{}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let socket = tokio_tungstenite::tungstenite::accept(stream).unwrap();
        sockets.push(socket.into_inner());
    }
    for line in std::io::stdin().lock().lines() {
        let frame = text_frame(&line.unwrap());
        let cpu = venturekit_ws_tests::thread_cpu_ms();
        let started = Instant::now();
        for socket in &mut sockets {
            socket.write_all(&frame).unwrap();
        }
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        println!("{wall} {}", venturekit_ws_tests::thread_cpu_ms() - cpu);
        std::io::stdout().flush().unwrap();
    }
}

#[tokio::main]
async fn main() {
    use std::io::BufRead;
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("serve") {
        args.next();
        return serve(args.next().unwrap().parse().unwrap());
    }
    let n: usize = args.next().map(|v| v.parse().unwrap()).unwrap_or(10_000);
    let rounds: usize = args.next().map(|v| v.parse().unwrap()).unwrap_or(5).max(1);
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["serve", &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_server = server.stdin.take().unwrap();
    let mut from_server = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let url = from_server.next().unwrap().unwrap();

    // The clients, as vk-loadtest opens and reads them.
    let mut streams = venturekit_ws_tests::open_clients(&url, n).await;

    let mut walls = Vec::new();
    let mut writes = Vec::new();
    let mut cpus = Vec::new();
    for round in 0..rounds {
        let payload = format!(r#"{{"action":"message","from":"user0","data":"load{round}"}}"#);
        let started = Instant::now();
        writeln!(to_server, "{payload}").unwrap();
        to_server.flush().unwrap();
        let payload = payload.as_str();
        venturekit_ws_tests::each_receives(
            "the frame",
            &mut streams,
            Duration::from_secs(60),
            |text| assert_eq!(text, payload),
        )
        .await;
        walls.push(started.elapsed());
        let line = from_server.next().unwrap().unwrap();
        let (write, cpu) = line.split_once(' ').unwrap();
        writes.push(write.parse::<f64>().unwrap());
        cpus.push(cpu.parse::<f64>().unwrap());
    }
    drop(to_server);
    let _ = server.wait();
    walls.sort();
    writes.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{n} connections: one frame to all delivered in {:.0} ms median ({:.0}-{:.0} ms, {rounds} rounds); the write loop took {:.0} ms and {:.0} ms of CPU (medians)",
        ms(walls[rounds / 2]),
        ms(walls[0]),
        ms(walls[rounds - 1]),
        writes[rounds / 2],
        cpus[rounds / 2],
    );
}
