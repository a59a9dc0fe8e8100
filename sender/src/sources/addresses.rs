//! The addresses a source's configuration names, parsed once for both the configuration check
//! (`crate::config`) and the sources that connect: an MQTT broker's URL and OPC UA NodeIds. A leaf
//! module, so the configuration never imports the sources that import it.

use std::str::FromStr;

use opcua::types::NodeId;

/// Host, port and whether TLS is used, from `mqtt://host[:port]` or `mqtts://host[:port]`.
pub fn broker_address(url: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else {
        return Err(format!("\"{url}\" must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!("\"{url}\" must be mqtt[s]://host[:port] (credentials go in username and password)"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port =
                port.parse::<u16>().map_err(|_| format!("\"{url}\": port \"{port}\" is not a number up to 65535"))?;
            (host, port)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("\"{url}\" has no host"));
    }
    Ok((host.to_owned(), port, tls))
}

/// Parses a NodeId as OPC UA writes it (`ns=2;s=Line1.Temp`, `i=2258`, `ns=3;g=…`, `ns=1;b=…`).
pub fn parse_node_id(text: &str) -> Result<NodeId, String> {
    NodeId::from_str(text).map_err(|_| "not a NodeId: write it as ns=2;s=Name, ns=3;i=1042, i=2258, …".to_owned())
}
