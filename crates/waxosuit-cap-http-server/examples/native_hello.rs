//! Native hyper 1 "Hello" server: the baseline the provider (and later the
//! full host) is benchmarked against. It serves the way the provider does —
//! tokio multi-thread runtime, hyper HTTP/1.1 with keep-alive, one task per
//! connection, `TCP_NODELAY` — minus the actor round trip.
//!
//! ```text
//! cargo run --release -p waxosuit-cap-http-server --example native_hello -- 8080
//! ```
//!
//! The port comes from the first argument, else `PORT`, else 8080; `0` picks
//! a free one. The bound address is printed on stdout.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8080);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("native_hello listening on {}", listener.local_addr()?);
    let http = http1::Builder::new();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"Hello",
                ))))
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}
