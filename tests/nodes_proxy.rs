//! `nodes/{name}/proxy/{path}` with the stock kubectl against `skiff up`: the API server
//! forwards to the node's kubelet over HTTPS (`kubectl get --raw
//! /api/v1/nodes/<node>/proxy/metrics`), or to another port of the node over plain HTTP
//! (`<node>:<port>`), and lists `nodes/proxy` in discovery.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{Cluster, eventually};

/// kubectl's stdout without trailing whitespace.
fn raw(c: &Cluster, args: &[&str]) -> String {
    c.ok(args).trim_end().to_owned()
}

fn node_field(c: &Cluster, jsonpath: &str) -> String {
    c.ok(&[
        "get",
        "nodes",
        "-o",
        &format!("jsonpath={{.items[0]{jsonpath}}}"),
    ])
}

/// A one-request-at-a-time HTTP/1.1 server on all addresses that answers every request with
/// `<method> <target> <body>` (the body sized by Content-Length or chunked).
fn echo_server() -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind echo server");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let (mut length, mut chunked) = (0usize, false);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                let Some((name, value)) = header.split_once(':') else {
                    continue;
                };
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.trim().eq_ignore_ascii_case("chunked");
                }
            }
            let mut body = Vec::new();
            if chunked {
                loop {
                    let mut size = String::new();
                    if reader.read_line(&mut size).unwrap_or(0) == 0 {
                        break;
                    }
                    let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0u8; size + 2]; // the data and its CRLF
                    if size == 0 || reader.read_exact(&mut chunk).is_err() {
                        break;
                    }
                    body.extend_from_slice(&chunk[..size]);
                }
            } else {
                body.resize(length, 0);
                let _ = reader.read_exact(&mut body);
            }
            let mut words = line.split_whitespace();
            let answer = format!(
                "{} {} {}",
                words.next().unwrap_or_default(),
                words.next().unwrap_or_default(),
                String::from_utf8_lossy(&body)
            );
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    port
}

#[test]
fn kubectl_reaches_the_kubelet_through_nodes_proxy() {
    let c = Cluster::start("up", &[]);
    assert!(
        eventually(Duration::from_secs(60), || {
            let out = c.kubectl(&["get", "nodes", "-o", "name"]);
            out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        }),
        "no node registered"
    );
    let node = node_field(&c, ".metadata.name");
    let kubelet_port = node_field(&c, ".status.daemonEndpoints.kubeletEndpoint.Port");

    // Discovery lists the subresource as Kubernetes does.
    let core = c.ok(&["get", "--raw", "/api/v1"]);
    let core: serde_json::Value = serde_json::from_str(&core).expect("APIResourceList");
    let proxy = core["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "nodes/proxy"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(proxy["kind"], "NodeProxyOptions", "{core}");
    assert_eq!(proxy["namespaced"], false);
    assert_eq!(
        proxy["verbs"],
        serde_json::json!(["create", "delete", "get", "patch", "update"])
    );

    // The kubelet's own endpoints, over its HTTPS port with the API server's client cert.
    assert_eq!(
        raw(
            &c,
            &[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{node}/proxy/healthz")
            ]
        ),
        "ok"
    );
    let metrics = c.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics"),
    ]);
    assert!(metrics.contains("kubelet_running_pods"), "{metrics}");
    // The kubelet port spelled out is the same target.
    assert_eq!(
        raw(
            &c,
            &[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{node}:{kubelet_port}/proxy/healthz"),
            ]
        ),
        "ok"
    );

    // What the kubelet does not serve is its 404, passed through.
    let out = c.kubectl(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/nope")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");

    // A node that does not exist.
    let out = c.kubectl(&["get", "--raw", "/api/v1/nodes/nope/proxy/healthz"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");

    // Another port of the node is reached over plain HTTP, with the method, query and body.
    let port = echo_server();
    assert_eq!(
        raw(
            &c,
            &[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{node}:{port}/proxy/some/path?x=1"),
            ]
        ),
        "GET /some/path?x=1"
    );
    let body = c.dir.path().join("body.json");
    std::fs::write(&body, "{\"hello\":1}").expect("write body");
    let created = raw(
        &c,
        &[
            "create",
            "--raw",
            &format!("/api/v1/nodes/http:{node}:{port}/proxy/post"),
            "-f",
            body.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(created, "POST /post {\"hello\":1}");
}
