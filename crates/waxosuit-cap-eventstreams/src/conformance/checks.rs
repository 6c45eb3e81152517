//! The checks of the suite, one function each; [`run`](super::run) lists
//! them.

use waxosuit_codec::eventstreams::{
    Event, OP_DELIVER_EVENT, OP_QUERY_STREAM, OP_WRITE_EVENT, WriteResponse,
};

use super::{
    BINDING, Client, OTHER_BINDING, Outcome, Subject, event, expect, ids, parse_id, query,
};
use crate::{EventId, MAX_COUNT};

pub(super) async fn round_trip(s: &Client<'_, impl Subject>) -> Outcome {
    let long = "x".repeat(4096);
    let written: [&[(&str, &str)]; 3] = [
        &[("sku", "A-1"), ("qty", "2")],
        &[("sku", "B-7"), ("note", &long)],
        &[("", ""), ("ünï", "✓ wörld"), ("empty", "")],
    ];
    let mut expected = Vec::new();
    for values in written {
        // The store assigns ids; what the actor puts there is ignored.
        let mut given = event("rt:orders", values);
        given.event_id = "999-7".to_string();
        let reply: WriteResponse = s.ok_on(BINDING, OP_WRITE_EVENT, &given).await?;
        if reply.event_id == given.event_id {
            return Err("`WriteEvent` kept the `eventId` the actor sent".into());
        }
        expected.push(Event {
            event_id: reply.event_id,
            ..event("rt:orders", values)
        });
    }
    expect(
        "the events queried back",
        &s.query("rt:orders", None, 0).await?,
        &expected,
    )
}

pub(super) async fn event_ids(s: &Client<'_, impl Subject>) -> Outcome {
    let written = s.write_numbered("ids:s", 5).await?;
    let parsed = written
        .iter()
        .map(|id| parse_id("an id `WriteEvent` replied", id))
        .collect::<Result<Vec<_>, _>>()?;
    first_of_a_stream(parsed[0])?;
    if let Some(pair) = parsed.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(format!(
            "ids must grow within a stream: {} came after {}",
            pair[1], pair[0]
        ));
    }
    expect(
        "the ids queried back",
        &s.ids("ids:s", None, 0).await?,
        &written,
    )?;
    // Another stream starts its own sequence.
    let other = s.write("ids:t", &[("n", "0")]).await?;
    first_of_a_stream(parse_id("an id `WriteEvent` replied", &other)?)
}

/// `XADD` starts a stream at `<ms>-0`, or `0-1` when the clock reads 0.
fn first_of_a_stream(id: EventId) -> Outcome {
    if (id.seq == 0 && id.ms > 0) || id == (EventId { ms: 0, seq: 1 }) {
        Ok(())
    } else {
        Err(format!(
            "the first event of a stream got id {id}; a stream starts at `<ms>-0` (`0-1` at \
             millisecond 0), ids are not shared between streams"
        ))
    }
}

pub(super) async fn separate_streams(s: &Client<'_, impl Subject>) -> Outcome {
    let a = s.write_numbered("sep:a", 2).await?;
    let b = s.write("sep:b", &[("n", "b")]).await?;
    expect("the ids of stream a", &s.ids("sep:a", None, 0).await?, &a)?;
    expect(
        "the ids of stream b",
        &s.ids("sep:b", None, 0).await?,
        &vec![b],
    )?;
    expect(
        "a stream never written",
        &s.ids("sep:missing", None, 0).await?,
        &Vec::new(),
    )
}

pub(super) async fn count_limits(s: &Client<'_, impl Subject>) -> Outcome {
    let written = s.write_numbered("cnt:s", 3).await?;
    for (count, n) in [(0, 3), (1, 1), (2, 2), (3, 3), (100, 3), (MAX_COUNT, 3)] {
        expect(
            &format!("a query with `count` {count}"),
            &s.ids("cnt:s", None, count).await?,
            &written[..n].to_vec(),
        )?;
    }
    expect(
        "a stream never written, with a `count`",
        &s.ids("cnt:missing", None, 5).await?,
        &Vec::new(),
    )?;
    for count in [MAX_COUNT + 1, u64::MAX] {
        s.refused(OP_QUERY_STREAM, &query("cnt:s", None, count), "ERR")
            .await
            .map_err(|e| format!("`count` {count}: {e}"))?;
    }
    Ok(())
}

