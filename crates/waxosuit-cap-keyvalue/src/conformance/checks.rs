//! The checks of the suite, one function each; [`run`](super::run) lists
//! them.

use waxosuit_codec::keyvalue::{
    AddRequest, DelRequest, DelResponse, GetRequest, GetResponse, ListClearRequest,
    ListDelItemRequest, ListPushRequest, ListRangeRequest, ListResponse, OP_ADD, OP_CLEAR, OP_DEL,
    OP_GET, OP_LIST_DEL, OP_PUSH, OP_RANGE, OP_SET, OP_SET_ADD, OP_SET_INTERSECT, OP_SET_QUERY,
    OP_SET_REMOVE, OP_SET_UNION, SetAddRequest, SetIntersectionRequest, SetQueryRequest,
    SetQueryResponse, SetRemoveRequest, SetRequest, SetResponse, SetUnionRequest,
};

use super::{BINDING, Client, OTHER_BINDING, Outcome, Subject, expect, strings_of};

pub(super) async fn strings(s: &Client<'_, impl Subject>) -> Outcome {
    expect(
        "`Get` of a missing key",
        &s.get("str:missing").await?,
        &None,
    )?;
    s.set("str:a", "hello", 0).await?;
    expect(
        "`Get` after `Set`",
        &s.get("str:a").await?,
        &Some("hello".into()),
    )?;
    s.set("str:a", "", 0).await?;
    expect(
        "an empty string is a value",
        &s.get("str:a").await?,
        &Some(String::new()),
    )?;
    s.set("str:ttl", "soon", 3600).await?;
    expect(
        "a key with an expiry, at once",
        &s.get("str:ttl").await?,
        &Some("soon".into()),
    )?;
    let unicode = "wörld ✓";
    s.set("str:ü", unicode, 0).await?;
    expect(
        "unicode keys and values",
        &s.get("str:ü").await?,
        &Some(unicode.into()),
    )
}

pub(super) async fn set_replaces_any_type(s: &Client<'_, impl Subject>) -> Outcome {
    s.push("replace:l", "x").await?;
    s.set("replace:l", "now a string", 0).await?;
    expect(
        "`Set` over a list",
        &s.get("replace:l").await?,
        &Some("now a string".into()),
    )?;
    s.sadd("replace:s", "x").await?;
    s.set("replace:s", "1", 0).await?;
    expect(
        "`Add` on what `Set` replaced a set with",
        &s.add("replace:s", 1).await?,
        &2,
    )
}

pub(super) async fn negative_expiry(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("neg:a", "kept", 0).await?;
    s.refused(
        OP_SET,
        &SetRequest {
            key: "neg:a".into(),
            value: "lost".into(),
            expires_s: -1,
        },
        "ERR",
    )
    .await?;
    expect(
        "the value after a refused `Set`",
        &s.get("neg:a").await?,
        &Some("kept".into()),
    )
}

pub(super) async fn counters(s: &Client<'_, impl Subject>) -> Outcome {
    expect("`Add` to a missing key", &s.add("ctr:a", 5).await?, &5)?;
    expect("`Add` again", &s.add("ctr:a", 2).await?, &7)?;
    expect("`Add` a negative amount", &s.add("ctr:a", -10).await?, &-3)?;
    expect(
        "the counter as a string",
        &s.get("ctr:a").await?,
        &Some("-3".into()),
    )?;
    s.set("ctr:b", "41", 0).await?;
    expect("`Add` to a set number", &s.add("ctr:b", 1).await?, &42)?;
    expect(
        "`Add` up to i32::MAX",
        &s.add("ctr:max", i32::MAX).await?,
        &i32::MAX,
    )?;
    expect(
        "`Add` down to i32::MIN",
        &s.add("ctr:min", i32::MIN).await?,
        &i32::MIN,
    )
}

