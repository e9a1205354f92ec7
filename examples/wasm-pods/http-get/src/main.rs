//! Fetches `http://$HOST:$PORT/` (defaults 127.0.0.1:8080), retrying for about 5 s, prints
//! the status line and body, and exits 0; exits 1 if it never connects. With
//! `INTERVAL_SECONDS` set it fetches again every that many seconds and never exits, so it
//! can sit in a `restartPolicy: Always` pod.
//!
//! Run it next to `http-server` in one pod to see two wasm containers talk over localhost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn main() {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let interval: Option<u64> = std::env::var("INTERVAL_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let address = format!("{host}:{port}");
    let Some(interval) = interval else {
        if !fetch(&host, &address) {
            std::process::exit(1);
        }
        return;
    };
    loop {
        fetch(&host, &address);
        std::thread::sleep(Duration::from_secs(interval));
    }
}

/// One fetch with retries; prints the response or the error. True on success.
fn fetch(host: &str, address: &str) -> bool {
    let mut last_error = None;
    for _ in 0..50 {
        match TcpStream::connect(&address) {
            Ok(mut stream) => {
                let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
                let mut response = String::new();
                let result = stream
                    .write_all(request.as_bytes())
                    .and_then(|()| stream.read_to_string(&mut response));
                match result {
                    Ok(_) => {
                        let mut lines = response.lines();
                        println!("{}", lines.next().unwrap_or_default());
                        let body: Vec<&str> = lines.skip_while(|l| !l.is_empty()).skip(1).collect();
                        for line in body {
                            println!("{line}");
                        }
                        return true;
                    }
                    Err(error) => last_error = Some(error),
                }
            }
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "cannot fetch http://{address}/: {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    );
    false
}
