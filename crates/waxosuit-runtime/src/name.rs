//! [`Name`]: a binding, namespace or operation name of a host call.
//!
//! Every `__host_call` hands the handler three names, and guests repeat a
//! handful of them (`default`, `wascc:keyvalue`, `Get`) on every call. A
//! shared `Arc<str>` per name costs an atomic increment when handed out and
//! a decrement when the handler drops it: six atomic operations on a call
//! that takes about 200 ns in all. So short names are interned once per
//! process into `&'static str`, which are copied for free; an instance
//! keeps the last name seen per field, so a repeated name is found without
//! even a lookup. The interner is bounded (count and length), so guests
//! inventing names cannot grow it: beyond the bound, names are shared
//! strings as before.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::Mutex;

/// Longest name that is interned.
const MAX_INTERNED_LEN: usize = 64;
/// Most names interned per process (at most 64 KiB of names in all).
const MAX_INTERNED: usize = 1024;

/// A host-call name: derefs to `str`, compares and hashes as one.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Interned(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// The name, interned if it is short and the interner has room.
    pub fn new(name: &str) -> Name {
        match intern(name) {
            Some(interned) => Name(Repr::Interned(interned)),
            None => Name(Repr::Shared(Arc::from(name))),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Interned(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

fn intern(name: &str) -> Option<&'static str> {
    static INTERNED: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    if name.len() > MAX_INTERNED_LEN {
        return None;
    }
    let mut interned = INTERNED.lock();
    let set = interned.get_or_insert_with(HashSet::new);
    if let Some(&existing) = set.get(name) {
        return Some(existing);
    }
    if set.len() >= MAX_INTERNED {
        return None;
    }
    // Leaked on purpose, and bounded: interned names live as long as the
    // process.
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    Some(leaked)
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name::new(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Name {
        Name::new(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_interned_and_compare_by_content() {
        let a = Name::new("wascc:keyvalue");
        let b = Name::from(String::from("wascc:keyvalue"));
        let (Repr::Interned(x), Repr::Interned(y)) = (&a.0, &b.0) else {
            panic!("short names must be interned");
        };
        assert!(std::ptr::eq(*x, *y), "one allocation per distinct name");
        assert_eq!(a, b);
        assert_eq!(a, "wascc:keyvalue");
        assert_eq!(format!("{a} {a:?}"), "wascc:keyvalue \"wascc:keyvalue\"");
    }

    #[test]
    fn long_names_are_shared_strings_not_interned() {
        let long = "x".repeat(MAX_INTERNED_LEN + 1);
        let name = Name::new(&long);
        assert!(matches!(name.0, Repr::Shared(_)));
        assert_eq!(&*name, long);
    }
}