pub(super) async fn counter_refusals(s: &Client<'_, impl Subject>) -> Outcome {
    let add = |key: &str, value| AddRequest {
        key: key.into(),
        value,
    };
    for (text, why) in [
        ("abc", "text"),
        ("007", "leading zeros"),
        ("+1", "a plus sign"),
        ("1.5", "a fraction"),
    ] {
        let key = format!("ctrx:{text}");
        s.set(&key, text, 0).await?;
        s.refused(OP_ADD, &add(&key, 1), "ERR")
            .await
            .map_err(|e| format!("{why}: {e}"))?;
        expect(
            &format!("{why} after a refused `Add`"),
            &s.get(&key).await?,
            &Some(text.into()),
        )?;
    }
    s.add("ctrx:max", i32::MAX).await?;
    s.refused(OP_ADD, &add("ctrx:max", 1), "ERR")
        .await
        .map_err(|e| format!("past i32::MAX: {e}"))?;
    expect(
        "the counter after an overflow",
        &s.get("ctrx:max").await?,
        &Some(i32::MAX.to_string()),
    )?;
    s.add("ctrx:min", i32::MIN).await?;
    s.refused(OP_ADD, &add("ctrx:min", -1), "ERR")
        .await
        .map_err(|e| format!("past i32::MIN: {e}"))?;
    expect(
        "`Add` after an overflow",
        &s.add("ctrx:min", 1).await?,
        &(i32::MIN + 1),
    )
}

pub(super) async fn lists(s: &Client<'_, impl Subject>) -> Outcome {
    for (i, item) in ["e", "d", "c", "b", "a"].iter().enumerate() {
        expect(
            "`Push` replies the new length",
            &s.push("lst:l", item).await?,
            &(i as i32 + 1),
        )?;
    }
    let all = strings_of(&["a", "b", "c", "d", "e"]);
    for (start, stop, want) in [
        (0, -1, all.clone()),
        (0, 0, strings_of(&["a"])),
        (1, 3, strings_of(&["b", "c", "d"])),
        (-2, -1, strings_of(&["d", "e"])),
        (-100, 1, strings_of(&["a", "b"])),
        (3, 100, strings_of(&["d", "e"])),
        (5, 10, vec![]),
        (3, 1, vec![]),
        (-1, -2, vec![]),
        (-100, -6, vec![]),
        (i32::MIN, i32::MAX, all.clone()),
    ] {
        expect(
            &format!("`Range` {start}..={stop}"),
            &s.range("lst:l", start, stop).await?,
            &want,
        )?;
    }
    expect(
        "`Range` of a missing key",
        &s.range("lst:missing", 0, -1).await?,
        &vec![],
    )?;
    s.push("lst:dup", "x").await?;
    expect(
        "`Push` keeps duplicates",
        &s.push("lst:dup", "x").await?,
        &2,
    )
}

pub(super) async fn list_item_delete(s: &Client<'_, impl Subject>) -> Outcome {
    for item in ["a", "b", "a", "c", "a"] {
        s.push("ldel:l", item).await?;
    }
    let del = |key: &str, value: &str| ListDelItemRequest {
        key: key.into(),
        value: value.into(),
    };
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:l", "a")).await?;
    expect("`ListItemDelete` replies the length left", &r.new_count, &2)?;
    expect(
        "what is left",
        &s.range("ldel:l", 0, -1).await?,
        &strings_of(&["c", "b"]),
    )?;
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:l", "zzz")).await?;
    expect("deleting an absent item", &r.new_count, &2)?;
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:missing", "a")).await?;
    expect("deleting from a missing list", &r.new_count, &0)?;
    s.ok::<_, ListResponse>(OP_LIST_DEL, &del("ldel:l", "b"))
        .await?;
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:l", "c")).await?;
    expect("emptying the list", &r.new_count, &0)?;
    expect(
        "an emptied list is gone",
        &s.exists("ldel:l").await?,
        &false,
    )
}

