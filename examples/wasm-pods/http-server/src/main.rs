//! A tiny HTTP/1.x server on wasi:sockets (`std::net` compiled for wasm32-wasip2).
//!
//! Listens on `0.0.0.0:$PORT` (default 8080) inside the pod's network namespace and answers
//! every request with `200 OK` and a greeting. Connections are served one at a time (WASI
//! preview 2 guests are single-threaded).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let address = format!("0.0.0.0:{port}");
    let listener = match TcpListener::bind(&address) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            std::process::exit(1);
        }
    };
    println!("listening on {address}");
    let mut served: u64 = 0;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                served += 1;
                if let Err(error) = serve(stream, served) {
                    eprintln!("request {served}: {error}");
                }
            }
            Err(error) => eprintln!("accept: {error}"),
        }
    }
}

fn serve(mut stream: TcpStream, served: u64) -> std::io::Result<()> {
    // Read up to the blank line ending the headers (WASI has no dup, so no BufReader clone).
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    println!("{served}: {}", text.lines().next().unwrap_or_default());
    let body = format!("hello from skiff wasm (request {served})\n");
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
