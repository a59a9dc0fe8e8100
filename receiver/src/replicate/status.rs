//! Replication in `diode-receiver status`: the connections live only in the running receiver, so
//! the command asks its HTTP listener (`/api/v1/replication`, with the bearer token if one is set)
//! and prints each connection, or says why it could not.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::config::ReceiverConfig;

/// How long `status` waits for the running receiver.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read (a thousand connections fit).
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// The running receiver's replication status, for a config with `[serve]` or `[upstream]`:
/// `None` if it has neither, `Some(Err(why))` if the receiver could not be asked.
pub fn fetch(config: &ReceiverConfig) -> Option<Result<Value, String>> {
    if config.serve.is_none() && config.upstream.is_none() {
        return None;
    }
    let Some(listen) = config.http.listen else {
        return Some(Err("set http.listen to see the connections of the running receiver".to_owned()));
    };
    Some(ask(listen, config.http.bearer_token.as_deref()))
}

fn ask(listen: SocketAddr, token: Option<&str>) -> Result<Value, String> {
    // A wildcard listen address is reached on loopback.
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(if address.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let failed =
        |error: std::io::Error| format!("the running receiver at {address} does not answer ({error}); is it running?");
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(failed)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(failed)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(failed)?;
    let authorization = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    write!(stream, "GET /api/v1/replication HTTP/1.0\r\nHost: {address}\r\n{authorization}\r\n").map_err(failed)?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER_BYTES).read_to_end(&mut answer).map_err(failed)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(|| format!("{address} answered no HTTP"))?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200") {
        return Err(format!("{address} answered {status_line:?} to /api/v1/replication"));
    }
    serde_json::from_str(body).map_err(|error| format!("{address} answered JSON that does not parse: {error}"))
}

/// `status`'s text for the replication status (or why it is missing).
pub fn text(status: &Result<Value, String>) -> String {
    let mut out = String::new();
    let status = match status {
        Ok(status) => status,
        Err(why) => {
            let _ = writeln!(out, "replication: {why}");
            return out;
        }
    };
    let number = |value: &Value, key: &str| value[key].as_u64().unwrap_or(0);
    if status["serving"].as_bool() == Some(true) {
        let downstreams = status["downstreams"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(out, "serving   {} downstream(s) connected", downstreams.len());
        for downstream in &downstreams {
            let position = &downstream["position"];
            let _ = writeln!(
                out,
                "  {} ({}): holds {} segments, {} points; lag {} segments; sent {} segments, {} bytes; \
                 {} refused; {} catch-ups from the audit log",
                downstream["name"].as_str().unwrap_or("?"),
                downstream["peer"].as_str().unwrap_or("?"),
                number(position, "segments"),
                number(position, "points"),
                number(downstream, "lag_segments"),
                number(downstream, "segments_sent"),
                number(downstream, "bytes_sent"),
                number(position, "refused"),
                number(downstream, "catch_ups"),
            );
        }
    }
    if let Some(upstream) = status["upstream"].as_object() {
        let upstream = Value::Object(upstream.clone());
        let connected = if upstream["connected"].as_bool() == Some(true) { "connected" } else { "not connected" };
        let _ = writeln!(
            out,
            "upstream  {} {connected}: received {} segments, {} bytes; {} connections, {} failures{}",
            upstream["address"].as_str().unwrap_or("?"),
            number(&upstream, "segments_received"),
            number(&upstream, "bytes_received"),
            number(&upstream, "connects"),
            number(&upstream, "failures"),
            upstream["last_error"].as_str().map(|error| format!(" (last: {error})")).unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_connection_with_its_position_lag_and_bytes() {
        let status = serde_json::json!({
            "serving": true,
            "downstreams": [{"name": "site-a", "peer": "127.0.0.1:5000", "segments_sent": 7, "bytes_sent": 900,
                "catch_ups": 1, "lag_segments": 2, "position": {"segments": 5, "points": 50, "refused": 0}}],
            "upstream": {"address": "127.0.0.1:7500", "connected": true, "segments_received": 9,
                "bytes_received": 1000, "connects": 1, "failures": 0, "last_error": null},
        });
        let text = text(&Ok(status));
        assert!(
            text.contains(
                "site-a (127.0.0.1:5000): holds 5 segments, 50 points; lag 2 segments; sent 7 segments, 900 bytes"
            ),
            "{text}"
        );
        assert!(text.contains("upstream  127.0.0.1:7500 connected: received 9 segments, 1000 bytes"), "{text}");
    }

    #[test]
    fn a_receiver_that_does_not_answer_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = ask(address, None).unwrap_err();
        assert!(error.contains("is it running"), "{error}");
    }
}