pub(super) async fn clear(s: &Client<'_, impl Subject>) -> Outcome {
    s.push("clr:l", "x").await?;
    let r: DelResponse = s
        .ok(
            OP_CLEAR,
            &ListClearRequest {
                key: "clr:l".into(),
            },
        )
        .await?;
    expect("`Clear` replies the key", r.key.as_str(), "clr:l")?;
    expect("a cleared list is gone", &s.exists("clr:l").await?, &false)?;
    s.ok::<_, DelResponse>(
        OP_CLEAR,
        &ListClearRequest {
            key: "clr:missing".into(),
        },
    )
    .await?;
    s.set("clr:str", "counter", 0).await?;
    s.refused(
        OP_CLEAR,
        &ListClearRequest {
            key: "clr:str".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    expect(
        "a string `Clear` refused",
        &s.get("clr:str").await?,
        &Some("counter".into()),
    )
}

pub(super) async fn sets(s: &Client<'_, impl Subject>) -> Outcome {
    expect("`SetAdd` of a new member", &s.sadd("set:s", "m").await?, &1)?;
    expect(
        "`SetAdd` of a member again",
        &s.sadd("set:s", "m").await?,
        &0,
    )?;
    for member in ["z", "a", "q"] {
        s.sadd("set:s", member).await?;
    }
    expect(
        "`SetQuery` is sorted",
        &s.members("set:s").await?,
        &strings_of(&["a", "m", "q", "z"]),
    )?;
    expect(
        "`SetQuery` of a missing key",
        &s.members("set:missing").await?,
        &vec![],
    )?;
    expect("`SetRemove` of a member", &s.srem("set:s", "m").await?, &1)?;
    expect("`SetRemove` of it again", &s.srem("set:s", "m").await?, &0)?;
    expect(
        "`SetRemove` on a missing key",
        &s.srem("set:missing", "m").await?,
        &0,
    )?;
    for member in ["a", "q", "z"] {
        s.srem("set:s", member).await?;
    }
    expect("an emptied set is gone", &s.exists("set:s").await?, &false)
}

pub(super) async fn set_algebra(s: &Client<'_, impl Subject>) -> Outcome {
    for m in ["x", "m", "b"] {
        s.sadd("alg:z", m).await?;
    }
    for m in ["m", "b", "c"] {
        s.sadd("alg:w", m).await?;
    }
    let keys = |ks: &[&str]| strings_of(ks);
    let union: SetQueryResponse = s
        .ok(
            OP_SET_UNION,
            &SetUnionRequest {
                keys: keys(&["alg:z", "alg:w", "alg:missing"]),
            },
        )
        .await?;
    expect(
        "`SetUnion`",
        &union.values,
        &strings_of(&["b", "c", "m", "x"]),
    )?;
    let inter: SetQueryResponse = s
        .ok(
            OP_SET_INTERSECT,
            &SetIntersectionRequest {
                keys: keys(&["alg:z", "alg:w"]),
            },
        )
        .await?;
    expect("`SetIntersection`", &inter.values, &strings_of(&["b", "m"]))?;
    let inter: SetQueryResponse = s
        .ok(
            OP_SET_INTERSECT,
            &SetIntersectionRequest {
                keys: keys(&["alg:z", "alg:missing"]),
            },
        )
        .await?;
    expect(
        "`SetIntersection` with a missing key",
        &inter.values,
        &vec![],
    )?;
    s.refused(OP_SET_UNION, &SetUnionRequest { keys: vec![] }, "ERR")
        .await?;
    // A key named again counts once; past 64 distinct keys, refused.
    let repeated: SetQueryResponse = s
        .ok(
            OP_SET_UNION,
            &SetUnionRequest {
                keys: vec!["alg:z".to_string(); 100_000],
            },
        )
        .await?;
    expect(
        "`SetUnion` of one key named 100,000 times",
        &repeated.values,
        &strings_of(&["b", "m", "x"]),
    )?;
    let many: Vec<String> = (0..=crate::MAX_SET_KEYS)
        .map(|i| format!("alg:k{i}"))
        .collect();
    s.refused(OP_SET_UNION, &SetUnionRequest { keys: many.clone() }, "ERR")
        .await?;
    s.refused(
        OP_SET_INTERSECT,
        &SetIntersectionRequest { keys: many },
        "ERR",
    )
    .await?;
    s.refused(
        OP_SET_INTERSECT,
        &SetIntersectionRequest { keys: vec![] },
        "ERR",
    )
    .await?;
    s.set("alg:str", "x", 0).await?;
    s.refused(
        OP_SET_UNION,
        &SetUnionRequest {
            keys: keys(&["alg:z", "alg:str"]),
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(
        OP_SET_INTERSECT,
        &SetIntersectionRequest {
            keys: keys(&["alg:missing", "alg:str"]),
        },
        "WRONGTYPE",
    )
    .await
    .map_err(|e| format!("every key is type-checked, even after a missing one: {e}"))
}

pub(super) async fn delete_and_exists(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("del:str", "v", 0).await?;
    s.push("del:list", "v").await?;
    s.sadd("del:set", "v").await?;
    for key in ["del:str", "del:list", "del:set"] {
        expect(&format!("`KeyExists` {key}"), &s.exists(key).await?, &true)?;
        let r: DelResponse = s.ok(OP_DEL, &DelRequest { key: key.into() }).await?;
        expect("`Del` replies the key", r.key.as_str(), key)?;
        expect(
            &format!("`KeyExists` {key} after `Del`"),
            &s.exists(key).await?,
            &false,
        )?;
    }
    s.ok::<_, DelResponse>(
        OP_DEL,
        &DelRequest {
            key: "del:missing".into(),
        },
    )
    .await?;
    expect(
        "`KeyExists` of a missing key",
        &s.exists("del:missing").await?,
        &false,
    )
}

pub(super) async fn wrong_types(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("wt:str", "text", 0).await?;
    s.push("wt:list", "item").await?;
    s.sadd("wt:set", "member").await?;
    let key = |k: &str| GetRequest { key: k.into() };
    let item = |k: &str| ListPushRequest {
        key: k.into(),
        value: "x".into(),
    };
    let member = |k: &str| SetAddRequest {
        key: k.into(),
        value: "x".into(),
    };
    s.refused(OP_GET, &key("wt:list"), "WRONGTYPE").await?;
    s.refused(OP_GET, &key("wt:set"), "WRONGTYPE").await?;
    s.refused(
        OP_ADD,
        &AddRequest {
            key: "wt:list".into(),
            value: 1,
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(OP_PUSH, &item("wt:str"), "WRONGTYPE").await?;
    s.refused(OP_PUSH, &item("wt:set"), "WRONGTYPE").await?;
    s.refused(
        OP_RANGE,
        &ListRangeRequest {
            key: "wt:str".into(),
            start: 0,
            stop: -1,
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(
        OP_LIST_DEL,
        &ListDelItemRequest {
            key: "wt:set".into(),
            value: "x".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(OP_SET_ADD, &member("wt:str"), "WRONGTYPE")
        .await?;
    s.refused(OP_SET_ADD, &member("wt:list"), "WRONGTYPE")
        .await?;
    s.refused(
        OP_SET_REMOVE,
        &SetRemoveRequest {
            key: "wt:list".into(),
            value: "x".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(
        OP_SET_QUERY,
        &SetQueryRequest {
            key: "wt:str".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    // Nothing the refusals touched changed.
    expect("the string", &s.get("wt:str").await?, &Some("text".into()))?;
    expect(
        "the list",
        &s.range("wt:list", 0, -1).await?,
        &strings_of(&["item"]),
    )?;
    expect(
        "the set",
        &s.members("wt:set").await?,
        &strings_of(&["member"]),
    )
}

pub(super) async fn isolation(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("iso:k", "mine", 0).await?;
    let there: GetResponse = s
        .ok_on(
            OTHER_BINDING,
            OP_GET,
            &GetRequest {
                key: "iso:k".into(),
            },
        )
        .await?;
    expect("the other binding's view of a key", &there.exists, &false)?;
    let _: SetResponse = s
        .ok_on(
            OTHER_BINDING,
            OP_SET,
            &SetRequest {
                key: "iso:k".into(),
                value: "theirs".into(),
                expires_s: 0,
            },
        )
        .await?;
    expect(
        "a key after the other binding set its own",
        &s.get("iso:k").await?,
        &Some("mine".into()),
    )
}

pub(super) async fn unknown_operation(s: &Client<'_, impl Subject>) -> Outcome {
    match s
        .raw(BINDING, "FlushAll", &GetRequest { key: "x".into() })
        .await
    {
        Ok(_) => Err("`FlushAll` succeeded".into()),
        Err(text) if text.contains("does not support the operation `FlushAll`") => Ok(()),
        Err(text) => Err(format!(
            "`FlushAll` failed with {text:?}; expected an unknown operation"
        )),
    }
}

pub(super) async fn bad_payload(s: &Client<'_, impl Subject>) -> Outcome {
    match s.0.0.call(BINDING, OP_GET, vec![0xc1]).await {
        Ok(_) => Err("an undecodable `Get` succeeded".into()),
        Err(text) if text.contains("bad payload") && text.contains("`Get`") => Ok(()),
        Err(text) => Err(format!(
            "an undecodable `Get` failed with {text:?}; expected a bad payload"
        )),
    }
}
