//! `otlp_sink PORT`: an OTLP/HTTP receiver that answers every export and
//! counts it, for `benches/http/run.sh` (tracing on, exporting to a local
//! collector). Runs until killed; reports what it received as it goes.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: otlp_sink PORT");
    let sink = waxosuit_test_servers::OtlpReceiver::start_counting(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        port,
    )))?;
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = sink.requests();
        if now != last {
            eprintln!("otlp_sink: {now} export requests, {} bytes", sink.bytes());
            last = now;
        }
    }
}