pub(super) async fn time_ranges(s: &Client<'_, impl Subject>) -> Outcome {
    let written = s.write_numbered("tr:s", 4).await?;
    let parsed = written
        .iter()
        .map(|id| parse_id("an id `WriteEvent` replied", id))
        .collect::<Result<Vec<_>, _>>()?;
    let (first, last) = (parsed[0].ms, parsed[3].ms);
    // Milliseconds, both inclusive, every sequence number of each.
    for (min, max) in [
        (first, first),
        (last, last),
        (first, last),
        (0, u64::MAX),
        (0, first),
        (first.saturating_sub(1), first.saturating_sub(1)),
        (last.saturating_add(1), u64::MAX),
        (last, first),
        (u64::MAX, 0),
    ] {
        let want: Vec<String> = written
            .iter()
            .zip(&parsed)
            .filter(|(_, id)| min <= id.ms && id.ms <= max)
            .map(|(text, _)| text.clone())
            .collect();
        expect(
            &format!("a query of milliseconds {min}..={max} (ids {written:?})"),
            &s.ids("tr:s", Some((min, max)), 0).await?,
            &want,
        )?;
    }
    expect(
        "a time range with `count` 2",
        &s.ids("tr:s", Some((first, u64::MAX)), 2).await?,
        &written[..2].to_vec(),
    )
}

pub(super) async fn events_need_values(s: &Client<'_, impl Subject>) -> Outcome {
    s.refused(OP_WRITE_EVENT, &event("emp:s", &[]), "ERR")
        .await?;
    expect(
        "the stream after a refused `WriteEvent`",
        &s.ids("emp:s", None, 0).await?,
        &Vec::new(),
    )
}

pub(super) async fn streams_need_names(s: &Client<'_, impl Subject>) -> Outcome {
    s.refused(OP_WRITE_EVENT, &event("", &[("n", "1")]), "ERR")
        .await?;
    s.refused(OP_QUERY_STREAM, &query("", None, 0), "ERR").await
}

pub(super) async fn isolation(s: &Client<'_, impl Subject>) -> Outcome {
    let mine = s.write("iso:s", &[("by", BINDING)]).await?;
    expect(
        "the other binding's view of a stream",
        &ids(&s.query_on(OTHER_BINDING, "iso:s", None, 0).await?),
        &Vec::new(),
    )?;
    let theirs = s
        .write_on(OTHER_BINDING, "iso:s", &[("by", OTHER_BINDING)])
        .await?;
    expect(
        "a stream after the other binding wrote its own",
        &s.ids("iso:s", None, 0).await?,
        &vec![mine],
    )?;
    expect(
        "the other binding's stream",
        &ids(&s.query_on(OTHER_BINDING, "iso:s", None, 0).await?),
        &vec![theirs],
    )
}

pub(super) async fn unknown_operation(s: &Client<'_, impl Subject>) -> Outcome {
    // `DeliverEvent` is the provider's call to actors, never the reverse.
    for op in [OP_DELIVER_EVENT, "FlushAll"] {
        match s.raw(BINDING, op, &event("unk:s", &[("n", "1")])).await {
            Ok(_) => return Err(format!("`{op}` succeeded")),
            Err(text) if text.contains(&format!("does not support the operation `{op}`")) => {}
            Err(text) => {
                return Err(format!(
                    "`{op}` failed with {text:?}; expected an unknown operation"
                ));
            }
        }
    }
    expect(
        "the stream after unknown operations",
        &s.ids("unk:s", None, 0).await?,
        &Vec::new(),
    )
}

pub(super) async fn bad_payload(s: &Client<'_, impl Subject>) -> Outcome {
    for op in [OP_WRITE_EVENT, OP_QUERY_STREAM] {
        match s.0.0.call(BINDING, op, vec![0xc1]).await {
            Ok(_) => return Err(format!("an undecodable `{op}` succeeded")),
            Err(text) if text.contains("bad payload") && text.contains(&format!("`{op}`")) => {}
            Err(text) => {
                return Err(format!(
                    "an undecodable `{op}` failed with {text:?}; expected a bad payload"
                ));
            }
        }
    }
    Ok(())
}
