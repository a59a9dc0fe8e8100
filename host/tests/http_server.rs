//! The hardened HTTP server on loopback: slowloris heads and idle connections are closed after
//! their timeouts, idle connections give way to new ones at the cap, a client that stops reading
//! is disconnected and its response dropped, and keep-alive still works.
//!
//! Timeouts are set short here; every wait is a deadline guard (the test fails if something takes
//! far longer than it should), never a measurement.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::routing::get;
use diode_host::http_server::{HttpLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Generous: a deadline guard on a busy machine, not a measurement.
const GUARD: Duration = Duration::from_secs(20);

fn limits(max_connections: usize) -> HttpLimits {
    HttpLimits {
        max_connections,
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        write_timeout: Duration::from_millis(300),
    }
}

/// Notifies when the response stream it is part of is dropped.
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// An endless response of 64 KiB chunks: only a client that reads keeps it going.
struct Endless {
    _dropped: NotifyOnDrop,
}

impl futures_core::Stream for Endless {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(Some(Ok(Bytes::from(vec![b'x'; 64 * 1024]))))
    }
}

async fn start(limits: HttpLimits, dropped: Arc<Notify>) -> SocketAddr {
    let app = axum::Router::new().route("/hello", get(|| async { "hello" })).route(
        "/endless",
        get(move || {
            let stream = Endless { _dropped: NotifyOnDrop(Arc::clone(&dropped)) };
            async move { Body::from_stream(stream) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, limits, "test.max_connections"));
    address
}

/// Reads until the server closes the connection (end of stream or reset); fails after [`GUARD`].
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 4096];
    let result = tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(result.is_ok(), "the server did not close the connection");
}

async fn get_hello(stream: &mut TcpStream, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    stream
        .write_all(format!("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        while !response.ends_with(b"hello") {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before the response: {}", String::from_utf8_lossy(&response));
            response.extend_from_slice(&buffer[..read]);
        }
    })
    .await
    .expect("the response came");
    String::from_utf8(response).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_closed_after_the_header_timeout() {
    let address = start(limits(16), Arc::default()).await;
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    // One more header byte every 100 ms, for ever: only the header timeout ends it.
    let writer = tokio::spawn(async move {
        let (mut read_half, mut write_half) = slow.into_split();
        let dripping = async {
            loop {
                if write_half.write_all(b"X").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut buffer = [0u8; 1024];
        tokio::select! {
            () = dripping => {}
            _ = read_half.read(&mut buffer) => {}
        }
    });
    tokio::time::timeout(GUARD, writer).await.expect("the slowloris connection was closed").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_keep_alive_still_works() {
    let address = start(limits(16), Arc::default()).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    // Two requests on one connection, then nothing.
    assert!(get_hello(&mut client, false).await.starts_with("HTTP/1.1 200"));
    assert!(get_hello(&mut client, false).await.starts_with("HTTP/1.1 200"));
    closed_by_server(&mut client).await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    closed_by_server(&mut silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_makes_room_for_a_new_one() {
    let mut limits = limits(4);
    (limits.header_timeout, limits.idle_timeout) = (Duration::from_secs(3_600), Duration::from_secs(3_600));
    let address = start(limits, Arc::default()).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    for _ in 0..3 {
        let mut client = TcpStream::connect(address).await.unwrap();
        assert!(get_hello(&mut client, true).await.starts_with("HTTP/1.1 200"));
    }
    // Idle connections were closed to make room: all four are idle alike, so whichever the server
    // registered first goes first.
    let mut closing = tokio::task::JoinSet::new();
    for mut stream in idle {
        closing.spawn(async move { closed_by_server(&mut stream).await });
    }
    let first = tokio::time::timeout(GUARD, closing.join_next()).await;
    assert!(matches!(first, Ok(Some(Ok(())))), "no idle connection was closed to make room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_with_every_connection_busy_a_new_connection_is_closed() {
    let mut limits = limits(2);
    (limits.header_timeout, limits.idle_timeout, limits.write_timeout) =
        (Duration::from_secs(3_600), Duration::from_secs(3_600), Duration::from_secs(3_600));
    let address = start(limits, Arc::default()).await;
    // Two endless responses nobody reads: both connections are busy.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let mut first = [0u8; 12];
        client.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        busy.push(client);
    }
    let mut refused = TcpStream::connect(address).await.unwrap();
    closed_by_server(&mut refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_its_response_dropped() {
    let dropped = Arc::new(Notify::new());
    let address = start(limits(16), Arc::clone(&dropped)).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    client.write_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    client.read_exact(&mut first).await.unwrap();
    // Read nothing more: the socket buffers fill, the write times out, the response is dropped.
    tokio::time::timeout(GUARD, dropped.notified())
        .await
        .expect("the response of a client that stopped reading was dropped");
    drop(client);
}
