//! Native hyper 1 "Hello" server: the baseline the provider (and the full
//! host) is benchmarked against. By default it is the stock hyper server —
//! tokio multi-thread runtime, hyper HTTP/1.1 with keep-alive, one task per
//! connection, `TCP_NODELAY` — minus the actor round trip.
//!
//! ```text
//! cargo run --release -p waxosuit-cap-http-server --example native_hello -- 8080
//! cargo run --release -p waxosuit-cap-http-server --example native_hello -- 8080 per-core
//! ```
//!
//! With `per-core` it serves connections the way the provider does: each on
//! one of a set of single-worker runtimes, one per core, for its whole life
//! (see the provider's connection threads). That variant shows how much of
//! the provider's standing against the stock server is that architecture.
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
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Handle, Runtime};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8080);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let per_core = std::env::args().nth(2).is_some_and(|a| a == "per-core");
    // Kept alive for as long as `main` runs.
    let runtimes: Vec<Runtime> = if per_core {
        let cores = std::thread::available_parallelism()?.get();
        (0..cores)
            .map(|_| {
                Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let handles: Vec<Handle> = runtimes.iter().map(|r| r.handle().clone()).collect();
    println!(
        "native_hello{} listening on {}",
        if per_core { " (per-core)" } else { "" },
        listener.local_addr()?
    );
    let served = accept_loop(&listener, &handles).await;
    // Dropping a runtime inside async code would panic.
    runtimes.into_iter().for_each(Runtime::shutdown_background);
    served
}

/// Accepts forever, spreading connections round-robin over `handles` (or
/// onto the current runtime when there are none).
async fn accept_loop(
    listener: &TcpListener,
    handles: &[Handle],
) -> Result<(), Box<dyn std::error::Error>> {
    for next in (0..handles.len().max(1)).cycle() {
        let (stream, _) = listener.accept().await?;
        match handles.get(next) {
            // Re-registered on the serving runtime's reactor, as the provider does.
            Some(handle) => {
                let stream = stream.into_std()?;
                handle.spawn(async move { serve(TcpStream::from_std(stream)?).await });
            }
            None => {
                tokio::spawn(serve(stream));
            }
        }
    }
    unreachable!("`cycle` over a non-empty range never ends")
}

async fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let conn = http1::Builder::new().serve_connection(
        TokioIo::new(stream),
        service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                b"Hello",
            ))))
        }),
    );
    if let Err(e) = conn.await {
        eprintln!("connection error: {e}");
    }
    Ok(())
}
