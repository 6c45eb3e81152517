//! `__console_log` is bounded per actor: a guest that logs in a tight loop,
//! with lines longer than its memory, writes at most
//! `MAX_LINES_PER_SECOND` lines of at most `MAX_LINE_BYTES` each, the
//! call itself still succeeds, and the drops are reported.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use waxosuit_runtime::Limits;
use waxosuit_runtime::console::{MAX_LINE_BYTES, MAX_LINES_PER_SECOND};

use waxosuit_runtime::{Actor, RuntimeError};

use crate::common::{TestHandler, key, runtime};

async fn load(n: u32, module: &[u8]) -> Result<Actor<TestHandler>, RuntimeError> {
    runtime()
        .load(key(n), module, Limits::default(), Arc::default())
        .await
}

/// Every log line written while the guard is held, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

/// Logs `lines` lines of `len` bytes from address 0 (of one 64 KiB page),
/// then answers "ok".
fn flooder(lines: u32, len: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "wapc" "__console_log" (func $log (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "ok")
  (func (export "__guest_call") (param i32 i32) (result i32)
    (local $i i32)
    (loop $again
      (call $log (i32.const 0) (i32.const {len}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {lines}))))
    (call $guest_response (i32.const 0) (i32.const 2))
    (i32.const 1)))"#
    ))
    .expect("flooder WAT")
}

#[tokio::test]
async fn a_console_flood_writes_the_budget_cuts_long_lines_and_reports_the_drops()
-> anyhow::Result<()> {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Global: guests may run on other threads. No other test in this
    // binary installs a subscriber; lines are told apart by actor key.
    tracing::subscriber::set_global_default(subscriber)?;
    let (flooding, other) = (key(901).to_string(), key(902).to_string());

    // 4 MiB lines from a 64 KiB memory: before the cut this was a
    // protocol fault; now the first MAX_LINE_BYTES are written.
    // 200 times the budget. The budget is per one-second window: a call
    // that spans more windows (a loaded machine) may write the budget in
    // each of them, no more.
    let flood = 20_000;
    // Counted from before the load: the actor's first window opens when
    // its budget is made, so a call timed from its own start could span
    // one window more than its length says (seen on CI: 190 lines written
    // in a call shorter than a second).
    let started = std::time::Instant::now();
    let actor = load(901, &flooder(flood, 4 << 20)).await?;
    let reply = actor.call("go", b"").await?;
    let windows = started.elapsed().as_secs() as usize + 1;
    assert_eq!(reply, b"ok", "the flooding call itself succeeds");

    let text = captured.text();
    let written = text
        .lines()
        .filter(|l| l.contains("[cut: ") && l.contains(&flooding))
        .count();
    let budget = MAX_LINES_PER_SECOND as usize;
    assert!(
        (budget..=budget * windows).contains(&written),
        "{flood} lines in one call over {windows} window(s), {written} written"
    );
    assert!(
        text.contains(&format!("[cut: {} bytes in all]", 4 << 20)),
        "a cut line says so"
    );
    let logged: usize = text
        .lines()
        .filter(|l| l.contains(&flooding))
        .map(str::len)
        .sum();
    let bound = written * (MAX_LINE_BYTES + 512);
    assert!(
        logged <= bound,
        "{logged} bytes of log for {flood} lines, bound {bound}"
    );

    // Once the window has passed, the next line reports what was dropped.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let short = load(902, &flooder(1, 2)).await?;
    short.call("go", b"").await?;
    // Another actor has its own budget: it writes.
    assert!(
        captured.text().lines().any(|l| l.contains(&other)),
        "another actor's line is written: {:?}",
        captured
            .text()
            .lines()
            .filter(|l| !l.contains("[cut: "))
            .collect::<Vec<_>>()
    );
    actor.call("go", b"").await?;
    // Every line not written was counted and reported: in one report when
    // the flood fit one window (the usual case), else one per window.
    let dropped = flood as usize - written;
    let reported: usize = captured
        .text()
        .lines()
        .filter(|l| l.contains(&flooding))
        .filter_map(|l| l.split("dropped=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert!(
        if windows == 1 {
            captured.text().contains(&format!("dropped={dropped}"))
        } else {
            reported >= dropped
        },
        "the drop count of the closed window is reported: {}",
        captured
            .text()
            .lines()
            .filter(|l| l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
